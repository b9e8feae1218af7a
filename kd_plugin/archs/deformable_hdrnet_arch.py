"""``DeformableHDRNet``: the student, a light bilateral-grid SR network with modulated deformable convs."""
from basicsr.utils.registry import ARCH_REGISTRY

from kd_plugin.archs.bilateral_sr import BilateralGridSR


@ARCH_REGISTRY.register()
class DeformableHDRNet(BilateralGridSR):
    """HDRNet's design, much lighter, with DCNv2 in its low-resolution paths.

    The local path of the coefficient network starts with a modulated deformable conv, so the
    grid of affine maps is predicted with an adaptive receptive field; offsets start at zero, so
    the network starts as a plain conv net. ``deform_per_stage: 1`` (or more) also makes the last
    block(s) of each trunk stage deformable: worth it on a GPU, but torchvision's CPU backward of
    ``deform_conv2d`` costs about as much as the whole default student per LR-resolution layer
    (0.26 s vs 0.17 s per 32x16x16 training step on 2 cores), so it is off by default.
    All full-resolution work (upsampling shuffle, guide, slice, apply) stays pointwise. Defaults:
    24-wide trunk of 4 blocks, 24-wide coefficient network, and the teacher's grid layout
    (``hr_feat``, ``luma_bins``, ``n_splat``), so the two grids can be matched without an adapter.
    """

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, upscale: int = 4, num_feat: int = 24,
                 num_block: int = 4, hr_feat: int = 8, luma_bins: int = 8, n_splat: int = 2, coeff_feat: int = 24,
                 n_global: int = 2, guide_feat: int = 16, deform_per_stage: int = 0, deform_local: bool = True,
                 n_in: int | None = None) -> None:
        super().__init__(num_in_ch, num_out_ch, upscale, num_feat, num_block, hr_feat, luma_bins, n_splat, coeff_feat,
                         n_global, guide_feat, deform_per_stage, deform_local, n_in)
