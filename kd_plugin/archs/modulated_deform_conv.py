"""Modulated deformable convolution (DCNv2, Zhu et al. CVPR 2019) on torchvision's ``deform_conv2d``."""
import math

import torch
from torch import nn
from torchvision.ops import deform_conv2d


class ModulatedDeformConv2d(nn.Module):
    """A 3x3-style conv whose taps move by learned offsets and are scaled by learned masks.

    A plain conv (``offset_mask``) predicts, per output pixel, ``2*k*k`` offsets and ``k*k`` mask
    logits from the input. Offsets and logits start at exactly zero and the mask is
    ``2 * sigmoid(logit)``, so at initialisation the layer *is* a plain convolution with
    ``weight``/``bias``; deformation is learned from there.

    Shapes: ``[B, in_ch, H, W] -> [B, out_ch, H', W']`` as for ``nn.Conv2d`` with the same
    kernel size, stride and padding (``padding = kernel_size // 2`` by default).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1, padding: int | None = None,
                 bias: bool = True) -> None:
        super().__init__()
        self.stride, self.padding = stride, kernel_size // 2 if padding is None else padding
        self.weight = nn.Parameter(torch.empty(out_ch, in_ch, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        taps = kernel_size * kernel_size
        self.offset_mask = nn.Conv2d(in_ch, 3 * taps, kernel_size, stride, self.padding)
        nn.init.zeros_(self.offset_mask.weight)
        nn.init.zeros_(self.offset_mask.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        taps = self.weight.shape[-1] ** 2
        offset, logits = self.offset_mask(x).split((2 * taps, taps), dim=1)
        # torchvision's CPU deform_conv2d crashes the process (SIGSEGV) on a NaN offset; a NaN input
        # must give a NaN output (the mask carries it) that train.nan_policy can handle instead.
        offset = torch.nan_to_num(offset, nan=0.0)
        mask = 2.0 * torch.sigmoid(logits)
        # deform_conv2d has no reduced-precision kernel: run it in the weight's dtype under autocast.
        dtype = self.weight.dtype
        return deform_conv2d(x.to(dtype), offset.to(dtype), self.weight, self.bias, stride=self.stride,
                             padding=self.padding, mask=mask.to(dtype))
