"""A researcher's own models: importing the package registers them in BasicSR's MODEL_REGISTRY."""
from my_models import decaying_kd_model  # noqa: F401  (registration by import)
