"""``KDConfig``: the ``KDModel`` options, parsed and checked once.

``KDConfig.from_options(opt, device)`` is the one reading of a KD options file: the pre-run checks
(:mod:`kd_plugin.preflight`) build it before anything is written, and ``KDModel`` builds the same thing
when the run starts. Every option error raises ``ValueError`` naming the key and the fix, in one order:
the teacher checkpoint exists, option keys are known, a loss is set, then each setting. The teacher
checkpoint is read (and hashed) once per process and file version.
"""
import hashlib
import inspect
import io
import os
from dataclasses import dataclass
from functools import lru_cache
from os import path as osp
from typing import Any

import torch
from basicsr.utils.registry import LOSS_REGISTRY, MODEL_REGISTRY

from kd_plugin.archs.build import registered_class
from kd_plugin.archs.self_loading import with_checkpoint
from kd_plugin.archs.window_padding import window_multiple
from kd_plugin.checkpoint_io import pick_state_dict, weights_only_from_bytes
from kd_plugin.data.mixed_kd_dataset import lr_only_sources
from kd_plugin.distill.eco import EcoConfig, parse_eco
from kd_plugin.distill.upcycling import UpcycleConfig, parse_upcycle
from kd_plugin.option_keys import check_keys

#: BasicSR's own loss sections under ``train:`` (SRModel reads them).
SR_LOSS_KEYS = ('pixel_opt', 'perceptual_opt')
#: The distillation loss sections under ``train:``, with the loss each logs, in the order of the total.
KD_LOSS_LOGS = {'distill_opt': 'l_dist', 'feature_opt': 'l_feat', 'forward_opt': 'l_fwd'}
KD_LOSS_KEYS = tuple(KD_LOSS_LOGS)
#: Everything under ``train:`` that makes a run a distillation run (what an ablation takes apart).
KD_INGREDIENTS = (*KD_LOSS_KEYS, 'upcycle', 'eco')
LOSS_KEYS = SR_LOSS_KEYS + KD_LOSS_KEYS
#: The registered loss each KD section takes.
LOSS_TYPES = {'distill_opt': 'OutputDistillLoss', 'feature_opt': 'FeatureMatchingLoss',
              'forward_opt': 'ForwardAdaptationLoss'}
#: Keys under ``train:`` that BasicSR's SRModel/train loop or KDModel read.
TRAIN_KEYS = (*LOSS_KEYS, 'ema_decay', 'optim_g', 'optim_adapters', 'scheduler', 'total_iter', 'warmup_iter',
              'teacher', 'nan_policy', 'upcycle', 'eco')
TEACHER_KEYS = ('autocast', 'channels_last', 'pad_to')
NAN_POLICIES = ('stop', 'skip')
_DTYPES = {'bf16': torch.bfloat16, 'bfloat16': torch.bfloat16, 'fp16': torch.float16, 'float16': torch.float16}


@dataclass(frozen=True)
class TeacherConfig:
    """``network_t`` and its checkpoint, read once, with ``train.teacher``'s fast path. ``arch`` is the
    section to build the teacher from: for an arch that reads its own weights it names the checkpoint
    (:func:`~kd_plugin.archs.self_loading.with_checkpoint`), and ``params`` is then not loaded into it."""

    arch: dict[str, Any]
    checkpoint: str
    sha256: str
    params: dict[str, torch.Tensor]
    param_key: str | None      # the key the parameters came from (None: the top level)
    strict: bool
    dtype: torch.dtype | None  # autocast dtype; None: fp32
    channels_last: bool
    pad_to: int


@dataclass(frozen=True)
class KDConfig:
    """What a ``KDModel`` run distils with. Loss sections are the options' own mappings (BasicSR's
    ``build_loss`` takes them). Cached teacher labels (``datasets.train.dataroot_teacher``) are checked
    against ``teacher.sha256`` by :func:`kd_plugin.data.label_cache.check_label_set`."""

    scale: int
    teacher: TeacherConfig
    losses: dict[str, dict[str, Any]]
    nan_policy: str
    upcycle: UpcycleConfig | None
    eco: EcoConfig | None = None

    @property
    def uses_adapters(self) -> bool:
        """Feature matching or forward adaptation: the run has adapters to save and resume."""
        return uses_adapters(self.losses)

    @classmethod
    def from_options(cls, opt: dict[str, Any], device: torch.device | str = 'cpu') -> 'KDConfig':
        """Parse and check ``opt`` (see the module docstring); ``device`` decides which autocast dtypes work."""
        checkpoint = teacher_checkpoint_path(opt)
        check_option_keys(opt)
        train = opt.get('train') or {}
        require_a_loss(train)
        policy = nan_policy(train)
        check_weighting(train)
        upcycle = parse_upcycle(train.get('upcycle'), opt['scale'], lq_patch_side(opt))
        eco = parse_eco(train.get('eco'), bool(train.get('pixel_opt')))
        check_eco_terms(eco, train)
        check_lr_only_terms(lr_only_sources(opt), train, upcycle, eco)
        teacher_opt = train.get('teacher') or {}
        dtype = teacher_dtype(teacher_opt, torch.device(device))
        digest, ckpt = read_teacher(checkpoint)
        params, key = pick_state_dict(ckpt, opt['path'].get('param_key_t'), 'path.pretrain_network_t')
        # an arch that reads its own weights (SpandrelNet) gets the checkpoint, its entry and the run's scale here
        arch = with_checkpoint(opt['network_t'], checkpoint, 'network_t', 'path.pretrain_network_t',
                               param_key=opt['path'].get('param_key_t'), scale=opt['scale'])
        teacher = TeacherConfig(arch, checkpoint, digest, params, key,
                                bool(opt['path'].get('strict_load_t', True)), dtype,
                                bool(teacher_opt.get('channels_last', False)), teacher_pad_to(opt))
        losses = {key: dict(train[key]) for key in LOSS_KEYS if train.get(key)}
        return cls(opt['scale'], teacher, losses, policy, upcycle, eco)


