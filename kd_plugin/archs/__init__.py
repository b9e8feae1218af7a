"""Plugin archs: every ``*_arch.py`` module here is imported, which registers its classes."""
from kd_plugin.registration import import_modules_with_suffix

modules = import_modules_with_suffix(__name__, __path__, '_arch')
