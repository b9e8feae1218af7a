"""Teacher labels of whole images: the x8 self-ensemble, tiling, and the mean of several teachers.

A label is the teacher's SR output ``[1, C, s*H, s*W]`` of a whole LR image ``[1, C, H, W]``. Computed
once on the whole image it is better than the teacher's output on a training patch (no patch border,
and HDRNet's global path sees the whole image), and it costs nothing per training step.
"""
from collections.abc import Callable, Sequence
from contextlib import nullcontext

import torch
from torch import nn

from kd_plugin.archs.window_padding import crop_to_input, pad_to_multiple

Forward = Callable[[torch.Tensor], torch.Tensor]

#: ``(rot90 turns, horizontal flip)`` of the eight symmetries of the square.
DIHEDRAL = tuple((k, flip) for flip in (False, True) for k in range(4))
ENSEMBLES = {'none': 1, 'x8': 8}


def _apply(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    x = x.flip(-1) if flip else x
    return torch.rot90(x, k, dims=(-2, -1))


def _undo(y: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    y = torch.rot90(y, -k, dims=(-2, -1))
    return y.flip(-1) if flip else y


def self_ensemble(forward: Forward, x: torch.Tensor) -> torch.Tensor:
    """The x8 self-ensemble: the mean of ``g^-1(forward(g(x)))`` over the 8 rotations/flips ``g``.

    The mean over the whole group commutes with every rotation/flip, so a stored label can be
    flipped and rotated with its GT by BasicSR's ``augment`` and still be the ensemble of the flipped
    input."""
    total = None
    for k, flip in DIHEDRAL:
        out = _undo(forward(_apply(x, k, flip)).float(), k, flip)
        total = out if total is None else total + out
    return total / len(DIHEDRAL)


def tiled(forward: Forward, x: torch.Tensor, scale: int, tile: int, overlap: int) -> torch.Tensor:
    """``forward(x)`` computed on LR tiles of ``tile`` px that overlap by ``overlap`` px on each side;
    each tile contributes only its centre (the part at least ``overlap`` px from a cut).

    Equal to ``forward(x)`` up to float rounding when ``overlap`` covers the network's receptive field
    (radius in LR px); an arch with a global path (HDRNet's pooled features) sees each tile instead of
    the image, so its tiled labels differ: give it whole images. ``tile <= 0`` or an image that fits
    in one tile: a single call."""
    h, w = x.shape[-2:]
    if tile <= 0 or (h <= tile and w <= tile):
        return forward(x).float()
    if overlap * 2 >= tile:
        raise ValueError(f'--tile {tile} must be more than twice --tile-overlap {overlap}')
    out = x.new_zeros(*x.shape[:-2], h * scale, w * scale, dtype=torch.float32)
    step = tile - 2 * overlap
    for top in range(0, h, step):
        for left in range(0, w, step):
            # the tile's own centre: [top, top + step) x [left, left + step), cut to the image
            bottom, right = min(top + step, h), min(left + step, w)
            t0, l0 = max(top - overlap, 0), max(left - overlap, 0)
            t1, l1 = min(bottom + overlap, h), min(right + overlap, w)
            piece = forward(x[..., t0:t1, l0:l1]).float()
            out[..., top * scale:bottom * scale, left * scale:right * scale] = piece[
                ..., (top - t0) * scale:(bottom - t0) * scale, (left - l0) * scale:(right - l0) * scale]
    return out


class TeacherRunner:
    """A frozen teacher's no-grad forward in the fast path a KD options file gives it (``train.teacher``):
    autocast dtype, channels_last, inputs reflect-padded to ``pad_to`` and the output cropped back."""

    def __init__(self, net: nn.Module, dtype: torch.dtype | None = None, channels_last: bool = False,
                 pad_to: int = 1) -> None:
        self.net = net.eval().requires_grad_(False)
        self.dtype, self.channels_last, self.pad_to = dtype, channels_last, pad_to
        if channels_last:
            self.net.to(memory_format=torch.channels_last)

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        """``[B, C, s*h, s*w]`` float32 for ``lq`` ``[B, C, h, w]``, in whatever autograd context the caller
        set (KDModel's forward adaptation needs gradients through the teacher's tail)."""
        padded = pad_to_multiple(lq, self.pad_to)
        if self.channels_last:
            padded = padded.contiguous(memory_format=torch.channels_last)
        context = torch.autocast(padded.device.type, dtype=self.dtype) if self.dtype else nullcontext()
        with context:
            out = self.net(padded)
        return crop_to_input(out.float(), padded, *lq.shape[-2:])

    @torch.no_grad()
    def __call__(self, lq: torch.Tensor) -> torch.Tensor:
        return self.forward(lq)


def label(teachers: Sequence[Forward], lq: torch.Tensor, scale: int, ensemble: str = 'none', tile: int = 0,
          overlap: int = 16) -> torch.Tensor:
    """The label of LR image(s) ``lq`` ``[B, C, H, W]``: the per-pixel mean over ``teachers`` of each one's
    output (``ensemble``: ``none`` or ``x8``; tiled when ``tile > 0``), ``[B, C, s*H, s*W]`` float32,
    not clamped or rounded."""
    if ensemble not in ENSEMBLES:
        raise ValueError(f'--ensemble {ensemble!r}: choose one of {", ".join(ENSEMBLES)}')
    outs = []
    for teacher in teachers:
        def one(x: torch.Tensor, teacher: Forward = teacher) -> torch.Tensor:
            return tiled(teacher, x, scale, tile, overlap)
        outs.append(self_ensemble(one, lq) if ensemble == 'x8' else one(lq))
    return torch.stack(outs).mean(dim=0)
