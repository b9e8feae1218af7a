"""Cached teacher labels on disk: building a label set once, its manifest, and the checks a run makes.

A label set is a folder of 8-bit PNGs, one per training image, named after the GT image's stem (after the LR
image's in a set that has no GT, an LR-only source of ``MixedKDDataset``), with ``manifest.json``; ``--lmdb``
adds ``<folder>.lmdb`` (BasicSR's LMDB, keys = stems) and ``--npy`` adds ``<folder>.npy`` (every label in one
uncompressed file, read crop-only by memory map: :mod:`kd_plugin.data.label_arrays`), each with the same
manifest inside. ``datasets.train.dataroot_teacher`` of a ``KDPairedImageDataset`` (or of a source of a
``MixedKDDataset``) points at any of them.

The manifest says what made the labels (each teacher's arch, checkpoint SHA-256 and parameter key, the
scale, the ensemble, tiling, precision) and from which images (their names, whether the set has GT: ``gt``,
and the identity of each LR image: :mod:`kd_plugin.data.lr_identity`), so that a run can refuse labels that do
not belong to its options before it trains. One build at a time writes a label set (a lock beside it,
``<folder>.lock``).
"""
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from os import path as osp
from typing import Any

import numpy as np
import torch
from basicsr.data.data_util import paired_paths_from_folder, paired_paths_from_lmdb, paired_paths_from_meta_info_file
from basicsr.utils import imfrombytes, img2tensor
from PIL import Image

from kd_plugin.checkpoint_io import sha256
from kd_plugin.data import lr_identity
from kd_plugin.data.image_io import name_difference, write_image
from kd_plugin.data.kd_paired_dataset import LABEL_ROOT
from kd_plugin.data.label_arrays import (
    ARRAYS_SUFFIX,
    INDEX_FILE,
    LabelArrays,
    holds_arrays,
    missing_store_error,
    old_store_error,
    write_label_arrays,
)
from kd_plugin.data.lmdb_builder import build_lmdb
from kd_plugin.data.lr_identity import file_client, pair_name, stem
from kd_plugin.data.lr_only_dataset import has_gt, lr_only_paths
from kd_plugin.data.mixed_kd_dataset import MIXED, source_options
from kd_plugin.data.multi_task_dataset import task_options
from kd_plugin.distill.teacher_labels import ENSEMBLES, TeacherRunner, label
from kd_plugin.file_lock import exclusive
from kd_plugin.model_loading import TOP_LEVEL, ModelSpec, load_model, parse_model
from kd_plugin.models.kd_config import precision_name, task_teacher, teacher_dtype
from kd_plugin.models.kd_model import is_kd_model

MANIFEST = 'manifest.json'
#: Manifest fields that must agree for a partial label set to be continued (or a finished one reused).
_SIGNATURE = ('teachers', 'scale', 'ensemble', 'tile', 'tile_overlap', 'precision', 'lr_source', 'names',
              'lr_sha256')
#: Fields a manifest written before kd_plugin recorded them lacks; such a set is rebuilt.
_RECORDED_SINCE = ('lr_sha256', 'lr_files')


@dataclass
class Teacher:
    """One teacher of a label set: its arch options, checkpoint, the checkpoint entry its weights came from
    (``params``, ``params_ema`` or ``(top level)``) and the forward that labels with it."""
    arch: dict[str, Any]
    checkpoint: str
    forward: Callable[[torch.Tensor], torch.Tensor]
    param_key: str = 'params'


def teacher_specs(opt: dict[str, Any], specs: list[str] | None) -> list[ModelSpec]:
    """Each ``OPTIONS.yml[@CHECKPOINT.pth]`` of ``specs`` parsed, else the KD file's own ``network_t`` with
    ``path.pretrain_network_t``."""
    if specs:
        return [parse_model(spec) for spec in specs]
    return [ModelSpec('teacher', dict(opt['network_t']), opt['path']['pretrain_network_t'],
                      opt['path'].get('param_key_t'), opt['scale'])]


