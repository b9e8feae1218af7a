"""Building a network from its options section, with the plugin's optional weight initialisation.

A network section (``network_g``, ``network_t``) may carry one key that is not an argument of
the arch, ``init_weights``: one mapping, or a list applied in order, each re-initialising the
conv/linear layers of the whole network or of the sub-modules named in ``modules``, right after
the arch is built and before any checkpoint is loaded::

    network_g:
      type: SRVGGNetCompact
      init_weights:
        - {a: 0.25}                              # every conv: kaiming normal for PReLU(0.25)
        - {modules: [body.34], a: 0.25, scale: 0.1}   # last conv: start the residual small

Each entry calls BasicSR's ``default_init_weights`` (kaiming normal times ``scale``, biases set
to ``bias_fill``; ``a``, ``mode``, ``nonlinearity`` go to ``torch.nn.init.kaiming_normal_``).
Why it exists: archs that keep PyTorch's default conv init (e.g. BasicSR's SRVGGNetCompact, 18
plain convs) shrink the signal about 6x per layer, so the first layers' gradients start near
1e-10 and the body never leaves its initial state on a short schedule. A ``pretrain_network_*``
checkpoint or a resumed state still replaces the initialisation.
"""
from copy import deepcopy
from typing import Any

from basicsr.archs import build_network as _original_build_network
from basicsr.archs.arch_util import default_init_weights
from basicsr.utils import get_root_logger
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from kd_plugin.compat.quiet_build import construct
from kd_plugin.distill.layer_names import resolve_layer

INIT_KEY = 'init_weights'
_INIT_ARGS = ('modules', 'scale', 'bias_fill', 'a', 'mode', 'nonlinearity')


def split_init(net_opt: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``net_opt`` without ``init_weights`` (what the arch's constructor takes), and that section as
    a list of entries (empty when absent)."""
    arch = deepcopy(dict(net_opt))
    section = arch.pop(INIT_KEY, None)
    return arch, ([] if section is None else section if isinstance(section, list) else [section])


def check_init(entries: list[Any], where: str) -> None:
    """Raise ``ValueError`` naming ``where.init_weights`` when an entry cannot be applied (layer
    names are checked by :func:`apply_init`, which has the network)."""
    for i, entry in enumerate(entries):
        key = f'{where}.{INIT_KEY}' + (f'[{i}]' if len(entries) > 1 else '')
        if not isinstance(entry, dict):
            raise ValueError(f'{key}: expected a mapping such as {{a: 0.25, scale: 1.0}}, got {entry!r}')
        unknown = sorted(set(entry) - set(_INIT_ARGS))
        if unknown:
            raise ValueError(f'{key}: unknown key(s) {unknown}. Fix: use only {list(_INIT_ARGS)} (modules, then '
                             'the arguments of basicsr.archs.arch_util.default_init_weights)')
        if entry.get('mode', 'fan_in') not in ('fan_in', 'fan_out'):
            raise ValueError(f'{key}.mode: {entry["mode"]!r}. Fix: use fan_in or fan_out')
        if entry.get('nonlinearity', 'leaky_relu') not in ('relu', 'leaky_relu', 'linear'):
            raise ValueError(f'{key}.nonlinearity: {entry["nonlinearity"]!r}. Fix: use relu, leaky_relu or linear')


def apply_init(net: nn.Module, entries: list[dict[str, Any]], where: str = 'network') -> nn.Module:
    """Re-initialise ``net`` in place, entry by entry (see the module docstring)."""
    check_init(entries, where)
    for entry in entries:
        kwargs = dict(entry)
        names = kwargs.pop('modules', None)
        names = [names] if isinstance(names, str) else names
        targets = [resolve_layer(net, n, f'{where}.{INIT_KEY}.modules') for n in names] if names else [net]
        default_init_weights(targets, **kwargs)
    return net


def construct_network(net_opt: dict[str, Any], where: str = 'network_g') -> nn.Module:
    """The network of ``net_opt``, initialised, built without logging (for the pre-run checks:
    :mod:`kd_plugin.compat.quiet_build` says why)."""
    arch, init = split_init(net_opt)
    return apply_init(construct(ARCH_REGISTRY, arch, where), init, where)


def build_network(net_opt: dict[str, Any]) -> nn.Module:
    """Drop-in for ``basicsr.archs.build_network`` that understands ``init_weights``."""
    arch, init = split_init(net_opt)
    net = apply_init(_original_build_network(arch), init)
    if init:
        get_root_logger().info(f'Network [{net.__class__.__name__}] re-initialised: default_init_weights({init})')
    return net
