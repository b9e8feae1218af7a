"""The bilateral-grid operations shared by ``HDRNet`` and ``DeformableHDRNet``.

A bilateral grid holds, for each cell ``(luma bin d, row gy, column gx)``, the ``n_out x (n_in + 1)``
coefficients of an affine map (Gharbi et al., SIGGRAPH 2017). Slicing looks the grid up at every
output pixel ``(x, y)`` and its guide value ``g`` in [0, 1] with trilinear interpolation; applying
multiplies the pixel's ``n_in`` input channels by the sliced matrix and adds its offset column.
"""
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from kd_plugin.archs import fused_slice


def slice_grid(grid: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    """Trilinear lookup of ``grid`` at every pixel of ``guide``.

    Args:
        grid: ``[B, C, D, Gh, Gw]``: C coefficients over D guide bins and a Gh x Gw spatial grid.
        guide: ``[B, 1, H, W]`` (or ``[B, H, W]``), values in [0, 1]; H, W are the output size.

    Returns:
        ``[B, C, H, W]``. Pixel centres are aligned (pixel ``j`` of W sits at grid coordinate
        ``(j + 0.5) * Gw / W - 0.5``, guide ``g`` at bin coordinate ``g * D - 0.5``) and coordinates
        outside the grid are clamped to its border. ``grid_sample`` with ``align_corners=False`` and
        ``padding_mode='border'`` is exactly this lookup.
    """
    if guide.dim() == 4:
        guide = guide[:, 0]
    b, h, w = guide.shape
    ys = (torch.arange(h, device=guide.device, dtype=guide.dtype) + 0.5) * (2.0 / h) - 1.0
    xs = (torch.arange(w, device=guide.device, dtype=guide.dtype) + 0.5) * (2.0 / w) - 1.0
    coords = torch.stack((xs.view(1, 1, w).expand(b, h, w), ys.view(1, h, 1).expand(b, h, w), guide * 2.0 - 1.0),
                         dim=-1)
    sliced = F.grid_sample(grid, coords.unsqueeze(1).to(grid.dtype), mode='bilinear', padding_mode='border',
                           align_corners=False)
    return sliced[:, :, 0]


def _cells(size: int, normalised: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``grid_sample``'s lookup along one axis (``align_corners=False``, border): the lower and upper cell indices
    and the upper cell's weight for normalised coordinates in [-1, 1] (a NaN, on the last cell, as
    ``grid_sample`` puts it)."""
    position = (((normalised + 1.0) * size - 1.0) / 2.0).clamp(0, size - 1)
    position = torch.where(torch.isnan(position), torch.full_like(position, size - 1), position)
    low = position.floor()
    return low.long(), (low.long() + 1).clamp(max=size - 1), position - low


def slice_grid_gathered(grid: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    """:func:`slice_grid` as eight gathers from the grid's cells (``[B * D * Gh * Gw, C]``) and their trilinear
    weights: the formulation the ONNX export uses, as onnxruntime runs it faster than the 5-D ``GridSample``
    (1.55x on the student's whole graph at 480x270, measured in one run; docs/results.md). Same arguments and
    result as :func:`slice_grid`, up to float rounding."""
    if guide.dim() == 4:
        guide = guide[:, 0]
    b, c, d, gh, gw = grid.shape
    h, w = guide.shape[-2:]
    y0, y1, wy = _cells(gh, (torch.arange(h, dtype=grid.dtype, device=grid.device) + 0.5) * (2.0 / h) - 1.0)
    x0, x1, wx = _cells(gw, (torch.arange(w, dtype=grid.dtype, device=grid.device) + 0.5) * (2.0 / w) - 1.0)
    z0, z1, wz = _cells(d, guide.to(grid.dtype) * 2.0 - 1.0)                     # [B, H, W]
    wy, wx, wz = wy.view(1, h, 1, 1), wx.view(1, 1, w, 1), wz.unsqueeze(-1)
    cells = grid.permute(0, 2, 3, 4, 1).reshape(b * d * gh * gw, c)
    first = (torch.arange(b, device=grid.device) * (d * gh * gw)).view(b, 1, 1)
    out = None
    for z, weight_z in ((z0, 1 - wz), (z1, wz)):
        for y, weight_y in ((y0, 1 - wy), (y1, wy)):
            for x, weight_x in ((x0, 1 - wx), (x1, wx)):
                index = first + (z * gh + y.view(1, h, 1)) * gw + x.view(1, 1, w)
                corner = weight_z * weight_y * weight_x * cells[index.reshape(-1)].view(b, h, w, c)
                out = corner if out is None else out + corner
    return out.permute(0, 3, 1, 2)


def apply_affine(coeffs: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """Per-pixel affine map: ``out[c] = sum_i A[c, i] * in[i] + A[c, n_in]``.

    Args:
        coeffs: ``[B, n_out * (n_in + 1), H, W]``, row-major ``A`` (``n_out`` rows of ``n_in + 1``).
        inputs: ``[B, n_in, H, W]``.

    Returns:
        ``[B, n_out, H, W]``.
    """
    b, n_in, h, w = inputs.shape
    a = coeffs.view(b, -1, n_in + 1, h, w)
    return (a[:, :, :n_in] * inputs.unsqueeze(1)).sum(dim=2) + a[:, :, n_in]


def apply_affine_accumulated(coeffs: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """:func:`apply_affine` without its ``[B, n_out, n_in, H, W]`` product tensor: the offset column plus
    one ``addcmul`` per input channel (same result up to float rounding, several times less memory traffic)."""
    b, n_in, h, w = inputs.shape
    a = coeffs.view(b, -1, n_in + 1, h, w)
    out = a[:, :, n_in].clone()
    for i in range(n_in):
        out = out.addcmul(a[:, :, i], inputs[:, i:i + 1])
    return out


def _bands(h: int, batch: int, device: torch.device) -> int:
    """How many row bands to fold into the batch: ``grid_sampler_3d`` on the CPU parallelises over the
    batch only, so a small batch gets one band per thread (CUDA kernels parallelise over pixels, and a
    compiled or exported graph gets its own kernels)."""
    if device.type != 'cpu' or torch.compiler.is_compiling():
        return 1
    return max(1, min(torch.get_num_threads() // batch, h))


def _fold(x: torch.Tensor, bands: int) -> torch.Tensor:
    """``[B, ..., H, W]`` -> ``[bands * B, ..., ceil(H / bands), W]``, the last band padded with its last row."""
    h = x.shape[-2]
    rows = -(-h // bands)
    if rows * bands != h:
        x = torch.cat([x, x[..., -1:, :].expand(*x.shape[:-2], rows * bands - h, x.shape[-1])], dim=-2)
    x = x.unflatten(-2, (bands, rows))                # [B, ..., bands, rows, W]
    x = x.movedim(-3, 0)                               # [bands, B, ..., rows, W]
    return x.flatten(0, 1)


def _unfold(x: torch.Tensor, bands: int, h: int) -> torch.Tensor:
    """The inverse of :func:`_fold` (cropped back to ``h`` rows)."""
    x = x.unflatten(0, (bands, x.shape[0] // bands))  # [bands, B, ..., rows, W]
    x = x.movedim(0, -3)                               # [B, ..., bands, rows, W]
    return x.flatten(-3, -2)[..., :h, :]


_export = {'gathered': True}


@contextmanager
def grid_sample_export() -> Iterator[None]:
    """Inside the block, an ONNX export slices with the 5-D ``grid_sample`` (as before :func:`slice_grid_gathered`),
    for the cost benchmark's before-and-after rows."""
    _export['gathered'] = False
    try:
        yield
    finally:
        _export['gathered'] = True


def needs_grad(*tensors: torch.Tensor, modules: tuple[torch.nn.Module, ...] = ()) -> bool:
    """Whether autograd records a step that reads ``tensors`` and the parameters of ``modules``: grad mode is on
    and one of them requires a gradient (the fused kernel has no backward, so it must not run then)."""
    if not torch.is_grad_enabled():
        return False
    return (any(t.requires_grad for t in tensors)
            or any(p.requires_grad for module in modules for p in module.parameters()))


def fused_kernel_for(grid: torch.Tensor, training: bool):
    """The fused C++ slice + apply (:mod:`kd_plugin.archs.fused_slice`) where it applies: CPU float32 inference
    on plain tensors, outside ``torch.compile``, ``torch.export``, ONNX export and TorchScript tracing (a trace
    records the kernel's output allocation only, not what it computes); else None."""
    if training or grid.device.type != 'cpu' or grid.dtype != torch.float32 or type(grid) is not torch.Tensor:
        return None
    if (torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export()
            or torch.jit.is_tracing()):
        return None
    return fused_slice.kernel()


def slice_and_apply(grid: torch.Tensor, guide: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """``apply_affine(slice_grid(grid, guide), inputs)``, computed faster on the CPU.

    Same lookup and the same affine maps: each pixel is sliced exactly as :func:`slice_grid` does, and
    the apply differs from :func:`apply_affine` only in float rounding (tested to 1e-5). CPU inference in
    float32 runs the fused C++ kernel (:mod:`kd_plugin.archs.fused_slice`: one pass over the output, no
    sliced-coefficient tensor) where it could be built. Otherwise, without autograd it runs as
    :func:`apply_affine_accumulated`, and on the CPU the
    image is cut into row bands folded into the batch, so ``grid_sample`` (parallel over the batch only)
    uses every thread, and the 27-channel sliced coefficients never leave the banded layout: only the
    ``n_in``-channel inputs and the ``n_out``-channel result are re-laid out.

    Args:
        grid: ``[B, n_out * (n_in + 1), D, Gh, Gw]``.
        guide: ``[B, 1, H, W]`` in [0, 1].
        inputs: ``[B, n_in, H, W]``.

    Returns:
        ``[B, n_out, H, W]``.
    """
    b, _, h, _ = inputs.shape
    # with autograd recording, the one broadcast product is cheaper than eight saved addcmul steps
    training = needs_grad(grid, guide, inputs)
    fused = fused_kernel_for(grid, training)
    if fused is not None:
        return fused.slice_apply(grid, guide if guide.dim() == 4 else guide[:, None], inputs)
    apply = apply_affine if training else apply_affine_accumulated
    if torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export():
        return apply((slice_grid_gathered if _export['gathered'] else slice_grid)(grid, guide), inputs)
    bands = _bands(h, b, inputs.device)
    if bands == 1:
        return apply(slice_grid(grid, guide), inputs)
    guide = _fold(guide if guide.dim() == 4 else guide[:, None], bands)[:, 0]        # [bands * B, rows, W]
    n, rows, w = guide.shape
    ys = (torch.arange(rows * bands, device=guide.device, dtype=guide.dtype) + 0.5) * (2.0 / h) - 1.0
    ys = ys.view(bands, 1, rows, 1).expand(bands, b, rows, w).reshape(n, rows, w)  # band k: rows k*rows...
    xs = ((torch.arange(w, device=guide.device, dtype=guide.dtype) + 0.5) * (2.0 / w) - 1.0).expand(n, rows, w)
    coords = torch.stack((xs, ys, guide * 2.0 - 1.0), dim=-1)                          # [bands * B, rows, W, 3]
    grids = grid.unsqueeze(0).expand(bands, *grid.shape).flatten(0, 1)
    sliced = F.grid_sample(grids, coords.unsqueeze(1).to(grid.dtype), mode='bilinear', padding_mode='border',
                           align_corners=False)[:, :, 0]
    return _unfold(apply(sliced, _fold(inputs, bands)), bands, h)
