"""Which models a benchmark compares, and loading them safely.

A model is given on the command line as ``[LABEL=]SPEC`` where SPEC is

* ``bicubic``: MATLAB-style bicubic upscaling (no network);
* ``OPTIONS.yml``: its ``network_g`` with the checkpoint ``path.pretrain_network_g``, or, for a
  training options file without one, ``experiments/<name>/models/net_g_latest.pth``;
* ``OPTIONS.yml@CHECKPOINT.pth``: the same arch with that checkpoint (e.g. an official release).

The parameter key is ``path.param_key_g`` when set, else ``params_ema`` when the checkpoint has it
(BasicSR's EMA weights, what its releases evaluate), else ``params``.
"""
import difflib
from dataclasses import dataclass, field
from os import path as osp
from typing import Any

import numpy as np
import torch
import yaml
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from kd_plugin.archs.build import split_init
from kd_plugin.archs.window_padding import PaddedToWindow, window_multiple
from kd_plugin.checkpoint_io import load_weights_only, state_dict_mismatch


@dataclass
class ModelSpec:
    label: str
    arch: dict[str, Any] | None = None  # None: bicubic
    checkpoint: str | None = None
    param_key: str | None = None
    scale: int | None = None
    source: str = ''
    notes: list[str] = field(default_factory=list)

    @property
    def is_bicubic(self) -> bool:
        return self.arch is None


def parse_model(text: str, root: str = '.') -> ModelSpec:
    """A :class:`ModelSpec` from ``[LABEL=]SPEC`` (see the module docstring); ``root`` anchors
    ``experiments/``. Raises ``ValueError`` naming the spec when the options file is unusable."""
    label, _, spec = text.rpartition('=') if '=' in text.split('@')[0] else ('', '', text)
    if spec == 'bicubic':
        return ModelSpec(label or 'Bicubic', source='bicubic')
    opt_path, _, checkpoint = spec.partition('@')
    if not osp.isfile(opt_path):
        raise ValueError(f'model {text!r}: options file {opt_path!r} does not exist')
    with open(opt_path) as f:
        opt = yaml.safe_load(f)
    if not isinstance(opt, dict) or not isinstance(opt.get('network_g'), dict):
        raise ValueError(f'model {text!r}: {opt_path!r} has no network_g section')
    paths = opt.get('path') or {}
    if not checkpoint:
        checkpoint = paths.get('pretrain_network_g') or osp.join(root, 'experiments', str(opt.get('name')), 'models',
                                                                 'net_g_latest.pth')
    return ModelSpec(label or str(opt.get('name') or osp.splitext(osp.basename(opt_path))[0]),
                     dict(opt['network_g']), checkpoint, paths.get('param_key_g'), opt.get('scale'), spec)


def build_arch(spec: ModelSpec) -> nn.Module:
    """The untrained network of ``spec``; an unknown arch name lists the closest registered ones."""
    arch, _ = split_init(spec.arch)  # the checkpoint's weights replace any initialisation
    name = arch.pop('type', None)
    # BasicSR's registry also answers `get(X)` with `X_basicsr` (SRVGGNetCompact is registered so)
    if name not in ARCH_REGISTRY and f'{name}_basicsr' not in ARCH_REGISTRY:
        close = difflib.get_close_matches(str(name), list(ARCH_REGISTRY.keys()), n=3, cutoff=0.4)
        raise ValueError(f'model {spec.label}: unknown arch {name!r}' + (f'; did you mean {", ".join(close)}?'
                                                                          if close else ''))
    return ARCH_REGISTRY.get(name)(**arch)


def select_params(ckpt: Any, param_key: str | None, label: str) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict inside a loaded checkpoint and the key it came from."""
    if not isinstance(ckpt, dict):
        raise ValueError(f'model {label}: the checkpoint holds a {type(ckpt).__name__}, not a state dict')
    if param_key:
        if param_key not in ckpt:
            raise ValueError(f'model {label}: parameter key {param_key!r} not in the checkpoint (it has '
                             f'{sorted(ckpt)[:5]})')
        return ckpt[param_key], param_key
    for key in ('params_ema', 'params'):
        if isinstance(ckpt.get(key), dict):
            return ckpt[key], key
    return ckpt, '(top level)'


def load_model(spec: ModelSpec) -> nn.Module:
    """``spec``'s network with its checkpoint, in eval mode. Keys and shapes must match exactly; the
    error names the first mismatching keys. A window-attention arch (``window_size`` in its options)
    comes padded to its window (:class:`~kd_plugin.archs.window_padding.PaddedToWindow`), so it takes
    any input size as the other archs do."""
    net = build_arch(spec)
    ckpt = load_weights_only(spec.checkpoint, f'model {spec.label} checkpoint')
    params, key = select_params(ckpt, spec.param_key, spec.label)
    mismatch = state_dict_mismatch(params, net)
    if mismatch:
        raise ValueError(f'model {spec.label}: {spec.checkpoint} [{key}] does not fit {spec.arch.get("type")}: '
                         f'{mismatch}')
    net.load_state_dict({k.removeprefix('module.'): v for k, v in params.items()})
    spec.notes.append(f'weights: {key}')
    multiple = window_multiple(spec.arch)
    if multiple > 1:
        spec.notes.append(f'input reflect-padded to multiples of {multiple}')
        net = PaddedToWindow(net, multiple)
    return net.eval()


def network_upscaler(net: nn.Module, device: torch.device):
    """An :data:`~kd_plugin.benchmark.quality.Upscaler` running ``net`` in fp32 on ``device``.

    8-bit BGR (or grey, replicated to 3 channels) in; 8-bit BGR (or 3-channel, for the caller to
    bring back to grey) out, rounded like BasicSR's ``tensor2img``."""

    @torch.no_grad()
    def upscale(lr: np.ndarray) -> np.ndarray:
        rgb = np.repeat(lr[..., None], 3, axis=2) if lr.ndim == 2 else lr[..., ::-1]
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float().div(255).to(device)
        y = net(x).float().clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy()
        return np.ascontiguousarray((y * 255.0).round().astype(np.uint8)[..., ::-1])

    return upscale
