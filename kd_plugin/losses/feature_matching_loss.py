"""``FeatureMatchingLoss``: ``L_feat = sum_k w_k * crit(A_k(F_S^{m_k}), F_T^{l_k})``."""
import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from kd_plugin.distill.adapters import Adapter
from kd_plugin.losses.criteria import FEATURE_CRITERIA, get_criterion, needs_same_channels


@LOSS_REGISTRY.register()
class FeatureMatchingLoss(nn.Module):
    """Feature matching over configured (student layer, teacher layer) pairs.

    Args:
        loss_weight: ``w_feat``.
        pairs: list of ``{student: <dotted name>, teacher: <dotted name>, weight: w_k (default 1)}``.
        criterion: ``l2`` (FitNet, default), ``l1``, ``fakd`` (spatial affinity) or ``at`` (attention).
        resize: resize the student feature to the teacher's spatial size when they differ.

    The model calls :meth:`build_adapters` once with the probed feature shapes: element-wise
    criteria get a 1x1-conv adapter where channel counts differ (identity where shapes agree);
    FAKD and AT compare channel-free maps and only need equal spatial sizes.
    """

    def __init__(self, pairs: list[dict], loss_weight: float = 1.0, criterion: str = 'l2', resize: bool = True) -> None:
        super().__init__()
        if not pairs:
            raise ValueError('train.feature_opt.pairs: give at least one {student: ..., teacher: ...} layer pair')
        for i, pair in enumerate(pairs):
            unknown = set(pair) - {'student', 'teacher', 'weight'}
            if unknown or not {'student', 'teacher'} <= set(pair):
                raise ValueError(f'train.feature_opt.pairs[{i}]: expected keys student, teacher (and optional '
                                 f'weight), got {sorted(pair)}')
        self.pairs = [dict(p) for p in pairs]
        self.loss_weight = loss_weight
        self.criterion = criterion
        self.resize = resize
        self.fn = get_criterion(criterion, FEATURE_CRITERIA, 'train.feature_opt.criterion')
        self.adapters = nn.ModuleList()

    @property
    def student_layers(self) -> list[str]:
        return [p['student'] for p in self.pairs]

    @property
    def teacher_layers(self) -> list[str]:
        return [p['teacher'] for p in self.pairs]

    def build_adapters(self, student_shapes: list[torch.Size], teacher_shapes: list[torch.Size]) -> None:
        self.adapters = nn.ModuleList()
        for i, (s, t) in enumerate(zip(student_shapes, teacher_shapes)):
            option = f'train.feature_opt.pairs[{i}] ({self.pairs[i]["student"]} -> {self.pairs[i]["teacher"]})'
            if not needs_same_channels(self.criterion) and (len(s) != 4 or len(t) != 4):
                raise ValueError(f'{option}: criterion {self.criterion} needs [B, C, H, W] features, got '
                                 f'{list(s)} and {list(t)}')
            self.adapters.append(Adapter(s, t, option, self.resize, match_channels=needs_same_channels(self.criterion)))

    def forward(self, student_feats: list[torch.Tensor], teacher_feats: list[torch.Tensor]) -> torch.Tensor:
        total = 0.0
        for pair, adapter, s, t in zip(self.pairs, self.adapters, student_feats, teacher_feats):
            s = adapter(s, t.shape[-2:])
            total = total + pair.get('weight', 1.0) * self.fn(s, t.to(s.dtype))
        return self.loss_weight * total
