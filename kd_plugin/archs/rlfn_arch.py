"""``RLFN``: the residual local feature network (Kong et al., CVPRW 2022), the NTIRE 2024 Efficient SR baseline.

Written from the paper and the key names of the released checkpoint (``conv_1``, ``block_1..4`` with
``c1_r``/``c2_r``/``c3_r``, ``c5`` and ``esa``, ``conv_2``, ``upsampler``), so the file loads as it is. The challenge's
baseline is a pruned variant: 46 feature channels, 48 inside each block and 4 blocks (317 k parameters at x4; the
paper's RLFN has 6). Data flow for an RGB image ``x`` in [0, 1], ``[B, 3, h, w] -> [B, 3, s*h, s*w]``::

    f = conv_1(img_range * x)                      3x3
    b = block_n(... block_1(f))                    residual local feature blocks
    out = upsampler(conv_2(b) + f) / img_range     3x3, then conv + PixelShuffle(s)

The released baseline computes on pixel values in [0, 255] (``img_range: 255``, the default): fed [0, 1] it scores
25.46 dB on Set5 x4, under bicubic, against 32.10 in [0, 255] (measured here, 2026-12-07).

The released weights: https://github.com/sunny2109/SAFMN (``NTIRE2024_ESR/model_zoo/team00_rlfn.pth``; no licence
stated, so kd_plugin ships none: docs/published-teachers.md).
"""
import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from kd_plugin.archs.imdn_arch import NEG_SLOPE, conv


class EnhancedSpatialAttention(nn.Module):
    """RLFN's enhanced spatial attention: a 1x1 reduction to ``esa_ch`` channels, a stride-2 3x3 conv, a 7x7 max
    pool of stride 3 and a 3x3 conv give a coarse map, resized bilinearly back to the input and added to a 1x1
    projection (``conv_f``) of the reduction; a 1x1 conv and a sigmoid make the mask the input is multiplied by.
    ``[B, C, H, W] -> [B, C, H, W]``; needs ``H, W >= 15`` (the pool's window)."""

    def __init__(self, esa_ch: int, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, esa_ch, 1)
        self.conv_f = nn.Conv2d(esa_ch, esa_ch, 1)
        self.conv2 = nn.Conv2d(esa_ch, esa_ch, 3, stride=2)
        self.conv3 = conv(esa_ch, esa_ch, 3)
        self.conv4 = nn.Conv2d(esa_ch, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.conv1(x)
        coarse = self.conv3(F.max_pool2d(self.conv2(reduced), kernel_size=7, stride=3))
        coarse = F.interpolate(coarse, size=x.shape[-2:], mode='bilinear', align_corners=False)
        return x * torch.sigmoid(self.conv4(coarse + self.conv_f(reduced)))


class LocalFeatureBlock(nn.Module):
    """A residual local feature block: three 3x3 convs with LeakyReLU and a residual connection, then a 1x1 conv
    and enhanced spatial attention. ``[B, C, H, W] -> [B, C, H, W]``."""

    def __init__(self, channels: int, mid_ch: int, esa_ch: int = 16) -> None:
        super().__init__()
        self.c1_r = conv(channels, mid_ch, 3)
        self.c2_r = conv(mid_ch, mid_ch, 3)
        self.c3_r = conv(mid_ch, channels, 3)
        self.c5 = nn.Conv2d(channels, channels, 1)
        self.esa = EnhancedSpatialAttention(esa_ch, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in (self.c1_r, self.c2_r, self.c3_r):
            out = F.leaky_relu(layer(out), NEG_SLOPE)
        return self.esa(self.c5(out + x))


@ARCH_REGISTRY.register()
class RLFN(nn.Module):
    """RLFN (see the module docstring). Defaults: the NTIRE 2024 baseline (46 feature and 48 block channels, 4
    blocks). The paper's RLFN-S is ``num_feat: 48, mid_feat: 48, num_block: 6``, RLFN ``num_feat: 52, mid_feat: 52,
    num_block: 6``. Hookable layers for feature matching: ``conv_1``, ``block_1`` ... ``block_<num_block>``,
    ``conv_2``, ``upsampler``. Input sides must be at least 15 LR pixels (the attention's pooling window).
    ``img_range``: the pixel range the weights compute in (255 for the released baseline; 1 for weights trained on
    [0, 1] images); inputs and outputs of the module are always in [0, 1]."""

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 46, mid_feat: int = 48,
                 num_block: int = 4, esa_feat: int = 16, upscale: int = 4, img_range: float = 255.0) -> None:
        super().__init__()
        for key, value in (('num_feat', num_feat), ('mid_feat', mid_feat), ('num_block', num_block),
                           ('esa_feat', esa_feat), ('upscale', upscale)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f'RLFN: {key} must be a positive integer, got {value!r}')
        if isinstance(img_range, bool) or not isinstance(img_range, (int, float)) or img_range <= 0:
            raise ValueError(f'RLFN: img_range must be a positive number (255 or 1), got {img_range!r}')
        self.upscale, self.num_block, self.img_range = upscale, num_block, float(img_range)
        self.conv_1 = conv(num_in_ch, num_feat, 3)
        for i in range(1, num_block + 1):
            setattr(self, f'block_{i}', LocalFeatureBlock(num_feat, mid_feat, esa_feat))
        self.conv_2 = conv(num_feat, num_feat, 3)
        self.upsampler = nn.Sequential(conv(num_feat, num_out_ch * upscale * upscale, 3), nn.PixelShuffle(upscale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < 15:
            raise ValueError(f'RLFN needs inputs of at least 15x15 LR pixels (its spatial attention pools 7x7 windows '
                             f'of a half-size map), got {list(x.shape[-2:])}')
        feat = self.conv_1(x * self.img_range)
        out = feat
        for i in range(1, self.num_block + 1):
            out = getattr(self, f'block_{i}')(out)
        return self.upsampler(self.conv_2(out) + feat) / self.img_range
