"""Archs that read their own weights from a checkpoint file (class attribute ``loads_own_weights = True``).

Most archs are built untrained, and a loader then puts a checkpoint's state dict into them. An arch
such as :class:`~kd_plugin.archs.spandrel_arch.SpandrelNet` instead takes the file as its ``checkpoint``
option and loads it while it is built (its hyper-parameters come from the file). Every place that builds
a network for a checkpoint goes through these helpers, so such an arch needs no case of its own there:

* :func:`with_checkpoint`: the network's options with the run's checkpoint (``path.pretrain_network_<x>``,
  a benchmark spec's ``@CHECKPOINT``) filled in, so ``network_t: {type: SpandrelNet}`` beside
  ``path.pretrain_network_t`` is enough; other archs' options come back unchanged;
* :func:`load_weights`: a checkpoint's state dict into a network, unless the network read its own.
"""
from os import path as osp
from typing import Any

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from kd_plugin.archs.build import registered_class, registered_name

#: The class attribute that marks an arch as reading its weights from its ``checkpoint`` option.
MARK = 'loads_own_weights'


def loads_own_weights(net: nn.Module | dict[str, Any]) -> bool:
    """Whether ``net`` (a network, or a network options section naming a registered ``type``) reads its
    weights from its ``checkpoint`` option itself, so that no state dict must be loaded into it. An
    unregistered ``type`` is False here (building it raises, naming the option)."""
    if isinstance(net, nn.Module):
        return bool(getattr(type(net), MARK, False))
    if registered_name(ARCH_REGISTRY, net.get('type')) is None:
        return False
    return bool(getattr(registered_class(ARCH_REGISTRY, net, 'network'), MARK, False))


def with_checkpoint(net_opt: dict[str, Any], checkpoint: str | None, where: str, source: str, *,
                    param_key: str | None = None, scale: int | None = None) -> dict[str, Any]:
    """A copy of ``net_opt`` (the ``where`` section) that, for an arch that loads its own weights, has
    ``checkpoint`` set to ``checkpoint`` (named ``source`` in errors, e.g. ``path.pretrain_network_t``), and
    ``param_key`` and ``upscale`` set to ``param_key`` and ``scale`` where the section leaves them out (so the
    arch checks the file against the run's scale itself). Other archs' sections, and any section when
    ``checkpoint`` is None, come back unchanged.

    A section that names a different file in its own ``checkpoint`` raises ``ValueError``: the run would hash,
    resume and label with one file and distil from the other."""
    arch = dict(net_opt)
    if not checkpoint or not loads_own_weights(arch):
        return arch
    own = arch.get('checkpoint')
    if own and osp.abspath(own) != osp.abspath(checkpoint):
        raise ValueError(f'{where}.checkpoint: {own!r}, and {source} is {checkpoint!r}: two different files for one '
                         f'network. Fix: remove {where}.checkpoint ({source} names the file), or point both at the '
                         'same file')
    arch['checkpoint'] = checkpoint
    for key, value in (('param_key', param_key), ('upscale', scale)):
        if value is not None:
            arch.setdefault(key, value)
    return arch


def load_weights(net: nn.Module, params: dict[str, torch.Tensor], strict: bool = True) -> bool:
    """Load ``params`` (a checkpoint's state dict; ``module.`` prefixes, which DDP adds, ignored) into ``net``
    and return True; or, for a network that read its own weights when it was built (:func:`loads_own_weights`),
    load nothing and return False."""
    if loads_own_weights(net):
        return False
    net.load_state_dict({k.removeprefix('module.'): v for k, v in params.items()}, strict=strict)
    return True
