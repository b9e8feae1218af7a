"""``HDRNet``: the teacher, a bilateral-grid SR network (Gharbi et al. 2017, adapted to SR)."""
from basicsr.utils.registry import ARCH_REGISTRY

from kd_plugin.archs.bilateral_sr import BilateralGridSR


@ARCH_REGISTRY.register()
class HDRNet(BilateralGridSR):
    """Teacher defaults: 64-wide trunk of 12 residual blocks, 64-wide coefficient network (~1.3 M params).

    Every argument of :class:`~kd_plugin.archs.bilateral_sr.BilateralGridSR` except the conv
    factories can be set from the options file.
    """

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, upscale: int = 4, num_feat: int = 64,
                 num_block: int = 12, hr_feat: int = 8, luma_bins: int = 8, n_splat: int = 2, coeff_feat: int = 64,
                 n_global: int = 2, guide_feat: int = 16,
                 n_in: int | None = None) -> None:
        super().__init__(num_in_ch, num_out_ch, upscale, num_feat, num_block, hr_feat, luma_bins, n_splat, coeff_feat,
                         n_global, guide_feat, n_in=n_in)
