"""Resolve dotted layer names (``named_modules()`` paths) with helpful errors."""
import difflib

from torch import nn


def resolve_layer(model: nn.Module, name: str, option: str) -> nn.Module:
    """The sub-module of ``model`` called ``name``; a wrong name raises ``ValueError`` naming ``option``
    and listing the closest valid names."""
    modules = dict(model.named_modules())
    if name in modules and name != '':
        return modules[name]
    valid = [n for n in modules if n]
    close = difflib.get_close_matches(name, valid, n=5, cutoff=0.4) or valid[:5]
    raise ValueError(f'{option}: {type(model).__name__} has no layer {name!r}. Closest valid names: '
                     f'{", ".join(close)} ({len(valid)} layers in all, as listed by named_modules()).')
