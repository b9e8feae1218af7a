"""Adapt: trainable maps from a student feature to the teacher feature's shape, and their one owner."""
import torch
import torch.nn.functional as F
from torch import nn


class Adapter(nn.Module):
    """``A(f)``: 1x1 conv when channel counts differ (identity when they agree), then, when the
    spatial sizes differ and ``resize`` is on, bilinear resizing to the teacher's size. With
    ``match_channels=False`` (criteria that compare channel-free maps) only the size is matched.

    Shapes: ``[B, Cs, Hs, Ws] -> [B, Ct, Ht, Wt]``; 5-D features (e.g. bilateral grids) pass only
    when student and teacher shapes already agree.
    """

    def __init__(self, student_shape: torch.Size, teacher_shape: torch.Size, option: str, resize: bool = True,
                 match_channels: bool = True) -> None:
        super().__init__()
        s, t = tuple(student_shape[1:]), tuple(teacher_shape[1:])
        self.option, self.resize = option, resize
        self.conv = None
        if s == t or (not match_channels and len(s) == len(t) == 3 and s[1:] == t[1:]):
            return
        if len(s) != 3 or len(t) != 3:
            raise ValueError(f'{option}: student feature {list(student_shape)} and teacher feature '
                             f'{list(teacher_shape)} differ and are not both [B, C, H, W] maps; pick layers whose '
                             'outputs have the same shape, or 4-D feature maps an adapter can map')
        if s[1:] != t[1:] and not resize:
            raise ValueError(f'{option}: spatial sizes differ (student {s[1]}x{s[2]}, teacher {t[1]}x{t[2]}) and '
                             'resize is off; set `resize: true` or pick layers at the same resolution')
        if match_channels and s[0] != t[0]:
            self.conv = nn.Conv2d(s[0], t[0], 1)

    def forward(self, feat: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Map ``feat``; ``size`` is the teacher feature's ``(H, W)`` in this step (sizes follow the input)."""
        if self.conv is not None:
            feat = self.conv(feat.to(self.conv.weight.dtype))
        if size is not None and feat.dim() == 4 and tuple(feat.shape[-2:]) != tuple(size):
            if not self.resize:
                raise ValueError(f'{self.option}: student feature is {tuple(feat.shape[-2:])}, teacher {tuple(size)}, '
                                 'and resize is off')
            feat = F.interpolate(feat, size=tuple(size), mode='bilinear', align_corners=False)
        return feat


def build_adapters(feature_pairs: list[tuple[str, torch.Size, torch.Size]], feature_channels: bool, resize: bool,
                   forward_pair: tuple[str, torch.Size, torch.Size] | None, forward_resize: bool) -> nn.ModuleDict:
    """All adapters of a KD run, in the layout of its ``net_adapters_<iter>.pth`` checkpoints:
    ``features`` (one :class:`Adapter` per feature pair, in order) and ``forward_adaptation``.

    ``feature_pairs``: ``(option, student shape, teacher shape)`` per pair; ``feature_channels``: whether
    the feature criterion compares channel by channel (so the adapter maps channels). ``forward_pair``:
    the same for the forward-adaptation layers, or None (an ``nn.Identity`` stands in)."""
    features = nn.ModuleList()
    for option, s, t in feature_pairs:
        if not feature_channels and (len(s) != 4 or len(t) != 4):
            raise ValueError(f'{option}: this criterion compares [B, C, H, W] features, got {list(s)} and {list(t)}')
        features.append(Adapter(s, t, option, resize, match_channels=feature_channels))
    forward = nn.Identity() if forward_pair is None else Adapter(forward_pair[1], forward_pair[2], forward_pair[0],
                                                                 forward_resize)
    return nn.ModuleDict({'features': features, 'forward_adaptation': forward})
