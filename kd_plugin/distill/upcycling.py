"""Data upcycling (DUKD, Zhang et al., ECCV 2024): extra teacher-labelled inputs made from the batch.

Three parts, each optional and each applied to the whole batch with its own probability per
iteration (``train.upcycle``); all of them add terms to the step's one loss, so the step keeps a
single optimizer update and equal-iteration comparisons stay fair:

* ``zoom_in``: an LR-sized tile of each HR patch becomes a student input, labelled by the teacher's
  output on it: ``w * crit(S(t), T(t))``;
* ``zoom_out``: each LR patch downscaled by ``1/s`` with MATLAB's bicubic (the degradation the data
  were made with, bit-exact on 8-bit data) becomes a student input, labelled by the teacher's output
  on it and, with ``gt_weight``, by the LR patch itself: ``w * crit(S(z), T(z)) + w_gt * crit(S(z), x)``;
* ``consistency``: an invertible augmentation ``a`` (flips, transpose, colour inversion) of the LR
  patch goes through the student and is undone on its output, which must match the teacher's output
  on the original patch: ``w * crit(a^-1(S(a(x))), T(x))`` (no extra teacher call).

The random decisions of an iteration come from a generator seeded by ``(manual_seed, iteration)``:
every DDP rank takes the same ones (the logged loss keys must agree across ranks) and a resumed run
repeats them.
"""
import random
from dataclasses import dataclass, field
from typing import Any

import torch

from kd_plugin.data.matlab_bicubic import downscale_tensor
from kd_plugin.losses.criteria import OUTPUT_CRITERIA
from kd_plugin.option_keys import check_keys

AUGMENTATIONS = ('hflip', 'vflip', 'transpose', 'invert')
PART_KEYS = {
    'zoom_in': ('prob', 'weight'),
    'zoom_out': ('prob', 'weight', 'gt_weight'),
    'consistency': ('prob', 'weight', 'augmentations'),
}
LOSS_NAMES = {'zoom_in': 'l_up_in', 'zoom_out': 'l_up_out', 'consistency': 'l_up_cons'}


@dataclass
class Part:
    prob: float = 1.0
    weight: float = 1.0
    gt_weight: float = 0.0
    augmentations: tuple[str, ...] = AUGMENTATIONS


@dataclass
class UpcycleConfig:
    """The parsed ``train.upcycle`` section."""
    parts: dict[str, Part] = field(default_factory=dict)
    criterion: str = 'l1'


def parse_upcycle(section: dict[str, Any] | None, scale: int, lq_side: int | None) -> UpcycleConfig | None:
    """``train.upcycle`` checked and parsed (None when absent). ``lq_side``: the LR training patch side
    (``gt_size / scale``), when known. Raises ``ValueError`` naming the key and the fix."""
    if not section:
        return None
    if not isinstance(section, dict):
        raise ValueError('train.upcycle: expected a mapping such as {zoom_in: {prob: 0.5, weight: 1.0}}')
    check_keys(section, (*PART_KEYS, 'criterion'), 'train.upcycle')
    config = UpcycleConfig(criterion=section.get('criterion', 'l1'))
    if config.criterion not in OUTPUT_CRITERIA:
        raise ValueError(f'train.upcycle.criterion: {config.criterion!r}; choose one of {", ".join(OUTPUT_CRITERIA)}')
    for name, keys in PART_KEYS.items():
        options = section.get(name)
        if options is None:
            continue
        if not isinstance(options, dict):
            raise ValueError(f'train.upcycle.{name}: expected a mapping such as {{prob: 0.5, weight: 1.0}}')
        check_keys(options, keys, f'train.upcycle.{name}')
        part = Part(**{k: v for k, v in options.items() if k != 'augmentations'})
        if not isinstance(part.prob, (int, float)) or not 0 <= part.prob <= 1:
            raise ValueError(f'train.upcycle.{name}.prob: {part.prob!r} is not a probability. Fix: a number in '
                             '[0, 1]')
        for key in ('weight', 'gt_weight'):
            if not isinstance(getattr(part, key), (int, float)) or getattr(part, key) < 0:
                raise ValueError(f'train.upcycle.{name}.{key}: {getattr(part, key)!r}. Fix: a number >= 0')
        if 'augmentations' in options:
            augs = options['augmentations']
            bad = [a for a in augs or [] if a not in AUGMENTATIONS]
            if not augs or bad:
                raise ValueError(f'train.upcycle.{name}.augmentations: {augs!r}. Fix: a non-empty list of '
                                 f'{", ".join(AUGMENTATIONS)}')
            part.augmentations = tuple(augs)
        if name == 'zoom_out' and lq_side is not None and lq_side % scale:
            raise ValueError(f'train.upcycle.zoom_out: the LR training patches are {lq_side} px, not divisible by '
                             f'scale {scale}, so they cannot be downscaled by 1/{scale}. Fix: a gt_size that is a '
                             f'multiple of {scale * scale}, or drop zoom_out')
        config.parts[name] = part
    return config


def iteration_rng(seed: int | None, iteration: int) -> random.Random:
    """The generator of one iteration's upcycling decisions (identical on every rank, and on resume)."""
    return random.Random(f'{seed}:{iteration}')


def zoom_in_tiles(gt: torch.Tensor, size: tuple[int, int], rng: random.Random) -> torch.Tensor:
    """One ``size`` tile of each HR patch ``gt`` ``[B, C, sH, sW]`` at a random position: ``[B, C, *size]``."""
    h, w = size
    tiles = []
    for patch in gt:
        top, left = rng.randint(0, patch.shape[-2] - h), rng.randint(0, patch.shape[-1] - w)
        tiles.append(patch[:, top:top + h, left:left + w])
    return torch.stack(tiles)


def zoom_out(lq: torch.Tensor, scale: int) -> torch.Tensor:
    """``lq`` ``[B, C, H, W]`` (values k/255) downscaled by ``1/scale`` with MATLAB's bicubic:
    ``[B, C, H/scale, W/scale]``."""
    return downscale_tensor(lq, scale)


def augment(x: torch.Tensor, name: str) -> torch.Tensor:
    """An invertible augmentation of ``[B, C, H, W]`` images in [0, 1]."""
    if name == 'hflip':
        return x.flip(-1)
    if name == 'vflip':
        return x.flip(-2)
    if name == 'transpose':
        return x.transpose(-2, -1)
    if name == 'invert':
        return 1.0 - x
    raise ValueError(f'unknown augmentation {name!r}')


def undo(y: torch.Tensor, name: str) -> torch.Tensor:
    """The inverse of :func:`augment` (each of them is its own inverse)."""
    return augment(y, name)
