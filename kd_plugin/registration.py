"""Registration by import: every module of a sub-package whose name ends with a suffix, and the modules an
options file names in ``custom_imports``."""
import importlib
import os
import pkgutil
import sys
from types import ModuleType


def import_modules_with_suffix(package: str, path: list[str], suffix: str) -> list[ModuleType]:
    """Import ``package.<name>`` for each module ``<name>`` in ``path`` ending with ``suffix``."""
    names = sorted(info.name for info in pkgutil.iter_modules(path) if info.name.endswith(suffix))
    return [importlib.import_module(f'{package}.{name}') for name in names]


#: The top-level options key that names a researcher's own modules (archs, losses, models, datasets) to import
#: before anything is built; the name is mmengine's, whose configs use it the same way.
CUSTOM_IMPORTS = 'custom_imports'


def import_custom_modules(opt: dict, root: str | None = None) -> list[ModuleType]:
    """Import every module named in ``opt['custom_imports']`` (a list of dotted names), so that the classes they
    register (BasicSR's ``@ARCH_REGISTRY.register()`` and the like) exist before the options are checked and
    built. ``root`` (default: the current folder, where runs start) is put on ``sys.path`` first, so a package in
    the user's project is found also by an installed console script. ``ValueError`` naming the option and the fix
    when a module cannot be imported."""
    names = opt.get(CUSTOM_IMPORTS) or []
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f'{CUSTOM_IMPORTS}: {names!r}. Fix: a list of module names, e.g. [my_project.archs]')
    root = os.path.abspath(root or os.getcwd())
    if names and root not in (os.path.abspath(p or '.') for p in sys.path):
        sys.path.insert(0, root)
    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except ImportError as err:
            raise ValueError(f'{CUSTOM_IMPORTS}: cannot import {name!r} ({type(err).__name__}: {err}). Fix: run from '
                             'the folder that holds that package, or install it') from err
    return modules
