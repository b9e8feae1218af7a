"""Loading trained networks for inference (benchmark, demo, ablation, infer, export), safely.

A model is given on the command line as ``[LABEL=]SPEC`` where SPEC is

* ``bicubic``: MATLAB-style bicubic upscaling (no network);
* ``OPTIONS.yml``: its ``network_g`` with the checkpoint ``path.pretrain_network_g``, or, for a
  training options file without one, ``experiments/<name>/models/net_g_latest.pth``;
* ``OPTIONS.yml@CHECKPOINT.pth``: the same arch with that checkpoint (e.g. an official release).

An arch that reads its own weights (``network_g: {type: SpandrelNet}``, any published checkpoint that
spandrel recognises, ``.safetensors`` too) is given the checkpoint as its ``checkpoint`` option
(:func:`~kd_plugin.archs.self_loading.with_checkpoint`; without ``@CHECKPOINT`` or ``path.pretrain_network_g``
the section's own ``checkpoint`` is the file), and the model's scale, when the options file has none, is the
one the arch detected.

The parameter key is ``path.param_key_g`` when set, else ``params_ema`` when the checkpoint has it
(BasicSR's EMA weights, what its releases evaluate), else ``params``: the rule of
:func:`kd_plugin.checkpoint_io.pick_state_dict`, which KD teachers follow too.
"""
from collections.abc import Callable
from dataclasses import dataclass, field
from os import path as osp
from typing import Any

import numpy as np
import torch
from torch import nn

from kd_plugin.archs.build import build_network
from kd_plugin.archs.self_loading import load_weights, loads_own_weights, with_checkpoint
from kd_plugin.archs.window_padding import PaddedToWindow, window_multiple
from kd_plugin.checkpoint_io import load_weights_only, pick_state_dict, state_dict_mismatch
from kd_plugin.runs import latest_weights, load_options

#: How a checkpoint that is a plain state dict (no ``params`` entry) names where its weights came from.
TOP_LEVEL = '(top level)'


@dataclass
class ModelSpec:
    label: str
    arch: dict[str, Any] | None = None  # None: bicubic
    checkpoint: str | None = None
    param_key: str | None = None
    scale: int | None = None
    source: str = ''
    notes: list[str] = field(default_factory=list)
    #: the checkpoint entry :func:`load_model` took the weights from (``params``, ``params_ema`` or ``(top level)``)
    loaded_key: str | None = None

    @property
    def is_bicubic(self) -> bool:
        return self.arch is None

    @property
    def upscale(self) -> int | None:
        """The model's scale: the options file's ``scale``, else the arch's ``upscale``/``scale`` argument."""
        return self.scale or (self.arch or {}).get('upscale') or (self.arch or {}).get('scale')


def parse_model(text: str, root: str = '.') -> ModelSpec:
    """A :class:`ModelSpec` from ``[LABEL=]SPEC`` (see the module docstring); ``root`` anchors
    ``experiments/``. Raises ``ValueError`` naming the spec when the options file is unusable."""
    label, _, spec = text.rpartition('=') if '=' in text.split('@')[0] else ('', '', text)
    if spec == 'bicubic':
        return ModelSpec(label or 'Bicubic', source='bicubic')
    opt_path, _, checkpoint = spec.partition('@')
    try:
        opt = load_options(opt_path)
    except ValueError as err:
        raise ValueError(f'model {text!r}: {err}') from err
    if not isinstance(opt.get('network_g'), dict):
        raise ValueError(f'model {text!r}: {opt_path!r} has no network_g section')
    paths = opt.get('path') or {}
    if not checkpoint:
        own = opt['network_g'].get('checkpoint') if loads_own_weights(opt['network_g']) else None
        checkpoint = paths.get('pretrain_network_g') or own or latest_weights(str(opt.get('name')), root)
    return ModelSpec(label or str(opt.get('name') or osp.splitext(osp.basename(opt_path))[0]),
                     dict(opt['network_g']), checkpoint, paths.get('param_key_g'), opt.get('scale'), spec)


def load_model(spec: ModelSpec) -> nn.Module:
    """``spec``'s network with its checkpoint, in eval mode. Keys and shapes must match exactly; the
    error names the first mismatching keys. A window-attention arch (``window_size`` in its options)
    comes padded to its window (:class:`~kd_plugin.archs.window_padding.PaddedToWindow`), so it takes
    any input size as the other archs do."""
    arch = with_checkpoint(spec.arch, spec.checkpoint, f'model {spec.label} network', 'its checkpoint',
                           param_key=spec.param_key, scale=spec.upscale)
    net = build_network(arch, f'model {spec.label}', init=False)  # the checkpoint replaces any init
    option = f'model {spec.label} checkpoint'
    params, key = pick_state_dict(load_weights_only(spec.checkpoint, option), spec.param_key, option)
    key = spec.loaded_key = key or TOP_LEVEL
    self_loaded = loads_own_weights(net)  # it has read the same file and entry as it was built
    mismatch = None if self_loaded else state_dict_mismatch(params, net)
    if mismatch:
        raise ValueError(f'model {spec.label}: {spec.checkpoint} [{key}] does not fit {spec.arch.get("type")}: '
                         f'{mismatch}')
    load_weights(net, params)
    spec.notes.append(f'weights: {key}')
    if self_loaded and spec.upscale is None:
        spec.scale = getattr(net, 'scale', None)  # detected from the file (SpandrelNet)
    multiple = window_multiple(spec.arch)
    if multiple > 1:
        spec.notes.append(f'input reflect-padded to multiples of {multiple}')
        net = PaddedToWindow(net, multiple)
    return net.eval()


def network_upscaler(net: nn.Module, device: torch.device) -> Callable[[np.ndarray], np.ndarray]:
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


class OnnxNet(nn.Module):
    """An exported ``.onnx`` SR model (``python -m kd_plugin.cli.export``) run by onnxruntime (its CPU provider
    unless ``provider`` says otherwise), called
    like the PyTorch network: ``[1, 3, h, w]`` float tensor in, ``[1, 3, s*h, s*w]`` out (gradients do
    not flow through it). ``scale`` comes from the file's metadata."""

    def __init__(self, path: str, threads: int | None = None, provider: str = 'CPUExecutionProvider',
                 profile_prefix: str | None = None) -> None:
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise ValueError(f'{path}: running an ONNX model needs onnxruntime. Fix: pip install -e ".[export]"') \
                from err
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        if profile_prefix:  # onnxruntime's own per-node timings, written by session.end_profiling()
            options.enable_profiling = True
            options.profile_file_prefix = profile_prefix
        try:
            self.session = ort.InferenceSession(path, options, providers=[provider])
        except Exception as err:  # noqa: BLE001  (onnxruntime raises its own exception types)
            raise ValueError(f'{path}: onnxruntime cannot load it ({str(err).splitlines()[0]})') from err
        meta = self.session.get_modelmeta().custom_metadata_map
        self.scale = int(meta['kd_plugin.scale']) if 'kd_plugin.scale' in meta else None
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input_name: x.detach().float().cpu().numpy()})[0]
        return torch.from_numpy(out).to(x.device)
