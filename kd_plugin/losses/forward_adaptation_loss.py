"""``ForwardAdaptationLoss``: ``L_fwd = crit(T_{>l}(A(F_S^m)), T(x))``."""
import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from kd_plugin.losses.criteria import OUTPUT_CRITERIA, get_criterion


@LOSS_REGISTRY.register()
class ForwardAdaptationLoss(nn.Module):
    """The student's feature at ``student``, through a trainable adapter, replaces the teacher's
    output at ``teacher``; the frozen teacher finishes its forward pass on it, and the result is
    compared with the teacher's own output. The student learns features the teacher's downstream
    layers can use (the idea of reusing the teacher's head in SimKD, Chen et al. CVPR 2022).

    Args:
        student: dotted name of the student layer ``m``.
        teacher: dotted name of the teacher layer ``l`` whose output is replaced.
        loss_weight: ``w_fwd``.
        criterion: ``l1`` (default), ``l2``, ``charbonnier`` or ``relative``.
        resize: resize the student feature to the teacher's spatial size when they differ.

    This module only compares; ``KDModel`` adapts the feature and runs the teacher's tail
    (:class:`~kd_plugin.distill.substitution.TailRunner`).
    """

    def __init__(self, student: str, teacher: str, loss_weight: float = 1.0, criterion: str = 'l1',
                 resize: bool = True) -> None:
        super().__init__()
        self.student_layer, self.teacher_layer = student, teacher
        self.loss_weight = loss_weight
        self.criterion = criterion
        self.resize = resize
        self.fn = get_criterion(criterion, OUTPUT_CRITERIA, 'train.forward_opt.criterion')

    def forward(self, adapted_teacher_out: torch.Tensor, teacher_out: torch.Tensor) -> torch.Tensor:
        return self.loss_weight * self.fn(adapted_teacher_out, teacher_out.to(adapted_teacher_out.dtype))
