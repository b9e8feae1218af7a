"""ECO, the empirical-centroid-oriented schedule (Lee et al., AAAI 2024; traiNNer-redux's ``train.eco``).

Early in training the student learns the teacher's output, and its target then moves linearly to the
ground truth: with ``alpha = clamp(iter / (end_ratio * total_iter), 0, 1)``,

* ``mode: hr_only``: the pixel loss's target is ``lerp(T(x), y, alpha) = (1 - alpha) T(x) + alpha y``, the
  input stays ``x``;
* ``mode: full``: in addition the input is ``lerp(down(T(x)), x, alpha)``, ``down`` the MATLAB bicubic
  downscale by ``1/s`` of the 8-bit teacher output. At ``alpha = 0`` the pair ``(down(T(x)), T(x))`` is one
  the student can fit exactly: the "empirical centroid".

At ``alpha >= 1`` the teacher is not needed (``KDModel`` skips it when nothing else reads it). With cached
labels ``T(x)`` is the label crop.
"""
from dataclasses import dataclass
from typing import Any

import torch

from kd_plugin.data.matlab_bicubic import downscale_tensor
from kd_plugin.option_keys import check_keys

MODES = ('hr_only', 'full')


@dataclass(frozen=True)
class EcoConfig:
    """The parsed ``train.eco`` section."""
    end_ratio: float
    mode: str

    def alpha(self, current_iter: int, total_iter: int) -> float:
        """``clamp(current_iter / (end_ratio * total_iter), 0, 1)``."""
        return min(max(current_iter / (self.end_ratio * total_iter), 0.0), 1.0)


def parse_eco(section: dict[str, Any] | None, has_pixel_loss: bool) -> EcoConfig | None:
    """``train.eco`` checked and parsed (None when absent); ``ValueError`` naming the key and the fix."""
    if section is None:
        return None
    if not isinstance(section, dict):
        raise ValueError('train.eco: expected a mapping such as {end_ratio: 0.75, mode: hr_only}')
    check_keys(section, ('end_ratio', 'mode'), 'train.eco')
    end_ratio, mode = section.get('end_ratio', 0.75), section.get('mode', 'hr_only')
    if isinstance(end_ratio, bool) or not isinstance(end_ratio, (int, float)) or not 0 < end_ratio <= 1:
        raise ValueError(f'train.eco.end_ratio: {end_ratio!r}. Fix: the share of training over which the target '
                         'moves from the teacher to the ground truth, a number in (0, 1], e.g. 0.75')
    if mode not in MODES:
        raise ValueError(f'train.eco.mode: {mode!r}. Fix: hr_only (the target moves) or full (the input moves too)')
    if not has_pixel_loss:
        raise ValueError('train.eco: the schedule moves the pixel loss\'s target from the teacher to the ground '
                         'truth, and the run has no train.pixel_opt. Fix: add train.pixel_opt, or remove train.eco')
    return EcoConfig(float(end_ratio), mode)


def eco_target(teacher_out: torch.Tensor, gt: torch.Tensor, alpha: float) -> torch.Tensor:
    """``(1 - alpha) * teacher_out + alpha * gt`` (``[B, C, sH, sW]``, no gradient)."""
    return torch.lerp(teacher_out.detach().to(gt.dtype), gt, alpha)


def eco_input(teacher_out: torch.Tensor, lq: torch.Tensor, scale: int, alpha: float) -> torch.Tensor:
    """``(1 - alpha) * down(T(x)) + alpha * x`` for mode ``full``: ``down`` the MATLAB bicubic ``1/scale`` of the
    teacher output rounded to 8 bits (a cached label is 8-bit already), ``[B, C, H, W]`` like ``lq``."""
    eight_bit = torch.round(teacher_out.detach().float().clamp(0, 1) * 255.0) / 255.0
    return torch.lerp(downscale_tensor(eight_bit, scale).to(lq.dtype), lq, alpha)