def load_teachers(opt: dict[str, Any], specs: list[str] | None, device: torch.device,
                  fp32: bool) -> tuple[list[Teacher], str]:
    """The teachers of a label set for KD options ``opt``: each ``OPTIONS.yml[@CHECKPOINT.pth]`` of ``specs``,
    else the file's ``network_t`` with ``path.pretrain_network_t``; each on ``device`` in the file's
    ``train.teacher`` fast path (fp32 with ``fp32``). Returns them and the precision's name."""
    if not is_kd_model(opt.get('model_type')) or 'network_t' not in opt:
        raise ValueError('not a KD options file (model_type: KDModel or a subclass of it, with network_t)')
    teacher_opt = opt['train'].get('teacher') or {}
    dtype = None if fp32 else teacher_dtype(teacher_opt, device)
    teachers = []
    for spec in teacher_specs(opt, specs):
        if spec.upscale not in (None, opt['scale']):
            raise ValueError(f'--teacher {spec.source}: upscales x{spec.upscale}, the options file is x{opt["scale"]}')
        runner = TeacherRunner(load_model(spec).to(device), dtype, bool(teacher_opt.get('channels_last')))
        teachers.append(Teacher(dict(spec.arch), spec.checkpoint, runner, spec.loaded_key))
    return teachers, precision_name(dtype)


def training_pairs(train_set: dict[str, Any]) -> list[dict[str, str]]:
    """The training set's pairs as BasicSR's ``PairedImageDataset`` lists them: ``[{'lq_path', 'gt_path'}]``
    (file paths, or LMDB keys with ``io_backend: lmdb``); for a set without GT (``dataroot_lq`` only), its LR
    images as ``LabelledLRDataset`` lists them, ``[{'lq_path'}]``. Name each with
    :func:`~kd_plugin.data.lr_identity.pair_name`."""
    if not has_gt(train_set):
        return [{'lq_path': path} for path in lr_only_paths(train_set)]
    folders = [train_set['dataroot_lq'], train_set['dataroot_gt']]
    tmpl = train_set.get('filename_tmpl', '{}')
    if train_set['io_backend']['type'] == 'lmdb':
        return paired_paths_from_lmdb(folders, ['lq', 'gt'])
    if train_set.get('meta_info_file'):
        return paired_paths_from_meta_info_file(folders, ['lq', 'gt'], train_set['meta_info_file'], tmpl)
    return paired_paths_from_folder(folders, ['lq', 'gt'], tmpl)


def default_output(train_set: dict[str, Any], teachers: list[Teacher], ensemble: str) -> str:
    """``<folder of dataroot_gt>/labels_<teacher checkpoint stems>_<ensemble>`` (of ``dataroot_lq`` for a set
    without GT)."""
    stems = '+'.join(stem(t.checkpoint) for t in teachers)
    images = train_set['dataroot_gt'] if has_gt(train_set) else train_set['dataroot_lq']
    return osp.join(osp.dirname(osp.normpath(images)), f'labels_{stems}_{ensemble}')


def label_jobs(opt: dict[str, Any]) -> dict[str | None, dict[str, Any]]:
    """The label sets a KD options file asks for: ``{None: opt}`` for one training set; for a multi-task set
    ``{task: opt}`` with that task's paired set as ``datasets.train`` and its own teacher checkpoint (and
    ``param_key_t``) as ``path.pretrain_network_t``; for a ``MixedKDDataset`` ``{source: opt}`` with that source's
    set (paired, or LR-only) as ``datasets.train``, all labelled by the run's teacher."""
    train_set = (opt.get('datasets') or {}).get('train') or {}
    if train_set.get('type') == MIXED:
        return {name: dict(opt, datasets={**opt['datasets'], 'train': dict(source, type='KDPairedImageDataset')
                                          if has_gt(source) else source})
                for name, source in source_options(train_set).items()}
    if train_set.get('type') != 'MultiTaskKDDataset':
        return {None: opt}
    jobs = {}
    for name, task in task_options(train_set).items():
        own = train_set['tasks'][name]
        path = dict(opt['path'])
        if own.get('pretrain_network_t'):
            path.update(pretrain_network_t=own['pretrain_network_t'], param_key_t=own.get('param_key_t'))
        train = dict(task, type='KDPairedImageDataset')
        jobs[name] = dict(opt, path=path, datasets={**opt['datasets'], 'train': train})
    return jobs


