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

:func:`build_network` is the plugin's one network builder: BasicSR's models call it (rebound by
:mod:`kd_plugin.compat.hooks`, with ``log=True``), and so do the option checks, the KD model, the
benchmarks and the model loader. It never calls ``basicsr.archs.build_network`` itself, whose
``get_root_logger()`` (``basicsr/archs/__init__.py:23``) would configure the root logger for good before
``basicsr/train.py:112`` names the run's log file: a pre-run check that built through it would leave
the run without its ``train_*.log``.
"""
from copy import deepcopy
from typing import Any

from basicsr.archs.arch_util import default_init_weights
from basicsr.utils import get_root_logger
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from kd_plugin.distill.layer_names import resolve_layer
from kd_plugin.option_keys import check_keys, closest

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
        check_keys(entry, _INIT_ARGS, key)
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


def registered_name(registry: Any, name: str | None, suffix: str = 'basicsr') -> str | None:
    """The key under which ``registry`` holds ``name`` (``name`` or ``name_<suffix>``), or None.

    BasicSR registers a few classes under a suffixed name (``SRVGGNetCompact`` is
    ``SRVGGNetCompact_basicsr``, so that Real-ESRGAN can register its own): ``registry.get(name)``
    falls back to ``name + '_basicsr'`` (``basicsr/utils/registry.py:68``), but ``name in registry``
    does not."""
    if name is None:
        return None
    for key in (name, f'{name}_{suffix}'):
        if key in registry:
            return key
    return None


def registered_class(registry: Any, section: dict[str, Any], where: str) -> type:
    """``registry``'s class named ``section['type']``; an unknown name raises ``ValueError`` naming
    ``<where>.type`` with the closest registered names."""
    name = section.get('type')
    key = registered_name(registry, name)
    if key is None:
        close = closest(name, registry.keys(), n=3, cutoff=0.4)
        raise ValueError(f'{where}.type: {name!r} is not registered in BasicSR\'s {registry._name} registry' +
                         (f'; did you mean {", ".join(close)}?' if close else ''))
    return registry.get(key)


def build_network(net_opt: dict[str, Any], where: str = 'network_g', init: bool = True,
                  log: bool = False) -> nn.Module:
    """The network of an options section (``type`` plus the arch's arguments, and ``init_weights``).

    ``init=False`` skips ``init_weights`` (a checkpoint will replace the weights anyway); ``log=True``
    logs like BasicSR's ``build_network`` (the training run's logger exists by then)."""
    arch, entries = split_init(net_opt)
    cls = registered_class(ARCH_REGISTRY, arch, where)
    net = cls(**{k: v for k, v in arch.items() if k != 'type'})
    if init:
        apply_init(net, entries, where)
    if log:
        logger = get_root_logger()
        logger.info(f'Network [{net.__class__.__name__}] is created.')
        if init and entries:
            logger.info(f'Network [{net.__class__.__name__}] re-initialised: default_init_weights({entries})')
    return net


def construct(registry: Any, section: dict[str, Any], where: str) -> Any:
    """An instance of ``registry``'s class ``section['type']`` with the section's other keys (a loss the
    option checks build without BasicSR's logging ``build_loss``)."""
    return registered_class(registry, section, where)(**{k: v for k, v in section.items() if k != 'type'})
