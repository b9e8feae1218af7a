"""Run window-attention archs (SwinIR-style, ``window_size`` in their options) on any input size.

BasicSR's SwinIR only takes inputs whose sides are multiples of its window; BasicSR's
``SwinIRModel.test`` reflect-pads the LR image up to the next multiple and crops the SR output back.
These helpers do the same for every other place a network meets a whole image: the KD teacher, the
benchmark (quality, FLOPs and latency at ``--lr-size``) and ``kd_plugin.inference``.
"""
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def window_multiple(arch: dict[str, Any]) -> int:
    """The multiple an arch's input sides must have: its ``window_size`` option, else 1."""
    value = arch.get('window_size', 1)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 1 else 1


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """``x`` ``[B, C, h, w]`` padded at the bottom/right to sides that are multiples of ``multiple``.

    Reflection like BasicSR's ``SwinIRModel``; replication when a side is too small to reflect."""
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    if not (pad_h or pad_w):
        return x
    mode = 'reflect' if pad_h < h and pad_w < w else 'replicate'
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def crop_to_input(out: torch.Tensor, padded: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The part of an SR output ``out`` (``scale`` x ``padded``'s size) that belongs to the unpadded
    ``h`` x ``w`` input."""
    scale = out.shape[-2] // padded.shape[-2]
    return out[..., :h * scale, :w * scale]


class PaddedToWindow(nn.Module):
    """``net`` behind :func:`pad_to_multiple` / :func:`crop_to_input`; same parameters as ``net``."""

    def __init__(self, net: nn.Module, multiple: int) -> None:
        super().__init__()
        self.net, self.multiple = net, multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = pad_to_multiple(x, self.multiple)
        return crop_to_input(self.net(padded), padded, *x.shape[-2:])
