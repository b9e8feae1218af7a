"""``OutputDistillLoss``: ``L_dist = crit(S(x), T(x))`` on the SR outputs."""
import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from kd_plugin.losses.criteria import OUTPUT_CRITERIA, get_criterion


@LOSS_REGISTRY.register()
class OutputDistillLoss(nn.Module):
    """Output-level distillation: the student's SR image against the frozen teacher's.

    Args:
        loss_weight: ``w_dist``.
        criterion: ``l1`` (default), ``l2``, ``charbonnier`` or ``relative`` (``|S - T| / (|T| + eps)``).
    """

    def __init__(self, loss_weight: float = 1.0, criterion: str = 'l1') -> None:
        super().__init__()
        self.loss_weight = loss_weight
        self.criterion = criterion
        self.fn = get_criterion(criterion, OUTPUT_CRITERIA, 'train.distill_opt.criterion')

    def forward(self, student_out: torch.Tensor, teacher_out: torch.Tensor) -> torch.Tensor:
        return self.loss_weight * self.fn(student_out, teacher_out.to(student_out.dtype))