def named_output(label_root: str | None) -> str | None:
    """The label set folder (PNG) behind a ``dataroot_teacher`` that names its ``.npy`` or ``.lmdb`` store (or the
    folder itself)."""
    if not label_root:
        return None
    for suffix in (ARRAYS_SUFFIX, '.lmdb'):
        if osp.normpath(label_root).endswith(suffix):
            return osp.normpath(label_root)[:-len(suffix)]
    return osp.normpath(label_root)


def ensemble_in_name(label_root: str) -> str:
    """The ensemble that label set ``label_root`` names, ``labels_<stems>_<ensemble>`` as ``default_output``
    writes it (also as ``.npy``/``.lmdb``), so that a set can be built for the name a file already gives it."""
    name = osp.basename(osp.normpath(label_root))
    for suffix in (ARRAYS_SUFFIX, '.lmdb'):
        name = name.removesuffix(suffix)
    ensemble = name.rsplit('_', 1)[-1]
    if not name.startswith('labels_') or ensemble not in ENSEMBLES:
        raise ValueError(f'{LABEL_ROOT} {label_root}: the name does not say which ensemble built it; name the set '
                         f'labels_<teacher>_<ensemble> with ensemble one of {", ".join(ENSEMBLES)}, as '
                         '"prepare teacher-labels" does')
    return ensemble


def read_manifest(root: str) -> dict[str, Any] | None:
    path = osp.join(root, MANIFEST)
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def build_seconds(root: str) -> float:
    """How long building the finished label set ``root`` took, from its manifest (``ValueError`` naming the fix
    when it has none)."""
    manifest = read_manifest(root)
    if manifest is None or 'seconds' not in manifest:
        raise ValueError(f'{LABEL_ROOT} {root!r}: no finished label set there (its manifest.json records the build '
                         'time). Fix: python -m kd_plugin.cli.prepare teacher-labels -opt <the options file>')
    return float(manifest['seconds'])


def _write_manifest(root: str, manifest: dict[str, Any]) -> None:
    tmp = osp.join(root, MANIFEST + '.tmp')
    with open(tmp, 'w') as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, osp.join(root, MANIFEST))


def build_label_set(train_set: dict[str, Any], scale: int, teachers: list[Teacher], ensemble: str, output: str,
                    device: torch.device, precision: str, tile: int = 0, tile_overlap: int = 16,
                    lmdb: bool = False, overwrite: bool = False, npy: bool = False,
                    progress: Callable[[Iterable], Iterable] = lambda x: x, reuse: bool = False) -> dict[str, Any]:
    """Label every whole LR image of ``train_set`` and write the label set to ``output`` (and
    ``<output>.lmdb`` with ``lmdb``, ``<output>.npy`` with ``npy``); returns the manifest.

    One build at a time: a second process building the same ``output`` waits for the first (lock
    ``<output>.lock``), then finds its result. Labels go to ``<output>.partial`` first, each PNG under a
    temporary name of this process then renamed, so an interrupted build continues where it stopped (same
    teachers, settings and LR images, else an error), and the set is marked complete only once every label is
    there. A finished ``output`` is never touched unless ``overwrite``, and then only replaced once the new set
    is complete; with ``reuse``, a finished set of the same teachers, settings and LR images that has every
    store asked for is returned as it is (without ``reuse``, that is an error, as any finished ``output`` is).
    A finished set that lacks a store asked for (``lmdb``, ``npy``) gets it from its PNGs, without labelling
    again. Everything that can be refused is refused before the first label is written."""
    os.makedirs(osp.dirname(osp.abspath(output)), exist_ok=True)
    with exclusive(output + '.lock', f'teacher labels {output}'):
        return _build_locked(train_set, scale, teachers, ensemble, output, device, precision, tile, tile_overlap,
                             lmdb, overwrite, npy, progress, reuse)


