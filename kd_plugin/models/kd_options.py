"""The ``KDModel`` options schema and the teacher settings read from it.

Shared by the model and the pre-run checks (:mod:`kd_plugin.preflight`); nothing here builds a
network or runs a check of its own.
"""
import difflib
import inspect
import os
from collections.abc import Iterable
from os import path as osp
from typing import TYPE_CHECKING, Any

import torch

from kd_plugin.archs.window_padding import window_multiple
from kd_plugin.checkpoint_io import load_weights_only, pick_state_dict

if TYPE_CHECKING:
    from kd_plugin.distill.upcycling import UpcycleConfig

#: BasicSR's own loss sections under ``train:`` (SRModel reads them).
SR_LOSS_KEYS = ('pixel_opt', 'perceptual_opt')
#: The distillation loss sections under ``train:``, with the loss each logs, in the order of the total.
KD_LOSS_LOGS = {'distill_opt': 'l_dist', 'feature_opt': 'l_feat', 'forward_opt': 'l_fwd'}
KD_LOSS_KEYS = tuple(KD_LOSS_LOGS)
#: Everything under ``train:`` that makes a run a distillation run (what an ablation takes apart).
KD_INGREDIENTS = (*KD_LOSS_KEYS, 'upcycle')
LOSS_KEYS = SR_LOSS_KEYS + KD_LOSS_KEYS
#: The registered loss each KD section takes.
LOSS_TYPES = {'distill_opt': 'OutputDistillLoss', 'feature_opt': 'FeatureMatchingLoss',
              'forward_opt': 'ForwardAdaptationLoss'}
#: Keys under ``train:`` that BasicSR's SRModel/train loop or KDModel read.
TRAIN_KEYS = (*LOSS_KEYS, 'ema_decay', 'optim_g', 'optim_adapters', 'scheduler', 'total_iter', 'warmup_iter',
              'teacher', 'nan_policy', 'upcycle')
TEACHER_KEYS = ('autocast', 'channels_last', 'pad_to')
NAN_POLICIES = ('stop', 'skip')
_DTYPES = {'bf16': torch.bfloat16, 'bfloat16': torch.bfloat16, 'fp16': torch.float16, 'float16': torch.float16}


def require_a_loss(train: dict[str, Any], model: str = 'KDModel') -> None:
    """At least one loss section is set (BasicSR's SRModel raises for no pixel or perceptual loss;
    a KD run may train on distillation terms alone)."""
    if not any(train.get(key) for key in LOSS_KEYS):
        raise ValueError(f'{model}: no loss configured. Fix: set at least one of ' +
                         ', '.join(f'train.{key}' for key in LOSS_KEYS))


def check_teacher_checkpoint(opt: dict[str, Any]) -> str:
    """``path.pretrain_network_t``, which must name an existing file."""
    if 'network_t' not in opt:
        raise ValueError('network_t: KDModel needs a teacher arch. Fix: add a `network_t:` section like network_g')
    path = opt['path'].get('pretrain_network_t')
    if not path:
        raise ValueError('path.pretrain_network_t: KDModel needs the trained teacher\'s checkpoint. Fix: set it to '
                         'the .pth file (train the teacher first with its own options file)')
    if not osp.isfile(path):
        raise ValueError(f'path.pretrain_network_t: {path!r} does not exist (current directory: {os.getcwd()}). '
                         'Fix: point it at the teacher checkpoint')
    return path


def teacher_state_dict(opt: dict[str, Any]) -> tuple[dict[str, torch.Tensor], str]:
    """The teacher's parameters from its checkpoint, safely unpickled, and the key they came from
    (``path.param_key_t``, else the shared rule of :func:`~kd_plugin.checkpoint_io.pick_state_dict`)."""
    ckpt = load_weights_only(check_teacher_checkpoint(opt), 'path.pretrain_network_t')
    return pick_state_dict(ckpt, opt['path'].get('param_key_t'), 'path.pretrain_network_t')


def teacher_dtype(teacher_opt: dict[str, Any], device: torch.device) -> torch.dtype | None:
    """Autocast dtype of the teacher's forward from ``train.teacher.autocast`` (None: fp32)."""
    name = teacher_opt.get('autocast')
    if name in (None, False, 'fp32', 'float32'):
        return None
    if name not in _DTYPES:
        raise ValueError(f'train.teacher.autocast: {name!r} is not one of bf16, fp16 or fp32')
    if _DTYPES[name] == torch.float16 and device.type == 'cpu':
        raise ValueError('train.teacher.autocast: fp16 autocast is for CUDA; use bf16 on the CPU')
    return _DTYPES[name]


