"""``FeatureMatchingLoss``: ``L_feat = sum_k w_k * crit(A_k(F_S^{m_k}), F_T^{l_k})``."""
import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from kd_plugin.losses.criteria import FEATURE_CRITERIA, get_criterion, needs_same_channels, standardise_by_teacher
from kd_plugin.option_keys import check_keys, require_keys


@LOSS_REGISTRY.register()
class FeatureMatchingLoss(nn.Module):
    """Feature matching over configured (student layer, teacher layer) pairs.

    Args:
        loss_weight: ``w_feat``.
        pairs: list of ``{student: <dotted name>, teacher: <dotted name>, weight: w_k (default 1)}``.
        criterion: ``l2`` (FitNet, default), ``l1``, ``fakd`` (spatial affinity) or ``at`` (attention).
        resize: resize the student feature to the teacher's spatial size when they differ.
        normalize: ``teacher`` (default for ``l1``/``l2``): both features standardised by the teacher
            feature's per-channel statistics before comparing, so one ``loss_weight`` fits any arch's
            feature scale; ``none``: raw features. ``fakd`` and ``at`` compare scale-free maps (cosine
            affinities, normalised attention) and take only ``none``. FAKD pools features to at most
            4096 positions first (:func:`~kd_plugin.losses.criteria.pooled_for_affinity`).

    This module only compares: ``forward`` takes the student features already adapted to the
    teacher's shapes (:mod:`kd_plugin.distill.adapters`; element-wise criteria get a 1x1-conv adapter
    where channel counts differ, FAKD and AT compare channel-free maps and only need equal sizes).
    """

    def __init__(self, pairs: list[dict], loss_weight: float = 1.0, criterion: str = 'l2', resize: bool = True,
                 normalize: str | None = None) -> None:
        super().__init__()
        if not pairs:
            raise ValueError('train.feature_opt.pairs: give at least one {student: ..., teacher: ...} layer pair')
        for i, pair in enumerate(pairs):
            check_keys(pair, ('student', 'teacher', 'weight'), f'train.feature_opt.pairs[{i}]')
            require_keys(pair, ('student', 'teacher'), f'train.feature_opt.pairs[{i}]',
                         '{student: body.3, teacher: body.15, weight: 1.0}')
        self.pairs = [dict(p) for p in pairs]
        self.loss_weight = loss_weight
        self.criterion = criterion
        self.resize = resize
        self.fn = get_criterion(criterion, FEATURE_CRITERIA, 'train.feature_opt.criterion')
        elementwise = needs_same_channels(criterion)
        self.normalize = normalize or ('teacher' if elementwise else 'none')
        if self.normalize not in ('teacher', 'none'):
            raise ValueError(f'train.feature_opt.normalize: {normalize!r}; choose teacher or none')
        if self.normalize == 'teacher' and not elementwise:
            raise ValueError(f'train.feature_opt.normalize: teacher does not apply to criterion {criterion}, which '
                             'compares scale-free maps already. Fix: normalize: none (or leave it out)')

    def forward(self, student_feats: list[torch.Tensor], teacher_feats: list[torch.Tensor]) -> torch.Tensor:
        """``loss_weight * sum_k w_k crit(s_k, t_k)`` over the pairs, ``s_k`` already adapted to ``t_k``'s shape."""
        total = 0.0
        for pair, s, t in zip(self.pairs, student_feats, teacher_feats):
            t = t.to(s.dtype)
            if self.normalize == 'teacher':
                s, t = standardise_by_teacher(s, t)
            total = total + pair.get('weight', 1.0) * self.fn(s, t)
        return self.loss_weight * total