def _build_locked(train_set: dict[str, Any], scale: int, teachers: list[Teacher], ensemble: str, output: str,
                  device: torch.device, precision: str, tile: int, tile_overlap: int, lmdb: bool, overwrite: bool,
                  npy: bool, progress: Callable[[Iterable], Iterable], reuse: bool) -> dict[str, Any]:
    pairs = training_pairs(train_set)
    manifest = {
        'teachers': [{'arch': t.arch, 'checkpoint': t.checkpoint, 'sha256': sha256(t.checkpoint),
                      'param_key': t.param_key} for t in teachers],
        'scale': scale, 'ensemble': ensemble, 'tile': tile, 'tile_overlap': tile_overlap, 'precision': precision,
        'lr_source': {'dataroot_lq': train_set['dataroot_lq'], 'io_backend': train_set['io_backend']['type']},
        'count': len(pairs), 'names': sorted(pair_name(p) for p in pairs), 'gt': has_gt(train_set),
        **lr_identity.record(train_set, pairs),
    }
    lmdb_path, arrays_path = output + '.lmdb', output + ARRAYS_SUFFIX
    stores = [path for path, wanted in ((lmdb_path, lmdb), (arrays_path, npy)) if wanted]
    finished = read_manifest(output) if osp.isdir(output) else None
    same = (not overwrite and finished and finished.get('complete')
            and all(finished.get(k) == manifest[k] for k in _SIGNATURE))
    if same and reuse and all(osp.exists(path) for path in stores):
        return finished
    if same and stores and not any(osp.exists(path) for path in stores):
        _write_stores(output, stores, finished['names'], overwrite)
        return finished
    for done in [output] + stores:
        if osp.exists(done) and not overwrite:
            raise FileExistsError(f'--output: {done} already exists (a finished label set is kept). Fix: pass '
                                  '--overwrite to replace it once the new one is complete, or choose another --output')
    partial = output + '.partial'
    earlier = read_manifest(partial)
    if earlier is not None:
        differ = [k for k in _SIGNATURE if earlier.get(k) != manifest[k]]
        if differ:
            raise ValueError(f'{partial} holds an unfinished label set made with other {", ".join(differ)}. Fix: '
                             'delete that folder, or rerun with the same options')
    os.makedirs(partial, exist_ok=True)
    _write_manifest(partial, dict(manifest, complete=False))

    start = time.time()
    client = file_client(train_set, 'lq')
    for pair in progress(pairs):
        target = osp.join(partial, pair_name(pair) + '.png')
        if osp.isfile(target):
            continue
        lq = img2tensor(imfrombytes(client.get(pair['lq_path'], 'lq'), float32=True), bgr2rgb=True, float32=True)
        out = label([t.forward for t in teachers], lq[None].to(device), scale, ensemble, tile, tile_overlap)[0]
        img = (out.clamp(0, 1).cpu().permute(1, 2, 0).numpy()[:, :, ::-1] * 255.0).round().astype(np.uint8)
        tmp = target[:-len('.png')] + f'.tmp{os.getpid()}.png'
        write_image(tmp, img)
        os.replace(tmp, target)
    missing = [name for name in manifest['names'] if not osp.isfile(osp.join(partial, name + '.png'))]
    if missing:
        raise RuntimeError(f'{partial}: {len(missing)} labels are missing after the build (e.g. {missing[:3]}), so it '
                           'is not marked complete. Fix: rerun the same command, which labels only those')
    manifest.update(complete=True, seconds=round(time.time() - start + (earlier or {}).get('seconds', 0), 1),
                    device=str(device))
    _write_manifest(partial, manifest)
    if osp.exists(output):
        shutil.rmtree(output)
    os.replace(partial, output)
    _write_stores(output, stores, manifest['names'], overwrite)
    return manifest


def _refresh_lr_files(root: str, facts: dict[str, list[int]]) -> None:
    """Record the LR files' current size and time in the manifest of label set ``root`` (its pixels were just found
    unchanged), under the set's build lock. Where the set cannot be written (a read-only copy) it stays as it is:
    the check is only slower."""
    try:
        with exclusive(named_output(root) + '.lock', f'teacher labels {named_output(root)}'):
            manifest = read_manifest(root)
            if manifest is not None:
                _write_manifest(root, dict(manifest, lr_files=facts))
    except OSError:
        pass


