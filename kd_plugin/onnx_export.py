"""Exporting a network to ONNX and proving the file (the library behind ``python -m kd_plugin.cli.export``).

The graph takes ``[1, 3, H, W]`` images in [0, 1] of any height and
width (dynamic axes) and returns ``[1, 3, sH, sW]``; the scale, arch and source are stored in the
file's metadata. The exporter is torch's (``torch.export`` + onnxscript, opset 20 by default):
DeformableHDRNet's DCNv2 layer becomes the standard ONNX ``DeformConv`` op, and the bilateral slice eight
``Gather`` ops on the grid's cells (:func:`kd_plugin.archs.bilateral_grid.slice_grid_gathered`, which
onnxruntime runs faster than the 5-D ``GridSample`` the slice was exported as before).

:func:`export_verified` runs the ONNX file in onnxruntime on a real photograph (scikit-image's
``astronaut``, cropped) at two sizes and compares with PyTorch: the largest difference must stay within
1e-4 (fp32) or 2e-2 (``--fp16``: weights and activations in half precision, inputs and outputs fp32);
otherwise it raises :class:`ExportError` naming it and no file is left behind. An op without an ONNX translation is
an error naming the op and the layer that calls it; nothing is ever exported in a different form
silently.
"""
import contextlib
import io
import os
import re
import tempfile
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from os import path as osp
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from kd_plugin.data.bundled_photos import load_photo
from kd_plugin.model_loading import OnnxNet

TOLERANCE = {'fp32': 1e-4, 'fp16': 2e-2}
#: (top, left, height, width) of the LR crops of the check photograph: two shapes, odd sides included
CHECK_CROPS = ((100, 150, 40, 56), (260, 300, 29, 37))


class ExportError(ValueError):
    """The model cannot be exported faithfully; the message says why and what to do."""


