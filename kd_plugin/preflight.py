"""Checks run on the parsed options before BasicSR creates folders, loads data or builds models.

Every failure raises :class:`OptionError` whose message names the option and the fix; the
entry points print it and exit with status 2, so nothing on disk has been touched yet.
"""
import functools
import os
from collections.abc import Callable
from os import path as osp
from typing import Any

import torch
from basicsr.utils.registry import ARCH_REGISTRY, LOSS_REGISTRY
from PIL import Image

from kd_plugin.archs.build import build_network, check_init, construct, registered_class, split_init
from kd_plugin.archs.self_loading import loads_own_weights
from kd_plugin.archs.window_padding import window_multiple
from kd_plugin.checkpoint_io import check_checkpoint_options, load_weights_only, state_dict_mismatch
from kd_plugin.compat.resume import latest_training_state, missing_checkpoint_error, resumed_networks
from kd_plugin.data.image_io import list_images, name_difference
from kd_plugin.data.label_cache import check_label_set
from kd_plugin.data.lr_only_dataset import has_gt
from kd_plugin.data.mixed_kd_dataset import MIXED, source_options
from kd_plugin.data.multi_task_dataset import task_options
from kd_plugin.distill.wiring import wire
from kd_plugin.models.kd_config import KDConfig, probe_input, uses_adapters
from kd_plugin.models.kd_model import adapter_checkpoint, is_kd_model
from kd_plugin.registration import import_custom_modules


class OptionError(ValueError):
    """An options-file value that cannot work; the message says which key and how to fix it."""


def check_num_gpu(opt: dict[str, Any]) -> None:
    """``num_gpu`` asks for more CUDA devices than the machine has."""
    wanted, available = opt.get('num_gpu', 0), torch.cuda.device_count()
    if isinstance(wanted, int) and wanted > available:
        where = 'this machine has no CUDA device' if available == 0 else f'only {available} CUDA device(s) are visible'
        raise OptionError(f'num_gpu: {wanted}, but {where}. Fix: set `num_gpu: auto` (all visible GPUs, '
                          'CPU when there is none) or `num_gpu: 0` for the CPU.')


def _lmdb_shapes(key: str, folder: str) -> dict[str, tuple[int, int]]:
    meta = osp.join(folder, 'meta_info.txt')
    if not (osp.isfile(meta) and osp.isfile(osp.join(folder, 'data.mdb'))):
        raise OptionError(f'{key}: {folder!r} is not a BasicSR LMDB (needs data.mdb and meta_info.txt). '
                          'Fix: build it with `python -m kd_plugin.cli.prepare lmdb --input DIR --output X.lmdb`.')
    shapes = {}
    with open(meta) as f:
        for line in f:
            if line.strip():
                name, shape = line.split()[:2]
                h, w = shape.strip('()').split(',')[:2]
                shapes[name.split('.')[0]] = (int(h), int(w))
    return shapes


def _folder_shapes(key: str, folder: str, template: str = '{}') -> dict[str, tuple[int, int]]:
    if not osp.isdir(folder):
        raise OptionError(f'{key}: folder {folder!r} does not exist. Fix: correct the path, or create the data '
                          'with `python -m kd_plugin.cli.prepare lr --input HR_DIR --output OUT`.')
    shapes = {}
    for name in list_images(folder):
        stem = osp.splitext(name)[0]
        try:
            with Image.open(osp.join(folder, name)) as im:
                w, h = im.size
                im.verify()  # reads the whole file (PNG: every chunk's CRC), so truncation shows here
        except (OSError, SyntaxError) as err:
            raise OptionError(f'{key}: cannot read image {osp.join(folder, name)!r} ({err}). '
                              'Fix: replace or remove the file.') from err
        shapes[template.format(stem)] = (h, w)
    if not shapes:
        raise OptionError(f'{key}: folder {folder!r} holds no images.')
    return shapes