def check_eco_terms(eco: EcoConfig | None, train: dict[str, Any]) -> None:
    """Refuse ECO ``mode: full`` beside feature matching or forward adaptation: the student would see the mixed
    input ``lerp(down(T(x)), x, alpha)`` and the teacher the LR image ``x``, so their features would be of two
    different images."""
    if eco is None or eco.mode != 'full':
        return
    terms = [key for key in ('feature_opt', 'forward_opt') if train.get(key)]
    if terms:
        raise ValueError(f'train.eco.mode full with train.{" and train.".join(terms)}: the student\'s features would '
                         'come from the mixed input lerp(down(T(x)), x, alpha) and the teacher\'s from the LR image '
                         'x, two different images. Fix: mode: hr_only (the input stays x), or remove '
                         f'train.{" and train.".join(terms)}')


def check_lr_only_terms(lr_only: list[str], train: dict[str, Any], upcycle: UpcycleConfig | None,
                        eco: EcoConfig | None) -> None:
    """Refuse, for a run with LR-only sources (``lr_only``: their names in ``datasets.train.sources``), every term
    that needs the ground truth of every sample, and a run in which those samples would teach nothing: no
    ``distill_opt`` (their labels are their only target), ``distill_opt.weighting: teacher_better`` (weights by
    the error against the GT), ``train.eco`` (its target mixes in the GT) and ``upcycle.zoom_in`` (cuts tiles out
    of the HR patch). Feature matching, forward adaptation, zoom-out and label consistency read the LR input, the
    live teacher or the label only, and run on every sample."""
    if not lr_only:
        return
    where = ', '.join(f'datasets.train.sources.{name}' for name in lr_only)
    drop = f'or give {where} its dataroot_gt, or drop the LR-only source'
    if not train.get('distill_opt'):
        raise ValueError(f'train.distill_opt: {where} has no ground truth (LR-only): output distillation against its '
                         'teacher labels is all its samples can teach, and the run has no distill_opt, so they would '
                         'teach nothing. Fix: set train.distill_opt: {type: OutputDistillLoss, loss_weight: 1.0}, '
                         f'{drop}')
    if train['distill_opt'].get('weighting', 'none') == 'teacher_better':
        raise ValueError(f'train.distill_opt.weighting: teacher_better weights each pixel by the student\'s and the '
                         f'teacher\'s error against the ground truth, which {where} does not have (LR-only). Fix: '
                         f'weighting: none, {drop}')
    if eco is not None:
        raise ValueError(f'train.eco: the ECO target lerp(T(x), y, alpha) mixes in the ground truth y, which {where} '
                         f'does not have (LR-only). Fix: remove train.eco, {drop}')
    if upcycle is not None and 'zoom_in' in upcycle.parts:
        raise ValueError(f'train.upcycle.zoom_in: cuts LR-sized tiles out of the HR patch, which {where} does not '
                         'have (LR-only). Fix: remove train.upcycle.zoom_in (zoom_out and consistency need no HR), '
                         f'{drop}')


def uses_adapters(train: dict[str, Any]) -> bool:
    """Whether a ``train:`` section (or its loss sections) has adapters to save and resume: feature matching
    or forward adaptation."""
    return bool(train.get('feature_opt') or train.get('forward_opt'))


def teacher_checkpoint_path(opt: dict[str, Any]) -> str:
    """``path.pretrain_network_t``, which must name an existing file."""
    if 'network_t' not in opt:
        raise ValueError('network_t: KDModel needs a teacher arch. Fix: add a `network_t:` section like network_g')
    path = opt['path'].get('pretrain_network_t')
    if not path:
        raise ValueError('path.pretrain_network_t: KDModel needs the trained teacher\'s checkpoint. Fix: set it to '
                         'the .pth file (train the teacher first with its own options file), or to a published '
                         'checkpoint that spandrel recognises with network_t: {type: SpandrelNet}')
    if not osp.isfile(path):
        raise ValueError(f'path.pretrain_network_t: {path!r} does not exist (current directory: {os.getcwd()}). '
                         'Fix: point it at the teacher checkpoint')
    return path