def _write_stores(output: str, stores: list[str], names: list[str], overwrite: bool) -> None:
    """The finished PNG label set ``output`` copied into each of ``stores`` (``.lmdb``, ``.npy``)."""
    for path in stores:
        if path.endswith('.lmdb'):
            build_lmdb(output, path, overwrite=overwrite)
            shutil.copy(osp.join(output, MANIFEST), osp.join(path, MANIFEST))
        else:
            write_label_arrays(output, path, names, osp.join(output, MANIFEST))


# ----------------------------------------------------------------------------- checks before a run
def _sizes(root: str, names: list[str], backend: str) -> dict[str, tuple[int, int]]:
    """``{stem: (width, height)}`` of the images ``names`` (stems) in a folder, an array store (its index) or
    an LMDB (its meta_info)."""
    if holds_arrays(root):
        return LabelArrays(root).sizes()
    if backend == 'lmdb' or root.endswith('.lmdb'):
        sizes = {}
        with open(osp.join(root, 'meta_info.txt')) as f:
            for line in f:
                name, shape = line.split()[:2]
                h, w = (int(v) for v in shape.strip('()').split(',')[:2])
                sizes[stem(name)] = (w, h)
        return sizes
    files = {stem(n): n for n in os.listdir(root)}
    sizes = {}
    for name in names:
        if name in files:
            with Image.open(osp.join(root, files[name])) as im:
                sizes[name] = im.size
    return sizes


def check_label_set(opt: dict[str, Any], teacher_sha256: str | None = None, teacher_key: str | None = None) -> None:
    """Refuse, naming the fix, a ``dataroot_teacher`` that does not belong to this run: on a model that is not
    ``KDModel`` (or a registered subclass of it); a PNG folder or LMDB that the set's ``io_backend`` cannot read
    (an array store suits any); a label set without a finished manifest, or one written before the manifest
    recorded the LR images; one made at another scale, by another teacher (``teacher_sha256``, the SHA-256 of
    ``path.pretrain_network_t``) or from another entry of its checkpoint (``teacher_key``: ``params``,
    ``params_ema`` or ``(top level)``), for other images, or from other LR images than ``dataroot_lq`` holds;
    a missing label or one of another size than its GT (than its LR image times the scale, in a set without GT).

    A ``MultiTaskKDDataset`` has each task's labels checked the same way against the task's own teacher
    (``tasks.<task>.pretrain_network_t``, else the run's), the errors naming the task; a ``MixedKDDataset`` each
    source's against the run's teacher, the errors naming the source."""
    train_set = (opt.get('datasets') or {}).get('train') or {}
    if train_set.get('type') == MIXED:
        sources = source_options(train_set)
        if any(source.get(LABEL_ROOT) for source in sources.values()):
            _require_kd_model(opt, f'datasets.train.sources.*.{LABEL_ROOT}')
        for name, source in sources.items():
            if source.get(LABEL_ROOT):
                _check_labels(source, opt['scale'], f'datasets.train.sources.{name}', teacher_sha256, teacher_key,
                              'path.pretrain_network_t', opt['path'].get('pretrain_network_t'))
        return
    if train_set.get('type') == 'MultiTaskKDDataset':
        tasks = task_options(train_set)
        if any(task.get(LABEL_ROOT) for task in tasks.values()):
            _require_kd_model(opt, f'datasets.train.tasks.*.{LABEL_ROOT}')
        elif is_kd_model(opt.get('model_type')):
            _refuse_other_online_teachers(opt, teacher_sha256, teacher_key)
        for name, task in tasks.items():
            if not task.get(LABEL_ROOT):
                continue
            own = train_set['tasks'][name]
            if own.get('pretrain_network_t'):
                sha, key = task_teacher_identity(own['pretrain_network_t'], own.get('param_key_t'),
                                                 f'datasets.train.tasks.{name}.pretrain_network_t')
                where = f'datasets.train.tasks.{name}.pretrain_network_t'
            else:
                sha, key, where = teacher_sha256, teacher_key, 'path.pretrain_network_t'
            _check_labels(dict(task, type='KDPairedImageDataset'), opt['scale'], f'datasets.train.tasks.{name}',
                          sha, key, where, own.get('pretrain_network_t') or opt['path'].get('pretrain_network_t'))
        return
    if not train_set.get(LABEL_ROOT):
        return
    _require_kd_model(opt, f'datasets.train.{LABEL_ROOT}')
    if train_set.get('type') != 'KDPairedImageDataset':
        raise ValueError(f'datasets.train.{LABEL_ROOT}: only KDPairedImageDataset reads labels; type is '
                         f'{train_set.get("type")!r}. Fix: type: KDPairedImageDataset')
    _check_labels(train_set, opt['scale'], 'datasets.train', teacher_sha256, teacher_key, 'path.pretrain_network_t',
                  opt['path'].get('pretrain_network_t'))