def teacher_pad_to(opt: dict[str, Any]) -> int:
    """Multiple the teacher's input sides are padded to: ``train.teacher.pad_to``, else the teacher's
    ``window_size`` (SwinIR-style archs only take multiples of it), else 1 (no padding)."""
    teacher_opt = (opt.get('train') or {}).get('teacher') or {}
    value = teacher_opt.get('pad_to', window_multiple(opt['network_t']))
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f'train.teacher.pad_to: {value!r} must be a positive integer (1: no padding)')
    return value


def nan_policy(train: dict[str, Any]) -> str:
    """``train.nan_policy``: ``stop`` (default) or ``skip``."""
    policy = train.get('nan_policy', 'stop')
    if policy not in NAN_POLICIES:
        raise ValueError(f'train.nan_policy: {policy!r}. Fix: use stop (end the run at a non-finite loss) or skip '
                         '(drop such steps)')
    return policy


def lq_patch_side(opt: dict[str, Any]) -> int | None:
    """The LR side of the training patches (``datasets.train.gt_size / scale``), when the options say."""
    gt_size = ((opt.get('datasets') or {}).get('train') or {}).get('gt_size')
    return gt_size // opt['scale'] if gt_size else None


def upcycle_options(opt: dict[str, Any]) -> 'UpcycleConfig | None':
    """``train.upcycle`` parsed and checked (:func:`kd_plugin.distill.upcycling.parse_upcycle`), or None."""
    from kd_plugin.distill.upcycling import parse_upcycle

    return parse_upcycle((opt.get('train') or {}).get('upcycle'), opt['scale'], lq_patch_side(opt))


def check_weighting(train: dict[str, Any]) -> None:
    """An output-distillation weighting that compares with the ground truth needs the pixel loss's
    supervision to be part of the run."""
    weighting = (train.get('distill_opt') or {}).get('weighting', 'none')
    if weighting == 'teacher_better' and not train.get('pixel_opt'):
        raise ValueError('train.distill_opt.weighting: teacher_better weights each pixel by how much better the '
                         'teacher is than the student against the ground truth, so it is meant to complement the '
                         'pixel loss, and the run has none. Fix: set train.pixel_opt, or weighting: none')


def probe_input(opt: dict[str, Any], device: torch.device | str = 'cpu') -> torch.Tensor:
    """A dummy LR batch for shape probing: the training patch size when known, else 32x32."""
    train = (opt.get('datasets') or {}).get('train') or {}
    side = max(train.get('gt_size', 32 * opt['scale']) // opt['scale'], 8)
    channels = opt['network_g'].get('num_in_ch', 3)
    return torch.rand(1, channels, side, side, device=device)


def unknown_key(keys: Iterable[Any], known: Iterable[str], where: str) -> None:
    """Raise ``ValueError`` for the first key of ``keys`` not in ``known``, with a did-you-mean."""
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
            hint = f'did you mean `{close[0]}`?' if close else f'known keys: {", ".join(sorted(known))}'
            raise ValueError(f'{where}.{key}: unknown key; {hint}. Fix: correct or remove it')


def check_option_keys(opt: dict[str, Any]) -> None:
    """Typos in KD option keys fail with a suggestion instead of being ignored (or failing deep in
    a constructor): ``train:``, ``train.teacher`` and the three KD loss sections."""
    from basicsr.utils.registry import LOSS_REGISTRY

    train = opt.get('train') or {}
    unknown_key(train, TRAIN_KEYS, 'train')
    unknown_key(train.get('teacher') or {}, TEACHER_KEYS, 'train.teacher')
    for key in KD_LOSS_KEYS:
        section = train.get(key)
        if not section:
            continue
        if section.get('type') not in LOSS_REGISTRY:
            raise ValueError(f'train.{key}.type: {section.get("type")!r} is not a registered loss. Fix: use '
                             f'{LOSS_TYPES[key]}')
        params = inspect.signature(LOSS_REGISTRY.get(section['type']).__init__).parameters
        unknown_key([k for k in section if k != 'type'], [p for p in params if p != 'self'], f'train.{key}')