def task_teacher(checkpoint: str, param_key: str | None, option: str) -> tuple[str, dict[str, Any], str | None]:
    """The teacher of one task of a multi-task training set (``datasets.train.tasks.<task>.pretrain_network_t``,
    named ``option``), read as the run's own teacher is: its SHA-256, its parameters and the checkpoint entry they
    came from (``param_key`` as ``path.param_key_t`` is taken; None: the top level)."""
    if not osp.isfile(checkpoint):
        raise ValueError(f'{option}: {checkpoint!r} does not exist (current directory: {os.getcwd()}). Fix: point it '
                         'at the task\'s teacher checkpoint')
    digest, ckpt = read_teacher(checkpoint)
    params, key = pick_state_dict(ckpt, param_key, option)
    return digest, params, key


def read_teacher(path: str) -> tuple[str, Any]:
    """``(SHA-256, weights-only unpickled object)`` of the teacher checkpoint (a ``.safetensors`` file: its
    state dict), read from disk once per file version (path, size and modification time) in this process."""
    stat = os.stat(path)
    return _read_teacher(osp.abspath(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=4)
def _read_teacher(path: str, size: int, mtime_ns: int) -> tuple[str, Any]:
    with open(path, 'rb') as f:
        data = f.read()
    return hashlib.sha256(data).hexdigest(), weights_only_from_bytes(io.BytesIO(data), path,
                                                                     'path.pretrain_network_t')


def require_a_loss(train: dict[str, Any], model: str = 'KDModel') -> None:
    """At least one loss section is set (BasicSR's SRModel raises for no pixel or perceptual loss;
    a KD run may train on distillation terms alone)."""
    if not any(train.get(key) for key in LOSS_KEYS):
        raise ValueError(f'{model}: no loss configured. Fix: set at least one of ' +
                         ', '.join(f'train.{key}' for key in LOSS_KEYS))


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 in hardware: a CUDA device that supports it, or a CPU with AVX-512 BF16
    or AMX. Elsewhere torch emulates bf16 through fp32, and autocast makes a teacher slower, not faster: the
    EDSR 64x16 teacher ran at 0.14x its fp32 speed on an AVX2-only AMD EPYC (README "What KD costs per step")."""
    if device.type == 'cuda':
        # torch >= 2.4 counts emulated bf16 (pre-Ampere GPUs: V100, T4) as supported unless told not to
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type != 'cpu':
        return False
    # torch's own capability probes (what inductor asks); an older torch without them gets fp32
    probes = (getattr(torch.cpu, '_is_avx512_bf16_supported', None), getattr(torch.cpu, '_is_amx_tile_supported', None))
    return any(probe() for probe in probes if probe is not None)


def precision_name(dtype: torch.dtype | None) -> str:
    """``'fp32'``, ``'bf16'`` or ``'fp16'`` for a teacher autocast dtype (None: fp32)."""
    return {None: 'fp32', torch.bfloat16: 'bf16', torch.float16: 'fp16'}[dtype]


def teacher_dtype(teacher_opt: dict[str, Any], device: torch.device) -> torch.dtype | None:
    """Autocast dtype of the teacher's forward from ``train.teacher.autocast`` (None: fp32). ``auto`` is bf16
    where ``device`` computes it in hardware (:func:`native_bf16`), fp16 on a CUDA device without bf16, and
    fp32 on a CPU without native bf16."""
    name = teacher_opt.get('autocast')
    if name in (None, False, 'fp32', 'float32'):
        return None
    if name == 'auto':
        if native_bf16(device):
            return torch.bfloat16
        return torch.float16 if device.type == 'cuda' else None
    if name not in _DTYPES:
        raise ValueError(f'train.teacher.autocast: {name!r} is not one of auto, bf16, fp16 or fp32')
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


def check_option_keys(opt: dict[str, Any]) -> None:
    """Typos in KD option keys fail with a suggestion instead of being ignored (or failing deep in
    a constructor): ``train:`` (with the keys a ``KDModel`` subclass declares in ``extra_train_keys``),
    ``train.teacher`` and the three KD loss sections."""
    train = opt.get('train') or {}
    model = MODEL_REGISTRY.get(opt['model_type']) if opt.get('model_type') in MODEL_REGISTRY else None
    check_keys(train, (*TRAIN_KEYS, *getattr(model, 'extra_train_keys', ())), 'train')
    check_keys(train.get('teacher') or {}, TEACHER_KEYS, 'train.teacher')
    for key in KD_LOSS_KEYS:
        section = train.get(key)
        if not section:
            continue
        if section.get('type') not in LOSS_REGISTRY:
            raise ValueError(f'train.{key}.type: {section.get("type")!r} is not a registered loss. Fix: use '
                             f'{LOSS_TYPES[key]}')
        params = inspect.signature(registered_class(LOSS_REGISTRY, section, f'train.{key}').__init__).parameters
        check_keys([k for k in section if k != 'type'], [p for p in params if p != 'self'], f'train.{key}')
