"""A researcher's own losses: importing the package registers them in BasicSR's LOSS_REGISTRY."""
from my_losses import gradient_distill_loss  # noqa: F401  (registration by import)