def _require_same_names(prefix: str, what: str, lq: dict, gt: dict, fix: str) -> None:
    if set(gt) != set(lq):
        raise OptionError(f'{prefix}: {what} ({name_difference(lq, gt, ("LR", "HR"))}). Fix: {fix}')


def _pair_shapes(prefix: str, dataset: dict[str, Any]) -> tuple[dict, dict]:
    gt_key, lq_key = f'{prefix}.dataroot_gt', f'{prefix}.dataroot_lq'
    for key, name in ((gt_key, 'dataroot_gt'), (lq_key, 'dataroot_lq')):
        if not dataset.get(name):
            raise OptionError(f'{key} is missing. Fix: set it to the folder (or .lmdb) of the '
                              f'{"ground-truth HR" if name.endswith("gt") else "low-resolution input"} images.')
    if dataset.get('io_backend', {}).get('type') == 'lmdb':
        gt, lq = _lmdb_shapes(gt_key, dataset['dataroot_gt']), _lmdb_shapes(lq_key, dataset['dataroot_lq'])
        _require_same_names(prefix, f'the LMDBs {dataset["dataroot_lq"]!r} and {dataset["dataroot_gt"]!r} hold '
                            'different keys', lq, gt, 'rebuild both from folders with the same file names '
                            '(`python -m kd_plugin.cli.prepare lmdb` checks this).')
        return gt, lq
    if dataset.get('meta_info_file'):
        return {}, {}  # BasicSR reads the listed files; nothing to pair here
    # BasicSR pairs HR `<stem>.ext` with LR `filename_tmpl.format(<stem>).ext`.
    gt = _folder_shapes(gt_key, dataset['dataroot_gt'], dataset.get('filename_tmpl', '{}'))
    lq = _folder_shapes(lq_key, dataset['dataroot_lq'])
    _require_same_names(prefix, f'{dataset["dataroot_lq"]!r} and {dataset["dataroot_gt"]!r} do not pair up', lq, gt,
                        'give both folders the same file names (or set filename_tmpl).')
    return gt, lq


def check_paired_dataset(phase: str, dataset: dict[str, Any], scale: int) -> dict[str, tuple[int, int]]:
    """Folders/LMDBs exist, LR and HR are paired, and their sizes agree with ``scale``; returns the LR
    ``(h, w)`` by image name.

    Training needs HR exactly ``scale`` x LR; validation also accepts an HR that is up to
    ``scale - 1`` px larger (BasicSR crops it, as ``modcrop`` does).
    """
    prefix = f'datasets.{phase}'
    gt, lq = _pair_shapes(prefix, dataset)
    train = dataset.get('phase') == 'train'
    for name, (h, w) in lq.items():
        gh, gw = gt[name]
        slack = 0 if train else scale - 1
        if not (h * scale <= gh <= h * scale + slack and w * scale <= gw <= w * scale + slack):
            raise OptionError(f'{prefix}: {name!r} is {w}x{h} in LR and {gw}x{gh} in HR, which does not match '
                              f'scale: {scale} (HR should be {w * scale}x{h * scale}). Fix: set the right `scale`, or '
                              'regenerate the LR images with `python -m kd_plugin.cli.prepare lr`.')
    if train and dataset.get('gt_size') and lq:
        small = sorted(name for name, (h, w) in gt.items() if min(h, w) < dataset['gt_size'])
        if small:
            smallest = min(min(gt[name]) for name in small)
            raise OptionError(f'{prefix}.gt_size: {dataset["gt_size"]} is larger than the smallest HR image side '
                              f'({smallest} px): {", ".join(repr(n) for n in small[:5])}'
                              f'{f" and {len(small) - 5} more" if len(small) > 5 else ""} cannot be cropped. Fix: '
                              'lower gt_size, or leave those images out (`python -m kd_plugin.cli.prepare merge '
                              f'--min-size {dataset["gt_size"]}` builds such a folder).')
    return lq


