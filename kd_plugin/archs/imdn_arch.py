"""``IMDN``: the information multi-distillation network (Hui et al., ACM MM 2019), a published efficient-SR teacher.

Written from the paper and the key names of the authors' released checkpoints (``fea_conv``, ``IMDB1..6`` with
``c1..c5`` and ``cca.conv_du``, ``c``, ``LR_conv``, ``upsampler``), so their files load as they are (a plain state
dict; the ``module.`` prefix of a DataParallel save is stripped by the loaders). Data flow for an RGB image in
[0, 1], ``[B, 3, h, w] -> [B, 3, s*h, s*w]``::

    f = fea_conv(x)                                   3x3, 64 channels
    b_k = IMDB_k(b_{k-1}), b_0 = f                    six information multi-distillation blocks
    out = upsampler(LR_conv(c(cat(b_1..b_6))) + f)    1x1 fusion + LeakyReLU, 3x3, then conv + PixelShuffle(s)

The authors' weights: https://github.com/Zheng222/IMDN (``checkpoints/IMDN_x{2,3,4}.pth``; no licence stated, so
kd_plugin ships none of them: docs/published-teachers.md).
"""
import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

#: LeakyReLU slope of IMDN and RLFN.
NEG_SLOPE = 0.05


def conv(in_ch: int, out_ch: int, kernel: int) -> nn.Conv2d:
    """A stride-1 convolution that keeps the spatial size."""
    return nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2)


class ContrastChannelAttention(nn.Module):
    """IMDN's contrast-aware channel attention: ``x * sigmoid(MLP(std(x) + mean(x)))``, the standard deviation and
    mean taken per channel over the spatial positions (population variance), the MLP two 1x1 convs with a ReLU and a
    ``reduction``-fold bottleneck (``conv_du``). ``[B, C, H, W] -> [B, C, H, W]``."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.conv_du = nn.Sequential(nn.Conv2d(channels, channels // reduction, 1), nn.ReLU(inplace=True),
                                     nn.Conv2d(channels // reduction, channels, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = (x - mean).pow(2).mean(dim=(2, 3), keepdim=True).sqrt()
        return x * self.conv_du(std + mean)


class IMDBlock(nn.Module):
    """One information multi-distillation block: three 3x3 convs, each of whose outputs is split into a quarter
    kept ("distilled") and three quarters refined by the next conv; a fourth conv distils the last remainder; the four
    distilled parts are concatenated, weighted by contrast-aware attention, fused by a 1x1 conv and added to the
    input. ``[B, C, H, W] -> [B, C, H, W]``."""

    def __init__(self, channels: int = 64, distillation_rate: float = 0.25) -> None:
        super().__init__()
        self.distilled = int(channels * distillation_rate)
        self.remaining = channels - self.distilled
        self.c1 = conv(channels, channels, 3)
        self.c2 = conv(self.remaining, channels, 3)
        self.c3 = conv(self.remaining, channels, 3)
        self.c4 = conv(self.remaining, self.distilled, 3)
        self.c5 = conv(self.distilled * 4, channels, 1)
        self.cca = ContrastChannelAttention(self.distilled * 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept = []
        out = x
        for layer in (self.c1, self.c2, self.c3):
            distilled, out = torch.split(F.leaky_relu(layer(out), NEG_SLOPE), (self.distilled, self.remaining), dim=1)
            kept.append(distilled)
        kept.append(self.c4(out))
        return self.c5(self.cca(torch.cat(kept, dim=1))) + x


@ARCH_REGISTRY.register()
class IMDN(nn.Module):
    """IMDN (see the module docstring). Defaults: the published model (64 channels, 6 blocks; 715 k parameters at
    x4). Hookable layers for feature matching: ``fea_conv``, ``IMDB1`` ... ``IMDB6``, ``c``, ``LR_conv``,
    ``upsampler``."""

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_modules: int = 6,
                 upscale: int = 4) -> None:
        super().__init__()
        for key, value in (('num_feat', num_feat), ('num_modules', num_modules), ('upscale', upscale)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f'IMDN: {key} must be a positive integer, got {value!r}')
        if num_feat % 4:
            raise ValueError(f'IMDN: num_feat must be a multiple of 4 (each block distils a quarter), got {num_feat}')
        self.upscale, self.num_modules = upscale, num_modules
        self.fea_conv = conv(num_in_ch, num_feat, 3)
        for i in range(1, num_modules + 1):
            setattr(self, f'IMDB{i}', IMDBlock(num_feat))
        self.c = nn.Sequential(conv(num_feat * num_modules, num_feat, 1), nn.LeakyReLU(NEG_SLOPE, inplace=True))
        self.LR_conv = conv(num_feat, num_feat, 3)
        self.upsampler = nn.Sequential(conv(num_feat, num_out_ch * upscale * upscale, 3), nn.PixelShuffle(upscale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.fea_conv(x)
        outs, out = [], feat
        for i in range(1, self.num_modules + 1):
            out = getattr(self, f'IMDB{i}')(out)
            outs.append(out)
        return self.upsampler(self.LR_conv(self.c(torch.cat(outs, dim=1))) + feat)
