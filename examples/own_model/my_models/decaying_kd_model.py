"""``DecayingKDModel``: KDModel whose distillation weight falls linearly over training (a loss schedule)."""
from typing import Any

from basicsr.utils import get_root_logger
from basicsr.utils.registry import MODEL_REGISTRY

from kd_plugin.models.kd_model import KDModel


def decay_factor(current_iter: int, total_iter: int, end_ratio: float) -> float:
    """``1`` at iteration 0, falling linearly to ``0`` at ``end_ratio * total_iter`` and staying there."""
    end = max(end_ratio * total_iter, 1)
    return max(1.0 - current_iter / end, 0.0)


@MODEL_REGISTRY.register()
class DecayingKDModel(KDModel):
    """``KDModel`` with ``train.distill_decay: {end_ratio: r}``: the output-distillation weight is
    ``w_dist * max(1 - iter / (r * total_iter), 0)``, so the student learns from the teacher early and from the
    ground truth alone at the end.

    Being a registered subclass, it keeps every ``KDModel`` pre-run check (layer names, scales, the teacher's
    checkpoint) and reads cached labels. ``extra_train_keys`` declares its own key under ``train:``, which the
    pre-run check of option keys then accepts (a typo in it is still refused, with a suggestion)."""

    extra_train_keys = ('distill_decay',)

    def init_training_settings(self) -> None:
        super().init_training_settings()
        decay: dict[str, Any] = self.opt['train'].get('distill_decay') or {}
        self.decay_end_ratio = float(decay.get('end_ratio', 1.0))
        self.base_distill_weight = self.cri_dist.loss_weight if self.cri_dist else 0.0
        get_root_logger().info(f'Distillation weight {self.base_distill_weight} decays to 0 at '
                               f'{self.decay_end_ratio:.0%} of training')

    def optimize_parameters(self, current_iter: int) -> None:
        if self.cri_dist:
            self.cri_dist.loss_weight = self.base_distill_weight * decay_factor(
                current_iter, self.opt['train']['total_iter'], self.decay_end_ratio)
        super().optimize_parameters(current_iter)
        if self.cri_dist:
            self.log_dict['w_dist'] = self.cri_dist.loss_weight
