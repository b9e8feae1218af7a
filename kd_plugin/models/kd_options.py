"""KDModel option handling shared by the model and the pre-run checks."""
import os
from os import path as osp
from typing import Any

import torch

from kd_plugin.archs.window_padding import window_multiple
from kd_plugin.checkpoint_io import load_weights_only, state_dict_mismatch

#: Loss keys under ``train:`` that KDModel reads, in the order of the total loss.
LOSS_KEYS = ('pixel_opt', 'perceptual_opt', 'distill_opt', 'feature_opt', 'forward_opt')
_DTYPES = {'bf16': torch.bfloat16, 'bfloat16': torch.bfloat16, 'fp16': torch.float16, 'float16': torch.float16}


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


def probe_input(opt: dict[str, Any], device: torch.device | str = 'cpu') -> torch.Tensor:
    """A dummy LR batch for shape probing: the training patch size when known, else 32x32."""
    train = (opt.get('datasets') or {}).get('train') or {}
    side = max(train.get('gt_size', 32 * opt['scale']) // opt['scale'], 8)
    channels = opt['network_g'].get('num_in_ch', 3)
    return torch.rand(1, channels, side, side, device=device)


def _construct(registry, opt: dict[str, Any]):
    """Build a registered class without BasicSR's ``build_*`` helpers, which would initialise the
    root logger before ``train_pipeline`` gives it its log file."""
    kwargs = dict(opt)
    return registry.get(kwargs.pop('type'))(**kwargs)


def teacher_state_dict(opt: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The teacher's parameters from its checkpoint (``param_key_t``, default ``params``), safely unpickled."""
    ckpt = load_weights_only(check_teacher_checkpoint(opt), 'path.pretrain_network_t')
    key = opt['path'].get('param_key_t', 'params')
    if isinstance(ckpt, dict) and key in ckpt:
        return ckpt[key]
    if isinstance(ckpt, dict) and 'params' in ckpt:
        return ckpt['params']
    return ckpt


def check_teacher_matches(opt: dict[str, Any], teacher: torch.nn.Module) -> None:
    """The checkpoint's keys and shapes fit ``network_t`` (unless ``strict_load_t: false``)."""
    if not opt['path'].get('strict_load_t', True):
        return
    mismatch = state_dict_mismatch(teacher_state_dict(opt), teacher)
    if mismatch:
        raise ValueError(f'path.pretrain_network_t does not fit network_t ({opt["network_t"].get("type")}): '
                         f'{mismatch}. Fix: use the checkpoint trained with this network_t, or set network_t to '
                         'the arch the checkpoint was trained with')


#: keys under ``train:`` that BasicSR's SRModel/train loop or KDModel read.
TRAIN_KEYS = (*LOSS_KEYS, 'ema_decay', 'optim_g', 'optim_adapters', 'scheduler', 'total_iter', 'warmup_iter',
              'teacher', 'nan_policy')
TEACHER_KEYS = ('autocast', 'channels_last', 'pad_to')
LOSS_TYPES = {'distill_opt': 'OutputDistillLoss', 'feature_opt': 'FeatureMatchingLoss',
              'forward_opt': 'ForwardAdaptationLoss'}


def _unknown(keys, known, where: str) -> None:
    import difflib

    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
            hint = f'did you mean `{close[0]}`?' if close else f'known keys: {", ".join(sorted(known))}'
            raise ValueError(f'{where}.{key}: unknown key; {hint}. Fix: correct or remove it')


def check_option_keys(opt: dict[str, Any]) -> None:
    """Typos in KD option keys fail with a suggestion instead of being ignored (or failing deep in
    a constructor): ``train:``, ``train.teacher`` and the three KD loss sections."""
    import inspect

    from basicsr.utils.registry import LOSS_REGISTRY

    train = opt.get('train') or {}
    _unknown(train, TRAIN_KEYS, 'train')
    _unknown(train.get('teacher') or {}, TEACHER_KEYS, 'train.teacher')
    for key in LOSS_KEYS[2:]:
        section = train.get(key)
        if not section:
            continue
        if section.get('type') not in LOSS_REGISTRY:
            raise ValueError(f'train.{key}.type: {section.get("type")!r} is not a registered loss. Fix: use '
                             f'{LOSS_TYPES[key]}')
        params = inspect.signature(LOSS_REGISTRY.get(section['type']).__init__).parameters
        _unknown([k for k in section if k != 'type'], [p for p in params if p != 'self'], f'train.{key}')


def check_kd_options(opt: dict[str, Any]) -> None:
    """Everything KDModel would reject, checked on CPU with untrained networks before the run starts."""
    from basicsr.utils.registry import LOSS_REGISTRY

    from kd_plugin.archs.build import construct_network
    from kd_plugin.distill.wiring import wire

    check_teacher_checkpoint(opt)
    check_option_keys(opt)
    train = opt.get('train') or {}
    if not any(train.get(key) for key in LOSS_KEYS):
        raise ValueError('KDModel: no loss configured. Fix: set at least one of train.pixel_opt, '
                         'train.distill_opt, train.feature_opt, train.forward_opt')
    teacher_dtype(train.get('teacher') or {}, torch.device('cuda' if opt.get('num_gpu') else 'cpu'))
    teacher_pad_to(opt)
    student = construct_network(opt['network_g'], 'network_g')
    teacher = construct_network(opt['network_t'], 'network_t')
    feature = _construct(LOSS_REGISTRY, train['feature_opt']) if train.get('feature_opt') else None
    forward = _construct(LOSS_REGISTRY, train['forward_opt']) if train.get('forward_opt') else None
    wire(student, teacher, opt['scale'], feature, forward, probe_input(opt))
    check_teacher_matches(opt, teacher)  # after the scale and layer checks, which name the likelier cause
