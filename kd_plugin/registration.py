"""Import every module of a sub-package whose name ends with a suffix (registration by import)."""
import importlib
import pkgutil
from types import ModuleType


def import_modules_with_suffix(package: str, path: list[str], suffix: str) -> list[ModuleType]:
    """Import ``package.<name>`` for each module ``<name>`` in ``path`` ending with ``suffix``."""
    names = sorted(info.name for info in pkgutil.iter_modules(path) if info.name.endswith(suffix))
    return [importlib.import_module(f'{package}.{name}') for name in names]