def check_lr_only_source(prefix: str, source: dict[str, Any], scale: int) -> dict[str, tuple[int, int]]:
    """The LR images of an LR-only source (``dataroot_lq`` without ``dataroot_gt``) can be read (a folder of
    readable images, or a BasicSR LMDB) and, for training, each is large enough for a ``gt_size // scale`` LR
    patch; returns their ``(h, w)`` by name (nothing for a ``meta_info_file`` list, which BasicSR reads as is)."""
    key = f'{prefix}.dataroot_lq'
    if source.get('io_backend', {}).get('type') == 'lmdb':
        lq = _lmdb_shapes(key, source['dataroot_lq'])
    elif source.get('meta_info_file'):
        return {}
    else:
        lq = _folder_shapes(key, source['dataroot_lq'])
    gt_size = source.get('gt_size')
    if source.get('phase') == 'train' and gt_size:
        small = sorted(name for name, (h, w) in lq.items() if min(h, w) * scale < gt_size)
        if small:
            raise OptionError(f'{prefix}.gt_size: {gt_size} needs LR images of at least {-(-gt_size // scale)} px a '
                              f'side at x{scale}, and {", ".join(repr(n) for n in small[:5])}'
                              f'{f" and {len(small) - 5} more" if len(small) > 5 else ""} in {source["dataroot_lq"]!r} '
                              'are smaller. Fix: lower gt_size, or leave those images out of the folder.')
    return lq


def check_mixed_dataset(phase: str, dataset: dict[str, Any], scale: int) -> None:
    """A ``MixedKDDataset``: its sources' options (:func:`~kd_plugin.data.mixed_kd_dataset.source_options`), each
    paired source as a paired set, each LR-only source's LR images readable and large enough."""
    if dataset.get('phase', phase.split('_')[0]) != 'train':  # BasicSR's phase: the key up to its first '_'
        raise OptionError(f'datasets.{phase}.type: MixedKDDataset is a training set (its LR-only sources have no GT '
                          'to score against). Fix: validate on a PairedImageDataset')
    try:
        sources = source_options(dataset)
    except ValueError as err:
        raise OptionError(str(err)) from err
    for name, source in sources.items():
        prefix = f'{phase}.sources.{name}'
        if has_gt(source):
            check_paired_dataset(prefix, source, scale)
        else:
            check_lr_only_source(f'datasets.{prefix}', source, scale)


def check_window_multiple(opt: dict[str, Any], phase: str, lq: dict[str, tuple[int, int]]) -> None:
    """A window-attention ``network_g`` (``window_size`` > 1, e.g. SwinIR) only takes LR sides that are
    multiples of the window. Training patches must be; whole validation/test images must be too unless
    ``model_type: SwinIRModel`` pads them (SRModel and KDModel do not), otherwise the first validation
    would fail after training has started."""
    multiple = window_multiple(opt.get('network_g') or {})
    if multiple == 1:
        return
    dataset = opt['datasets'][phase]
    if dataset.get('phase') == 'train':
        side = dataset.get('gt_size', 0) // opt.get('scale', 1)
        if side % multiple:
            raise OptionError(f'datasets.{phase}.gt_size: {dataset["gt_size"]} gives {side} px LR patches, not a '
                              f'multiple of network_g.window_size: {multiple}. Fix: a gt_size that is a multiple of '
                              f'{multiple * opt.get("scale", 1)}.')
        return
    if opt.get('model_type') == 'SwinIRModel':
        return
    for name, (h, w) in sorted(lq.items()):
        if h % multiple or w % multiple:
            raise OptionError(f'datasets.{phase}: {name!r} is {w}x{h} in LR, not a multiple of network_g.window_size: '
                              f'{multiple}, and model_type: {opt.get("model_type")} does not pad whole images, so '
                              f'this network would fail on it. Fix: model_type: SwinIRModel (BasicSR\'s SRModel that '
                              f'pads to the window) for a network trained alone, or LR images whose sides are '
                              f'multiples of {multiple}.')


