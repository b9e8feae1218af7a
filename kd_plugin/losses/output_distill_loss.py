"""``OutputDistillLoss``: ``L_dist = crit(S(x), T(x))`` on the SR outputs, optionally weighted per pixel."""
import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from kd_plugin.losses.criteria import OUTPUT_CRITERIA, get_criterion, pointwise

WEIGHTINGS = ('none', 'teacher_better')


def teacher_better_weights(student_out: torch.Tensor, teacher_out: torch.Tensor, gt: torch.Tensor,
                           eps: float = 1e-3) -> torch.Tensor:
    """Per-pixel weights in [0, 1): ``w = max(e_S - e_T, 0) / (e_S + eps)`` with ``e = |out - gt|``
    (averaged over channels, no gradient). 0 where the teacher is no closer to the ground truth than
    the student; near 1 where the teacher is right and the student is not. Shape ``[B, 1, H, W]``."""
    with torch.no_grad():
        e_s = (student_out - gt).abs().mean(dim=1, keepdim=True)
        e_t = (teacher_out - gt).abs().mean(dim=1, keepdim=True)
        return (e_s - e_t).clamp(min=0) / (e_s + eps)


@LOSS_REGISTRY.register()
class OutputDistillLoss(nn.Module):
    """Output-level distillation: the student's SR image against the frozen teacher's.

    Args:
        loss_weight: ``w_dist``.
        criterion: ``l1`` (default), ``l2``, ``charbonnier`` or ``relative`` (``|S - T| / (|T| + eps)``).
        weighting: ``none`` (default): ``mean crit(S, T)``; ``teacher_better``: an adaptive per-pixel
            weight that follows training, ``mean w * crit(S, T)`` with :func:`teacher_better_weights`
            (distil where the teacher is right and the student is not; the weights fall as the student
            catches up). Needs the ground truth ``gt``.
    """

    def __init__(self, loss_weight: float = 1.0, criterion: str = 'l1', weighting: str = 'none') -> None:
        super().__init__()
        self.loss_weight = loss_weight
        self.criterion = criterion
        self.fn = get_criterion(criterion, OUTPUT_CRITERIA, 'train.distill_opt.criterion')
        if weighting not in WEIGHTINGS:
            raise ValueError(f'train.distill_opt.weighting: {weighting!r}; choose one of {", ".join(WEIGHTINGS)}')
        self.weighting = weighting

    @property
    def needs_gt(self) -> bool:
        return self.weighting != 'none'

    def forward(self, student_out: torch.Tensor, teacher_out: torch.Tensor,
                gt: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, C, H, W]`` outputs (and ``gt`` of the same shape for a weighting that needs it) -> scalar."""
        teacher_out = teacher_out.to(student_out.dtype)
        if self.weighting == 'none':
            return self.loss_weight * self.fn(student_out, teacher_out)
        if gt is None:
            raise ValueError(f'train.distill_opt.weighting: {self.weighting} needs the ground truth')
        weights = teacher_better_weights(student_out, teacher_out, gt)
        return self.loss_weight * (weights * pointwise(self.criterion, student_out, teacher_out)).mean()