class _OpLocator(TorchDispatchMode):
    """Records, for every aten op run inside it, the dotted name of the innermost module that ran it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.where: dict[str, str] = {}
        self.handles = []
        for name, module in model.named_modules():
            self.handles.append(module.register_forward_pre_hook(self._enter(name)))
            self.handles.append(module.register_forward_hook(self._leave))

    def _enter(self, name: str):
        def hook(module, args) -> None:
            self.stack.append(name)
        return hook

    def _leave(self, module, args, output) -> None:  # returns None: the output is left alone
        self.stack.pop()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.where.setdefault(str(func.overloadpacket), self.stack[-1] if self.stack else '')
        return func(*args, **(kwargs or {}))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def locate_op(model: nn.Module, x: torch.Tensor, op: str) -> str:
    """The dotted name of the layer whose forward calls aten op ``op`` (e.g. ``aten.cummax``)."""
    locator = _OpLocator(model)
    try:
        with torch.no_grad(), locator:
            model(x)
    finally:
        locator.remove()
    return locator.where.get(op, '?')


def _unsupported_op(err: Exception) -> str | None:
    text = f'{err} {err.__cause__ or ""}'
    match = re.search(r"No ONNX function found for <OpOverload\(op='([\w.]+)'", text)
    return match.group(1) if match else None


def export_onnx(net: nn.Module, path: str, opset: int) -> None:
    """``net`` (eval mode, fp32) written to ``path`` with dynamic height and width."""
    x = torch.rand(1, 3, 32, 32)
    dims = {2: torch.export.Dim('height', min=4), 3: torch.export.Dim('width', min=4)}
    try:
        with warnings.catch_warnings(), _quiet():
            warnings.simplefilter('ignore')
            torch.onnx.export(net, (x,), path, input_names=['lr'], output_names=['sr'], opset_version=opset,
                              dynamo=True, dynamic_shapes={'x': dims}, external_data=False)
    except Exception as err:  # noqa: BLE001  (the exporter raises many types; each is reported the same way)
        op = _unsupported_op(err)
        if op:
            layer = locate_op(net, x, op)
            kind = type(dict(net.named_modules()).get(layer, net)).__name__
            raise ExportError(f'op {op} (called by layer {layer!r}, a {kind}) has no ONNX translation in this '
                              'torch/onnxscript; the model was not exported. Fix: replace that op in the arch with '
                              'exportable ones, or keep this model in PyTorch') from err
        raise ExportError(f'torch.onnx.export failed: {str(err).splitlines()[0]}') from err


@contextmanager
def _quiet():
    """Silence the exporter's progress prints (it writes to stdout)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def to_fp16(path: str) -> None:
    """Weights and activations in half precision, inputs and outputs kept fp32 (onnxruntime's converter)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(path), keep_io_types=True), path)


def set_metadata(path: str, fields: dict[str, Any]) -> None:
    import onnx

    model = onnx.load(path)
    for key, value in fields.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.save(model, path)


def check_images() -> list[np.ndarray]:
    """RGB float crops ``[1, 3, h, w]`` of a real photograph, one per :data:`CHECK_CROPS`."""
    photo = load_photo('astronaut').astype(np.float32) / 255.0  # [512, 512, 3] RGB
    crops = [photo[top:top + h, left:left + w] for top, left, h, w in CHECK_CROPS]
    return [np.ascontiguousarray(c.transpose(2, 0, 1)[None]) for c in crops]


def compare(net: nn.Module, path: str,
            progress: Callable[[str], None] = lambda step: None) -> list[tuple[tuple[int, int], float]]:
    """``[(LR size, max |ONNX - PyTorch|)]`` on :func:`check_images`."""
    onnx_net = OnnxNet(path)
    results = []
    for image in check_images():
        progress(f'checking onnxruntime against PyTorch on an LR {image.shape[-2]}x{image.shape[-1]} crop')
        x = torch.from_numpy(image)
        with torch.no_grad():
            onnx_out, torch_out = onnx_net(x).numpy(), net(x).numpy()
        if onnx_out.shape != torch_out.shape:
            raise ExportError(f'the ONNX output is {onnx_out.shape} for a {image.shape} input, PyTorch gives '
                              f'{torch_out.shape}')
        results.append((image.shape[-2:], float(np.abs(onnx_out - torch_out).max())))
    return results


def require_onnx() -> None:
    """``ValueError`` with the fix when onnx or onnxruntime is not installed."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as err:
        raise ValueError('export needs onnx and onnxruntime. Fix: pip install -e ".[export]"') from err


def export_verified(net: nn.Module, output: str, opset: int, fp16: bool, metadata: dict[str, Any],
                    progress: Callable[[str], None] = lambda step: None) -> list[tuple[tuple[int, int], float]]:
    """Export ``net`` to ``output`` (written only once onnxruntime matches PyTorch within :data:`TOLERANCE`
    on the check photograph), with ``metadata`` and ``kd_plugin.precision``; returns the comparisons
    ``[((h, w), max |diff|)]``. ``progress(step)`` is told each step as it starts. Raises :class:`ExportError`;
    a failed export leaves no file."""
    require_onnx()
    precision = 'fp16' if fp16 else 'fp32'
    folder = osp.dirname(osp.abspath(output))
    os.makedirs(folder, exist_ok=True)
    handle, tmp = tempfile.mkstemp(suffix='.onnx', dir=folder, prefix='.export-')
    os.close(handle)
    try:
        progress(f'exporting (opset {opset}, dynamic height and width)')
        export_onnx(net, tmp, opset)
        if fp16:
            progress('converting to fp16')
            to_fp16(tmp)
        set_metadata(tmp, {**metadata, 'kd_plugin.precision': precision})
        results = compare(net, tmp, progress)
        worst = max(diff for _, diff in results)
        if not worst <= TOLERANCE[precision]:
            raise ExportError(f'the ONNX model differs from PyTorch by up to {worst:.3g} (tolerance '
                              f'{TOLERANCE[precision]:g} for {precision}) on the check photograph; not written')
        os.replace(tmp, output)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    return results