def _refuse_other_online_teachers(opt: dict[str, Any], teacher_sha256: str | None, teacher_key: str | None) -> None:
    """A multi-task set without labels is taught online by the run's one teacher, ``path.pretrain_network_t``, on
    every sample: refuse a task that names a teacher of its own (another checkpoint or entry), which would silently
    not teach it."""
    if not teacher_sha256:
        return
    for name, own in opt['datasets']['train']['tasks'].items():
        if not own.get('pretrain_network_t'):
            continue
        option = f'datasets.train.tasks.{name}.pretrain_network_t'
        if task_teacher_identity(own['pretrain_network_t'], own.get('param_key_t'), option) != (
                teacher_sha256, teacher_key or TOP_LEVEL):
            raise ValueError(f'{option}: task {name} names its own teacher ({own["pretrain_network_t"]!r}) and has no '
                             f'{LABEL_ROOT}, and without labels KDModel runs one teacher online on every training '
                             f'sample: path.pretrain_network_t ({opt["path"].get("pretrain_network_t")!r}). Task '
                             f'{name} would be taught by that teacher, not its own. Fix: build every task\'s labels '
                             '(python -m kd_plugin.cli.prepare teacher-labels -opt <this options file>) and set their '
                             f'{LABEL_ROOT}, or remove {option} to teach it with path.pretrain_network_t')


def task_teacher_identity(checkpoint: str, param_key: str | None, option: str) -> tuple[str, str]:
    """SHA-256 and the checkpoint entry the weights come from (as ``KDModel`` would pick it) of a task's teacher."""
    digest, _, key = task_teacher(checkpoint, param_key, option)
    return digest, key or TOP_LEVEL


def _require_kd_model(opt: dict[str, Any], option: str) -> None:
    if not is_kd_model(opt.get('model_type')):
        raise ValueError(f'{option}: teacher labels are read by KDModel (or a model registered as a subclass of it) '
                         f'only, and model_type is {opt.get("model_type")!r}. Fix: model_type: KDModel, or remove '
                         f'{LABEL_ROOT}')


