"""Registered names with BasicSR's suffix rule.

BasicSR registers a few classes under a suffixed name (``SRVGGNetCompact`` is
``SRVGGNetCompact_basicsr``, so that Real-ESRGAN can register its own): ``registry.get(name)``
falls back to ``name + '_basicsr'`` (``basicsr/utils/registry.py:68``), but ``name in registry``
does not. Checks that ask "is this arch known?" must use :func:`registered_name`.
"""
from typing import Any


def registered_name(registry: Any, name: str | None, suffix: str = 'basicsr') -> str | None:
    """The key under which ``registry`` holds ``name`` (``name`` or ``name_<suffix>``), or None."""
    if name is None:
        return None
    for key in (name, f'{name}_{suffix}'):
        if key in registry:
            return key
    return None