def check_network_init(opt: dict[str, Any]) -> None:
    """``network_g/network_t`` name registered archs, and their ``init_weights`` entries have known keys and
    name existing layers."""
    for net in ('network_g', 'network_t'):
        init = split_init(opt.get(net) or {})[1]
        try:
            if net in opt:
                registered_class(ARCH_REGISTRY, opt[net], net)
                if loads_own_weights(opt[net]):
                    check_self_loading(opt, net, init)
            check_init(init, net)
            if any('modules' in entry for entry in init):  # layer names need the network itself
                build_network(opt[net], net)
        except ValueError as err:
            raise OptionError(str(err)) from err


def check_self_loading(opt: dict[str, Any], net: str, init: list[dict[str, Any]]) -> None:
    """A network that reads its trained weights from its own ``checkpoint`` (SpandrelNet) takes no
    ``init_weights`` (they would overwrite those weights) and, as ``network_g``, no ``path.pretrain_network_g``:
    BasicSR's SRModel would load that file into it as a state dict as well, and its keys lack the ``model.``
    prefix of the wrapped network's."""
    arch = opt[net]['type']
    if init:
        raise ValueError(f'{net}.init_weights: {arch} reads its trained weights from its checkpoint, and '
                         f'init_weights would overwrite them. Fix: remove {net}.init_weights')
    checkpoint = (opt.get('path') or {}).get('pretrain_network_g')
    if net == 'network_g' and checkpoint:
        raise ValueError(f'path.pretrain_network_g: network_g is {arch}, which reads its weights from its own '
                         'checkpoint option, and BasicSR\'s model would also load this file into it as a state dict '
                         f'(which does not fit). Fix: network_g: {{type: {arch}, checkpoint: {checkpoint}}} and no '
                         'path.pretrain_network_g')


def check_kd_model(opt: dict[str, Any]) -> KDConfig:
    """Everything ``KDModel`` would reject, checked on CPU with untrained networks before the run
    starts: the options (:class:`KDConfig`, the parse the model makes too), layer names, scales, adapter
    shapes and the teacher checkpoint's fit (last: the earlier checks name the likelier cause of a
    mismatch). Returns the parsed options.

    The untrained networks and the probe batch draw from the run's seeded random stream, as the model's
    own construction does next."""
    config = KDConfig.from_options(opt, torch.device('cuda' if opt.get('num_gpu') else 'cpu'))
    student = build_network(opt['network_g'], 'network_g')
    teacher = build_network(config.teacher.arch, 'network_t')  # a self-loading arch checks its file as it loads
    losses = config.losses
    feature = construct(LOSS_REGISTRY, losses['feature_opt'], 'train.feature_opt') if 'feature_opt' in losses else None
    forward = construct(LOSS_REGISTRY, losses['forward_opt'], 'train.forward_opt') if 'forward_opt' in losses else None
    wire(student, teacher, opt['scale'], feature, forward, probe_input(opt))
    if config.teacher.strict and not loads_own_weights(teacher):
        mismatch = state_dict_mismatch(config.teacher.params, teacher)
        if mismatch:
            raise ValueError(f'path.pretrain_network_t does not fit network_t ({opt["network_t"].get("type")}): '
                             f'{mismatch}. Fix: use the checkpoint trained with this network_t, or set network_t to '
                             'the arch the checkpoint was trained with')
    return config


