"""The bilateral-grid SR network that ``HDRNet`` and ``DeformableHDRNet`` configure.

Data flow for an LR image ``x`` (``[B, 3, h, w]``) and scale ``s``::

    x ─ head ─ trunk.0 ─ trunk.1 ─ trunk_tail ─(+head)─ f_lr [B, F, h, w]
                                                     │
        ┌────────────────────────────────────────────┤
        │ coefficient network (low resolution)       │ upsample: conv + PixelShuffle(s)
        │ coeffs.splat  (stride-2 convs)             │   u [B, hr_feat, sh, sw]
        │   ├ coeffs.local   (convs)                 │      │
        │   └ coeffs.global_path (strided convs,     │   guide: pointwise MLP -> sigmoid
        │        global pool, FC)                   │   g [B, 1, sh, sw] in [0, 1]
        │ fusion: relu(local + global)               │      │
        │ coeffs.grid (1x1 conv -> 5-D bilateral grid)      │
        │   [B, n_out*(hr_feat+1), D, h/2^k, w/2^k] ── slice(grid, g) ── apply(A, u) ── + bicubic(x) = y

The global path ends in global average pooling, so any LR size works; the grid's spatial size follows
the input (one cell per ``2^n_splat`` LR pixels).
"""
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from kd_plugin.archs.bilateral_grid import fused_kernel_for, needs_grad, slice_and_apply
from kd_plugin.archs.modulated_deform_conv import ModulatedDeformConv2d

ConvFactory = Callable[[int, int], nn.Module]


def plain_conv(in_ch: int, out_ch: int) -> nn.Module:
    return nn.Conv2d(in_ch, out_ch, 3, 1, 1)


