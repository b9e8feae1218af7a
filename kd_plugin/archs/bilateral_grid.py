"""The bilateral-grid operations shared by ``HDRNet`` and ``DeformableHDRNet``.

A bilateral grid holds, for each cell ``(luma bin d, row gy, column gx)``, the ``n_out x (n_in + 1)``
coefficients of an affine map (Gharbi et al., SIGGRAPH 2017). Slicing looks the grid up at every
output pixel ``(x, y)`` and its guide value ``g`` in [0, 1] with trilinear interpolation; applying
multiplies the pixel's ``n_in`` input channels by the sliced matrix and adds its offset column.
"""
import torch
import torch.nn.functional as F


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