def _check_labels(train_set: dict[str, Any], scale: int, where: str, teacher_sha256: str | None,
                  teacher_key: str | None, teacher_option: str, teacher_path: str | None) -> None:
    """The checks of :func:`check_label_set` on one set ``train_set``, paired or without GT (``where``: its
    options' path)."""
    root = train_set[LABEL_ROOT]
    option = f'{where}.{LABEL_ROOT}'
    fix = 'Fix: python -m kd_plugin.cli.prepare teacher-labels -opt <this options file>'
    backend = train_set['io_backend']['type']
    in_lmdb = osp.normpath(root).endswith('.lmdb')
    if not holds_arrays(root) and in_lmdb != (backend == 'lmdb'):
        kind, reader = ('an LMDB', 'lmdb') if in_lmdb else ('a PNG folder', 'disk')
        raise ValueError(f'{option}: {root!r} is {kind}, which is read through io_backend '
                         f'{reader}, and this set\'s io_backend is {backend}. Fix: point it at the label set\'s .npy '
                         'folder (prepare teacher-labels --npy; read with any io_backend, and the fastest), or at '
                         f'its {"folder" if in_lmdb else ".lmdb"}')
    if not osp.exists(root):
        raise ValueError(f'{option}: {missing_store_error(root)}')
    manifest = read_manifest(root)
    if manifest is None or not manifest.get('complete'):
        state = 'has no manifest.json' if manifest is None else 'is unfinished'
        raise ValueError(f'{option}: {root!r} {state}. {fix}')
    if holds_arrays(root) and not osp.isfile(osp.join(root, INDEX_FILE)):
        raise ValueError(f'{option}: {old_store_error(root)}')
    if holds_arrays(root):
        short = LabelArrays(root).truncation()
        if short:
            raise ValueError(f'{option}: the label array store {root!r} is incomplete: {short}. Fix: copy it again '
                             f'whole, or remove {root!r} and run python -m kd_plugin.cli.prepare teacher-labels -opt '
                             '<this options file> --npy, which rebuilds the arrays from the PNG labels beside it '
                             'without running the teacher')
    if any(key not in manifest for key in _RECORDED_SINCE) or any('param_key' not in t for t in manifest['teachers']):
        raise ValueError(f'{option}: {root!r} was built by an earlier kd_plugin, whose manifest '
                         'does not record which LR images and which checkpoint entry made the labels. '
                         f'{fix} --overwrite')
    if manifest['scale'] != scale:
        raise ValueError(f'{option}: the labels in {root!r} are x{manifest["scale"]}, this run is x{scale}. {fix}')
    if teacher_sha256:
        made_by = [t for t in manifest['teachers'] if t['sha256'] == teacher_sha256]
        if not made_by:
            raise ValueError(f'{option}: the labels in {root!r} were made by '
                             f'{", ".join(t["checkpoint"] for t in manifest["teachers"])} (SHA-256 '
                             f'{", ".join(sorted(t["sha256"][:12] for t in manifest["teachers"]))}...), not by '
                             f'{teacher_option} {teacher_path!r}. {fix}')
        key = teacher_key or TOP_LEVEL
        if all(t['param_key'] != key for t in made_by):
            raise ValueError(f'{option}: the labels in {root!r} were made from the checkpoint\'s '
                             f'{made_by[0]["param_key"]!r} weights, and this run\'s teacher loads {key!r} '
                             f'({teacher_option.replace("pretrain_network_t", "param_key_t")}). Fix: set '
                             f'{teacher_option.replace("pretrain_network_t", "param_key_t")}: '
                             f'{made_by[0]["param_key"]}, or rebuild: {fix.removeprefix("Fix: ")} --overwrite')
    pairs = training_pairs(train_set)
    names = sorted(pair_name(p) for p in pairs)
    images = 'dataroot_gt' if has_gt(train_set) else 'dataroot_lq'  # what the labels are named after
    if names != manifest['names']:
        raise ValueError(f'{option}: the labels in {root!r} are for other images than '
                         f'{images} ({name_difference(names, manifest["names"], (images, "the labels"))}). {fix}')
    other = lr_identity.changed(train_set, pairs, manifest, lambda facts: _refresh_lr_files(root, facts))
    if other:
        raise ValueError(f'{option}: {len(other)} of the {len(names)} LR images in dataroot_lq '
                         f'{train_set["dataroot_lq"]!r} are not those the labels in {root!r} were made from (e.g. '
                         f'{other[:3]}; the labels were made from {manifest["lr_source"]["dataroot_lq"]!r}), so the '
                         f'student would learn labels of inputs it never sees. {fix} --overwrite')
    label_sizes = _sizes(root, names, backend)
    if has_gt(train_set):
        expected, what = _sizes(train_set['dataroot_gt'], names, backend), 'its GT'
    else:  # no GT to compare with: the teacher's output on the whole LR image is the LR image times the scale
        lr_sizes = _sizes(train_set['dataroot_lq'], names, backend)
        expected = {name: (w * scale, h * scale) for name, (w, h) in lr_sizes.items()}
        what = f'its LR image times the scale {scale}'
    for name in names:
        if name not in label_sizes:
            raise ValueError(f'{option}: no label for {name!r} in {root!r}. {fix} --overwrite')
        if label_sizes[name] != expected.get(name):
            raise ValueError(f'{option}: label {name!r} is {label_sizes[name][0]}x'
                             f'{label_sizes[name][1]}, {what} {expected.get(name)[0]}x{expected.get(name)[1]}. '
                             f'{fix} --overwrite')
