"""``TinySR``: a small residual conv net with a PixelShuffle upsampler, registered as a BasicSR arch."""
import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn
from torch.nn import functional as F


@ARCH_REGISTRY.register()
class TinySR(nn.Module):
    """``[B, 3, h, w]`` in [0, 1] -> ``[B, 3, s*h, s*w]``: bicubic upscaling plus a learned residual.

    Its layers have dotted names (``head``, ``body.0`` ... ``body.{n-1}``, ``tail``) that feature matching can
    hook, like any arch's ``named_modules()``."""

    def __init__(self, upscale: int = 4, num_feat: int = 16, num_block: int = 3) -> None:
        super().__init__()
        self.upscale = upscale
        self.head = nn.Conv2d(3, num_feat, 3, padding=1)
        self.body = nn.Sequential(*(nn.Sequential(nn.Conv2d(num_feat, num_feat, 3, padding=1), nn.ReLU(inplace=True))
                                    for _ in range(num_block)))
        self.tail = nn.Conv2d(num_feat, 3 * upscale * upscale, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = F.interpolate(x, scale_factor=self.upscale, mode='bicubic', align_corners=False)
        feat = self.head(x)
        return base + F.pixel_shuffle(self.tail(self.body(feat) + feat), self.upscale)
