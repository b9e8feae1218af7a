"""Distillation plumbing: recorders (hooks that capture layer outputs), adapters (trainable
connectors between student and teacher features) and output substitution (forward adaptation)."""