class ResidualBlock(nn.Module):
    """``x + conv(relu(conv(x)))`` with the first conv from ``first_conv`` (plain or deformable)."""

    def __init__(self, num_feat: int, first_conv: ConvFactory = plain_conv) -> None:
        super().__init__()
        self.conv1 = first_conv(num_feat, num_feat)
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class CoefficientNet(nn.Module):
    """Low-resolution features -> bilateral grid ``[B, n_coef, D, Gh, Gw]`` (``n_coef = n_out*(hr_feat+1)``)."""

    def __init__(self, in_ch: int, width: int, n_coef: int, luma_bins: int, n_splat: int, n_global: int,
                 local_conv: ConvFactory = plain_conv) -> None:
        super().__init__()
        self.n_coef, self.luma_bins = n_coef, luma_bins
        splat = []
        for i in range(n_splat):
            splat += [nn.Conv2d(in_ch if i == 0 else width, width, 3, 2, 1), nn.ReLU(inplace=True)]
        self.splat = nn.Sequential(*splat)
        self.local = nn.Sequential(local_conv(width, width), nn.ReLU(inplace=True), nn.Conv2d(width, width, 3, 1, 1))
        strided = []
        for _ in range(n_global):
            strided += [nn.Conv2d(width, width, 3, 2, 1), nn.ReLU(inplace=True)]
        self.global_path = nn.Sequential(*strided, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                         nn.Linear(width, width), nn.ReLU(inplace=True), nn.Linear(width, width))
        self.grid = GridHead(width, n_coef, luma_bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = self.splat(x)
        fused = F.relu(self.local(low) + self.global_path(low)[:, :, None, None])
        return self.grid(fused)


class GridHead(nn.Module):
    """1x1 conv predicting ``n_coef * D`` channels, viewed as the 5-D grid ``[B, n_coef, D, Gh, Gw]``.

    Initialised small, so that at the start the network's output is close to the bicubic image.
    """

    def __init__(self, width: int, n_coef: int, luma_bins: int) -> None:
        super().__init__()
        self.n_coef, self.luma_bins = n_coef, luma_bins
        self.conv = nn.Conv2d(width, n_coef * luma_bins, 1)
        nn.init.normal_(self.conv.weight, std=1e-3)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, gh, gw = x.shape
        return self.conv(x).view(b, self.n_coef, self.luma_bins, gh, gw)


class PointwiseGuide(nn.Sequential):
    """The guidance map: a pointwise MLP (1x1 convs ``0``, ``2`` with a ReLU, then a sigmoid) at full
    resolution, ``[B, hr_feat, H, W] -> [B, 1, H, W]`` in [0, 1].

    Same layers and parameters as ``nn.Sequential(Conv2d, ReLU, Conv2d, Sigmoid)`` (checkpoints are
    interchangeable). Without autograd it is evaluated as matrix products over the flattened pixels: a
    1x1 conv with 8 or 16 channels on a full-resolution image is memory-bound, and oneDNN's convolution
    took 130 ms + 86 ms at 1920x1080 on 2 threads where ``addmm`` takes about 45 ms + 15 ms."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and (x.requires_grad or self[0].weight.requires_grad):
            return super().forward(x)  # training: the convolutions' backward is the faster one here
        b, c, h, w = x.shape
        flat = x.reshape(c, h * w) if b == 1 else x.transpose(0, 1).reshape(c, b * h * w)  # [C, pixels]
        for layer in self:
            if isinstance(layer, nn.Conv2d):
                flat = torch.addmm(layer.bias[:, None], layer.weight.flatten(1), flat)
            else:
                flat = layer(flat)
        out = flat.view(-1, b, h, w)
        return out.transpose(0, 1) if b > 1 else out.view(1, -1, h, w)


def _hooked(module: nn.Module) -> bool:
    """Whether a forward hook (of this module, a child, or a global one) would see the module run."""
    if nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in module.modules())


class BilateralGridSR(nn.Module):
    """Bilateral-grid super-resolution network (see the module docstring for the layout).

    Args:
        num_in_ch: image channels in (the affine output has ``num_out_ch``; both usually 3).
        num_out_ch: image channels out.
        upscale: 2, 3 or 4.
        num_feat: trunk width ``F`` at LR resolution.
        num_block: residual blocks in the trunk, split evenly over ``trunk.0`` and ``trunk.1``.
        hr_feat: feature channels at HR resolution that the sliced affine maps act on (HDRNet's affine
            input width ``n_in``; the old option name ``n_in`` is still accepted).
        luma_bins: guide bins ``D`` of the grid.
        n_splat: stride-2 splat convs; one grid cell covers ``2**n_splat`` LR pixels.
        coeff_feat: width of the coefficient network.
        n_global: stride-2 convs of the global path before pooling.
        guide_feat: hidden width of the pointwise guide MLP.
        deform_per_stage: how many blocks at the end of each trunk stage start with a modulated
            deformable conv (DCNv2) instead of a plain conv.
        deform_local: whether the first conv of the coefficient network's local path is deformable.

    Shapes: ``[B, num_in_ch, h, w] -> [B, num_out_ch, upscale*h, upscale*w]`` for any ``h, w >= 1``.
    """

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, upscale: int = 4, num_feat: int = 64,
                 num_block: int = 8, hr_feat: int = 8, luma_bins: int = 8, n_splat: int = 2, coeff_feat: int = 64,
                 n_global: int = 2, guide_feat: int = 16, deform_per_stage: int = 0,
                 deform_local: bool = False, n_in: int | None = None) -> None:
        super().__init__()
        name = type(self).__name__
        if n_in is not None:  # the option's earlier name
            hr_feat = n_in
        if upscale not in (2, 3, 4):
            raise ValueError(f'{name}: upscale must be 2, 3 or 4, got {upscale!r}')
        for key, value, low in (('num_in_ch', num_in_ch, 1), ('num_out_ch', num_out_ch, 1), ('num_feat', num_feat, 1),
                                ('num_block', num_block, 2), ('hr_feat', hr_feat, 1), ('luma_bins', luma_bins, 1),
                                ('n_splat', n_splat, 0), ('coeff_feat', coeff_feat, 1), ('n_global', n_global, 0),
                                ('guide_feat', guide_feat, 1), ('deform_per_stage', deform_per_stage, 0)):
            if not isinstance(value, int) or value < low:
                raise ValueError(f'{name}: {key} must be an integer >= {low}, got {value!r}')
        if num_block % 2:
            raise ValueError(f'{name}: num_block must be even (it is split over trunk.0 and trunk.1), got {num_block}')
        if deform_per_stage > num_block // 2:
            raise ValueError(f'{name}: deform_per_stage ({deform_per_stage}) cannot exceed the blocks per trunk stage '
                             f'(num_block / 2 = {num_block // 2})')
        if num_out_ch != num_in_ch:
            raise ValueError(f'{name}: num_out_ch ({num_out_ch}) must equal num_in_ch ({num_in_ch}) because the '
                             'output adds a residual bicubic upscaling of the input')
        self.num_in_ch, self.upscale = num_in_ch, upscale
        self.head = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        half = num_block // 2
        kinds = [plain_conv] * (half - deform_per_stage) + [ModulatedDeformConv2d] * deform_per_stage
        self.trunk = nn.Sequential(*(nn.Sequential(*(ResidualBlock(num_feat, kind) for kind in kinds))
                                     for _ in range(2)))
        self.trunk_tail = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.upsample = nn.Sequential(nn.Conv2d(num_feat, hr_feat * upscale * upscale, 3, 1, 1),
                                      nn.PixelShuffle(upscale))
        self.coeffs = CoefficientNet(num_feat, coeff_feat, num_out_ch * (hr_feat + 1), luma_bins, n_splat, n_global,
                                     ModulatedDeformConv2d if deform_local else plain_conv)
        self.guide = PointwiseGuide(nn.Conv2d(hr_feat, guide_feat, 1), nn.ReLU(inplace=True),
                                    nn.Conv2d(guide_feat, 1, 1), nn.Sigmoid())

    def _fused_full_resolution(self, grid: torch.Tensor, feat: torch.Tensor, x: torch.Tensor) -> torch.Tensor | None:
        """The full-resolution part (pixel shuffle, guide, slice, apply, bicubic base) in the fused CPU kernel's one
        pass (:mod:`kd_plugin.archs.fused_slice`), where it applies: CPU float32 inference with no hook on
        ``upsample`` or ``guide`` (feature capture and the teacher's tail need those modules to run); else None.
        Inference means that nothing the kernel replaces needs a gradient: not the grid, the features or the
        image, and no parameter of ``upsample`` or ``guide`` (fine-tuning the full-resolution path alone)."""
        training = needs_grad(grid, feat, x, modules=(self.upsample, self.guide))
        kernel = fused_kernel_for(grid, training)
        if kernel is None or x.dtype != torch.float32 or _hooked(self.upsample) or _hooked(self.guide):
            return None
        first, second = self.guide[0], self.guide[2]
        return kernel.bilateral_output(grid, self.upsample[0](feat), x, first.weight.flatten(1), first.bias,
                                       second.weight.flatten(), second.bias, self.upscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.num_in_ch:
            raise ValueError(f'{type(self).__name__} expects input [B, {self.num_in_ch}, h, w] (num_in_ch: '
                             f'{self.num_in_ch}), got {list(x.shape)}')
        feat = self.head(x)
        feat = feat + self.trunk_tail(self.trunk(feat))
        grid = self.coeffs(feat)
        fused = self._fused_full_resolution(grid, feat, x)
        if fused is not None:
            return fused
        hr_feat = self.upsample(feat)
        base = F.interpolate(x, size=hr_feat.shape[-2:], mode='bicubic', align_corners=False)
        return base + slice_and_apply(grid, self.guide(hr_feat), hr_feat).to(base.dtype)
