"""Plugin archs: every `*_arch.py` module here is imported, which registers its classes."""
from kd_plugin.archs.build import build_network
from kd_plugin.compat.model_builders import rebind_build_network
from kd_plugin.registration import import_modules_with_suffix

modules = import_modules_with_suffix(__name__, __path__, '_arch')
# BasicSR's models then build networks that may carry `init_weights` (see kd_plugin.archs.build)
patched_builders = rebind_build_network(build_network)
