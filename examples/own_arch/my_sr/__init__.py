"""A researcher's own SR package: importing it registers its archs in BasicSR's ARCH_REGISTRY."""
from my_sr import tiny_sr_arch  # noqa: F401  (registration by import)
