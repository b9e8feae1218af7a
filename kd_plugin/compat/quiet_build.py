"""Building a registered arch or loss before the run has its log file.

``basicsr/archs/__init__.py:23`` (``build_network``) and ``basicsr/losses/__init__.py:29``
(``build_loss``) call ``get_root_logger()``. The first call configures the root logger for good, and
``basicsr/train.py:112`` only later names the run's log file; a pre-run check that used them would
leave the run without its ``train_*.log``. The pre-run checks build through :func:`construct`, which
takes the class from the registry and calls it, nothing more.
"""
from typing import Any

from kd_plugin.compat.registry_names import registered_name


def construct(registry: Any, section: dict[str, Any], option: str) -> Any:
    """``registry``'s class named ``section['type']``, called with the section's other keys.

    An unknown type raises ``ValueError`` naming ``option``."""
    kwargs = dict(section)
    name = kwargs.pop('type', None)
    key = registered_name(registry, name)
    if key is None:
        raise ValueError(f'{option}.type: {name!r} is not registered in BasicSR\'s {registry._name} registry')
    return registry.get(key)(**kwargs)