def check_options(opt: dict[str, Any]) -> None:
    """All checks that apply to the parsed options of a train or test run."""
    check_num_gpu(opt)
    check_network_init(opt)
    for phase, dataset in opt.get('datasets', {}).items():
        if dataset.get('type') in ('PairedImageDataset', 'KDPairedImageDataset'):
            lq = check_paired_dataset(phase, dataset, opt.get('scale', dataset.get('scale', 1)))
            check_window_multiple(opt, phase, lq)
        elif dataset.get('type') == 'MultiTaskKDDataset':
            try:
                tasks = task_options(dataset)
            except ValueError as err:
                raise OptionError(str(err)) from err
            for task, task_set in tasks.items():
                check_paired_dataset(f'{phase}.tasks.{task}', dict(task_set, phase=dataset.get('phase')),
                                     opt.get('scale', dataset.get('scale', 1)))
            check_window_multiple(opt, phase, {})
        elif dataset.get('type') == MIXED:
            check_mixed_dataset(phase, dataset, opt.get('scale', dataset.get('scale', 1)))
            check_window_multiple(opt, phase, {})
    if not opt.get('is_train'):
        return
    try:
        config = check_kd_model(opt) if is_kd_model(opt.get('model_type')) else None
        check_label_set(opt, *((config.teacher.sha256, config.teacher.param_key) if config else ()))
    except ValueError as err:
        raise OptionError(str(err)) from err


def check_output_folder(folder: str) -> None:
    """The run's output folder can be created and written: its nearest existing ancestor is a
    writable directory (a file in the way, or a read-only folder, fails before anything is written)."""
    current = folder
    while not osp.exists(current):
        parent = osp.dirname(current)
        if parent == current:
            break
        current = parent
    if not osp.isdir(current) or not os.access(current, os.W_OK):
        what = 'is not a folder' if not osp.isdir(current) else 'is not writable'
        raise OptionError(f'cannot create the output folder {folder!r}: {current!r} {what}. Fix: move or remove '
                          f'{current!r}, or make it a writable folder')


def check_resume_files(opt: dict[str, Any], state_path: str) -> None:
    """Every checkpoint a resumed run reloads from its own experiment exists: ``net_<x>_<iter>.pth`` of
    each saved network and, for a KD run with adapters, ``net_adapters_<iter>.pth``. Without this, a
    missing file would restart that network from scratch with the saved optimizer."""
    state = load_weights_only(state_path, 'path.resume_state')
    needed = dict(resumed_networks(opt, state['iter']))
    if is_kd_model(opt.get('model_type')) and uses_adapters(opt.get('train') or {}):  # resumed adapters win
        needed['the KD adapters'] = adapter_checkpoint(opt, state_path)
    for what, path in needed.items():
        if not osp.isfile(path):
            raise OptionError(missing_checkpoint_error(state_path, path, what))


def checked_parse_options(parse_options: Callable) -> Callable:
    """Wrap BasicSR's ``parse_options`` so that :func:`check_options` runs right after it.

    It also records the backend of the process group the launcher started (``opt['dist_backend']``:
    ``nccl``, ``gloo`` or None without a launcher): BasicSR logs the options, so the run's log says
    which backend really ran."""

    @functools.wraps(parse_options)
    def wrapper(root_path: str, is_train: bool = True):
        try:
            opt, args = parse_options(root_path, is_train=is_train)
        except FileNotFoundError as err:  # BasicSR's parse_options reads only the -opt file
            raise OptionError(f'-opt {err.filename}: no such options file. Fix: the path of a YAML options file, '
                              'relative to the current folder (e.g. options/train/...)') from err
        opt['dist_backend'] = torch.distributed.get_backend() if torch.distributed.is_initialized() else None
        try:
            import_custom_modules(opt)  # the file's own archs, losses and models, before anything is checked
        except ValueError as err:
            raise OptionError(str(err)) from err
        check_options(opt)
        resume = None
        if getattr(args, 'auto_resume', False):
            resume = latest_training_state(opt['path']['training_states'])
        try:
            check_checkpoint_options(opt, resume)
        except ValueError as err:
            raise OptionError(str(err)) from err
        state = resume or opt['path'].get('resume_state')
        if state and opt.get('is_train'):
            check_resume_files(opt, state)
        check_output_folder(opt['path'].get('experiments_root') or opt['path'].get('results_root'))
        return opt, args

    return wrapper
