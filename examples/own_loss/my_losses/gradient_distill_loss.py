"""``GradientDistillLoss``: distillation of the teacher's edges, an output-distillation loss of one's own."""
import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn


def image_gradients(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal and vertical finite differences of ``[B, C, H, W]``: ``[B, C, H, W-1]`` and ``[B, C, H-1, W]``."""
    return img[..., :, 1:] - img[..., :, :-1], img[..., 1:, :] - img[..., :-1, :]


@LOSS_REGISTRY.register()
class GradientDistillLoss(nn.Module):
    """``w * (mean |dx S - dx T| + mean |dy S - dy T|) + w_img * mean |S - T|``: the student's image gradients
    against the teacher's, plus (optionally) the images themselves.

    The contract ``KDModel`` calls under ``train.distill_opt`` (any registered loss may stand there):

    * ``forward(student_out, teacher_out, gt)``: the student's SR output ``[B, C, sH, sW]`` (with autograd),
      the teacher's ``[B, C, sH, sW]`` (its live output or the cached label; no gradient) and the ground truth
      of the same shape, or ``None`` unless ``needs_gt`` is true; returns a scalar, already weighted;
    * ``needs_gt``: whether ``forward`` needs ``gt`` (``KDModel`` passes ``None`` otherwise);
    * the constructor takes the section's keys (besides ``type``) as keyword arguments; a key it does not
      take is refused before training with the keys it does take.
    """

    def __init__(self, loss_weight: float = 1.0, image_weight: float = 0.0) -> None:
        super().__init__()
        self.loss_weight, self.image_weight = loss_weight, image_weight

    @property
    def needs_gt(self) -> bool:
        return False

    def forward(self, student_out: torch.Tensor, teacher_out: torch.Tensor,
                gt: torch.Tensor | None = None) -> torch.Tensor:
        teacher_out = teacher_out.to(student_out.dtype)
        loss = sum((s - t).abs().mean() for s, t in zip(image_gradients(student_out), image_gradients(teacher_out)))
        if self.image_weight:
            loss = loss + self.image_weight * (student_out - teacher_out).abs().mean()
        return self.loss_weight * loss
