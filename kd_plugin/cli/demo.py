"""The no-download distillation demo: ``python -m kd_plugin.cli.demo`` (``make demo``).

1. builds the paired photo set from scikit-image's bundled photographs (PNG folders and LMDB);
2. checks the KD file's teacher, the shipped ``checkpoints/HDRNet_T91_BSD400_x4_6k.pth``, against its SHA-256;
   or, with ``--teacher FILE`` (``make demo TEACHER=FILE``), takes a published x4 model file as the teacher instead
   (IMDN, RLFN or any architecture spandrel recognises: :mod:`kd_plugin.archs.published`), its labels stored
   under its own name;
3. runs the teacher on every whole training image (fp32; the ensemble the KD file's label folder names:
   one pass, ``_none``, as x8 labels would cost 8 passes, as long as the KD training) and stores the labels
   (``prepare teacher-labels``' code; built once, reused by later demos, their build time always counted);
4. trains DeformableHDRNet with KD from those labels, then alone for the same time: the KD run's
   measured training time plus the label-building time, at the student's timed cost per whole
   iteration; both through ``kd_plugin/cli/train.py -opt`` (BasicSR's own pipeline; progress bar and
   its log lines shown);
5. scores bicubic, both students and the teacher on the validation photos and draws crops
   side by side (bicubic | student | KD student | teacher | ground truth).

Outputs go to ``results/<tag>/``; an earlier ``results/<tag>`` is archived (renamed with a
timestamp, as BasicSR does with ``experiments/``), never overwritten.
"""
import copy
import json
import os
import re
import sys
import time
from os import path as osp

import cv2
import numpy as np
from basicsr.utils import mkdir_and_rename
from tqdm import tqdm

from kd_plugin.ablation.equal_time import equal_time_record, iterations_in
from kd_plugin.archs.published import network_for_file
from kd_plugin.benchmark.quality import bicubic_upscaler, evaluate, load_test_set
from kd_plugin.checkpoint_io import sha256, verify_listed_sha256
from kd_plugin.cli.common import Parser, tool
from kd_plugin.data.bundled_photos import prepare_photos
from kd_plugin.data.kd_paired_dataset import LABEL_ROOT
from kd_plugin.data.label_arrays import ARRAYS_SUFFIX
from kd_plugin.data.label_cache import build_label_set, ensemble_in_name, load_teachers, read_manifest
from kd_plugin.device import pick_device
from kd_plugin.model_loading import ModelSpec, load_model, network_upscaler
from kd_plugin.runs import (
    SHA256SUMS,
    dataset_from_project_root,
    experiment_dir,
    from_project_root,
    latest_weights,
    launch_train,
    load_options,
    project_root,
    shipped,
    training_seconds,
    with_total_iter,
    write_options,
)

STUDENT_OPT = osp.join('options', 'train', 'DeformableHDRNet', 'train_DeformableHDRNet_photos_x4.yml')
KD_OPT = osp.join('options', 'train', 'KD', 'train_KD_HDRNet_to_DeformableHDRNet_photos_x4_labels.yml')
STEPS = 5


def check_teacher(kd_opt: dict) -> str:
    """The KD file's teacher checkpoint (a shipped file), after checking it against ``checkpoints/SHA256SUMS``."""
    return verify_listed_sha256(shipped(kd_opt['path']['pretrain_network_t']), shipped(SHA256SUMS))


def with_teacher_file(kd_opt: dict, checkpoint: str) -> dict:
    """``kd_opt`` with the model file ``checkpoint`` as its teacher: ``network_t`` as the file's weights say
    (:func:`~kd_plugin.archs.published.network_for_file`; ``ValueError`` naming ``--teacher``), its weights read
    as the authors saved them, and labels of their own, ``labels_<file name>_<ensemble>`` beside the KD file's."""
    checkpoint = osp.abspath(checkpoint)
    network = network_for_file(checkpoint, kd_opt['scale'])
    train = dict(kd_opt['datasets']['train'])
    stem = osp.splitext(osp.basename(checkpoint))[0]
    label_dir = osp.dirname(train[LABEL_ROOT])
    train[LABEL_ROOT] = osp.join(label_dir, f'labels_{stem}_{ensemble_in_name(train[LABEL_ROOT])}{ARRAYS_SUFFIX}')
    return dict(kd_opt, network_t=network, datasets=dict(kd_opt['datasets'], train=train),
                path=dict(kd_opt['path'], pretrain_network_t=checkpoint, param_key_t=None))


def teacher_labels(kd_opt: dict, teacher: str) -> tuple[str, float]:
    """Step 3: the KD file's label set (``dataroot_teacher``, an array folder) of ``teacher``, built unless a
    finished one is there; returns its path and the seconds its build took (from its manifest, also when
    reused)."""
    arrays = from_project_root(kd_opt['datasets']['train'][LABEL_ROOT])
    manifest = read_manifest(arrays)
    if manifest is None or not manifest.get('complete'):
        ensemble = ensemble_in_name(arrays)
        print(f'[3/{STEPS}] teacher labels: the teacher on every whole training image, ensemble {ensemble}, '
              'fp32 (once)', flush=True)
        train_set = dataset_from_project_root(kd_opt['datasets']['train'])
        device = pick_device('auto')
        opt = dict(kd_opt, path={**kd_opt['path'], 'pretrain_network_t': teacher})
        teachers, precision = load_teachers(opt, None, device, fp32=True)
        manifest = build_label_set(train_set, kd_opt['scale'], teachers, ensemble, arrays[:-len(ARRAYS_SUFFIX)],
                                   device, precision, npy=True, reuse=True,  # another demo may have built it meanwhile
                                   progress=lambda items: tqdm(items, desc='labels', unit='image'))
    else:
        print(f'[3/{STEPS}] teacher labels: {arrays} (built earlier in {manifest["seconds"]} s, counted below)',
              flush=True)
    return arrays, float(manifest['seconds'])


def run_options(source: str | dict, name: str, total_iter: int | None, out_dir: str,
                labels: str | None = None) -> tuple[str, dict]:
    """A copy of the shipped options file ``source`` (or of options already loaded from one) renamed ``name``
    (shortened to ``total_iter``, reading the teacher labels ``labels``, its checkpoints found where kd_plugin ships
    them), written to ``out_dir``."""
    opt = load_options(shipped(source)) if isinstance(source, str) else copy.deepcopy(source)
    opt['name'] = name
    for key, value in opt['path'].items():
        if key.startswith('pretrain_network') and value:
            opt['path'][key] = shipped(value)
    if labels:
        opt['datasets']['train'][LABEL_ROOT] = labels
    if total_iter:
        opt = with_total_iter(opt, total_iter)
        opt['val']['val_freq'] = opt['logger']['save_checkpoint_freq'] = max(total_iter // 2, 1)
    return write_options(opt, out_dir), opt


def train_with_progress(opt_path: str, opt: dict, label: str) -> float:
    """Run ``kd_plugin/cli/train.py -opt`` with BasicSR's log lines above a progress bar; returns seconds."""
    tail: list[str] = []
    with tqdm(total=opt['train']['total_iter'], desc=label, unit='it', dynamic_ncols=True) as bar:
        def show(line: str) -> None:
            tail.append(line)
            del tail[:-40]
            if 'iter:' in line and 'lr:(' in line:
                done = re.search(r'iter:\s*([\d,]+)', line)  # BasicSR writes 1,200
                if done:
                    bar.update(int(done.group(1).replace(',', '')) - bar.n)
            if any(key in line for key in ('lr:(', '# psnr', '# ssim', 'Teacher on', 'Start training',
                                           'End of training', 'error')):
                tqdm.write(line.rstrip())

        status, seconds = launch_train(opt_path, on_line=show)
        if status != 0:
            raise ValueError(f'{label} training failed:\n' + ''.join(tail))
        bar.update(bar.total - bar.n)
    return seconds


def informative_crop(images: list[np.ndarray], gt: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left of the ``size`` window where the outputs differ most from each other (and from
    bicubic): where the difference between methods shows."""
    stack = np.stack([im.astype(np.float32) for im in images])
    spread = stack.std(axis=0).mean(axis=-1) if stack.ndim == 4 else stack.std(axis=0)
    score = cv2.boxFilter(spread, -1, (size, size), normalize=True, borderType=cv2.BORDER_CONSTANT)
    h, w = gt.shape[:2]
    half = size // 2
    score = score[half:h - half + 1, half:w - half + 1] if h > size and w > size else score
    y, x = np.unravel_index(int(np.argmax(score)), score.shape)
    return int(min(y, max(h - size, 0))), int(min(x, max(w - size, 0)))


def side_by_side(panels: dict[str, np.ndarray], gt: np.ndarray, size: int = 96, zoom: int = 3) -> np.ndarray:
    """Crops of each panel (same window) enlarged ``zoom`` x with nearest neighbour, labelled."""
    y, x = informative_crop(list(panels.values()), gt, size)
    tiles = []
    for label, img in {**panels, 'ground truth': gt}.items():
        crop = cv2.resize(img[y:y + size, x:x + size], None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
        crop = cv2.copyMakeBorder(crop, 28, 4, 4, 4, cv2.BORDER_CONSTANT, value=(255, 255, 255))
        cv2.putText(crop, label, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(crop)
    return np.concatenate(tiles, axis=1)


def prepare_data() -> str:
    """Step 1: the photo set (PNG folders and LMDBs); returns its folder."""
    print(f'[1/{STEPS}] photo set (scikit-image\'s bundled photographs; train: 6 photos, val: chelsea, coffee)',
          flush=True)
    photos = osp.join(project_root(), 'datasets', 'photos')
    prepare_photos(photos, [4], lmdb=True)
    return photos


def train_students(kd_opt: dict, tag: str, total_iter: int | None, baseline: bool, out: str, labels: str,
                   label_seconds: float) -> dict[str, dict]:
    """Step 4: the student with KD (``kd_opt``, the shipped KD file's options) from the cached ``labels``, then
    (unless not ``baseline``) alone for the same time, the ``label_seconds`` of their building included; returns
    each run's record."""
    print(f'[4/{STEPS}] training through kd_plugin/cli/train.py (BasicSR pipeline)', flush=True)
    options_dir = osp.join(out, 'options')
    runs = {}
    opt_path, opt = run_options(kd_opt, f'{tag}_KD_{kd_opt["network_t"]["type"]}_to_DeformableHDRNet_photos_x4',
                                total_iter, options_dir, labels)
    iterations = opt['train']['total_iter']
    if baseline:  # measured before training, while nothing else runs
        timing = equal_time_record(opt, iterations, osp.join(out, 'equal_time.json'))
    runs['student (KD)'] = {'name': opt['name'], 'seconds': train_with_progress(opt_path, opt, 'student (KD)'),
                            'label_seconds': label_seconds, 'iterations': iterations,
                            'checkpoint': latest_weights(opt['name'])}
    if baseline:
        name = f'{tag}_DeformableHDRNet_photos_x4'
        trained = training_seconds(runs['student (KD)']['name'])
        alone = iterations_in(trained + label_seconds, timing)
        print(f'student alone for the same time: {alone} iterations (the KD run\'s {trained:.0f} s of training, '
              f'measured, and its {label_seconds:.0f} s of labels, at {1000 * timing["student_iteration_s"]:.0f} ms '
              'per student iteration)', flush=True)
        opt_path, opt = run_options(STUDENT_OPT, name, alone, options_dir)
        seconds = train_with_progress(opt_path, opt, 'student (no KD)')
        runs = {'student (no KD)': {'name': name, 'seconds': seconds, 'iterations': alone,
                                    'checkpoint': latest_weights(name)}, **runs}
    return runs


def score_methods(photos: str, runs: dict[str, dict], kd_opt: dict) -> tuple[dict, dict]:
    """Step 4a: Y-PSNR/SSIM of bicubic, each student and the teacher of ``kd_opt`` on the validation photos;
    returns (scores, upscalers)."""
    print(f'[5/{STEPS}] scoring on the validation photos (Y-PSNR/SSIM, crop 4)', flush=True)
    images = load_test_set(osp.join(photos, 'val'), 4)
    device = pick_device('auto')
    upscalers = {'bicubic': bicubic_upscaler(4)}
    student_arch = load_options(shipped(STUDENT_OPT))['network_g']
    for label, run in runs.items():
        net = load_model(ModelSpec(label, student_arch, run['checkpoint'], 'params'))
        upscalers[label] = network_upscaler(net.to(device), device)
    teacher = ModelSpec('teacher', kd_opt['network_t'], kd_opt['path']['pretrain_network_t'],
                        kd_opt['path'].get('param_key_t'), scale=kd_opt['scale'])
    upscalers['teacher'] = network_upscaler(load_model(teacher).to(device), device)
    return {label: evaluate(fn, images, 4) for label, fn in upscalers.items()}, upscalers


def write_results(out: str, photos: str, scores: dict, runs: dict, upscalers: dict, started: float) -> None:
    """Step 4b: ``results.md``, ``results.json`` and ``side_by_side.png`` in ``out``, and a summary."""
    table = ['| method | iterations | time (training + labels) | Y-PSNR (dB) | SSIM |', '|---|---|---|---|---|']
    for label, result in scores.items():
        run = runs.get(label, {})
        minutes = ''
        if run:
            labels = run.get('label_seconds')
            minutes = f'{(run["seconds"] + (labels or 0)) / 60:.1f} min' + (
                f' ({run["seconds"] / 60:.1f} + {labels / 60:.1f})' if labels is not None else '')
        table.append(f'| {label} | {run.get("iterations", "")} | {minutes} | {result["psnr"]:.2f} | '
                     f'{result["ssim"]:.4f} |')
    figure = osp.join(out, 'side_by_side.png')
    rows = [side_by_side({label: fn(image.lr) for label, fn in upscalers.items()}, image.hr)
            for image in load_test_set(osp.join(photos, 'val'), 4)]
    width = max(r.shape[1] for r in rows)
    cv2.imwrite(figure, np.concatenate([cv2.copyMakeBorder(r, 0, 0, 0, width - r.shape[1], cv2.BORDER_CONSTANT,
                                                           value=(255, 255, 255)) for r in rows], axis=0))
    text = '\n'.join(table) + '\n'
    with open(osp.join(out, 'results.md'), 'w') as f:
        f.write(text)
    with open(osp.join(out, 'results.json'), 'w') as f:
        json.dump({'scores': scores, 'runs': runs, 'seconds_total': time.time() - started}, f, indent=1)
    print('\n' + text)
    kd = runs['student (KD)']
    print(f'distilled student:  {kd["checkpoint"]}  (a plain DeformableHDRNet checkpoint: key "params")')
    print(f'training logs:      {experiment_dir(kd["name"])}/')
    print(f'side-by-side crops: {figure}')
    print(f'table:              {osp.join(out, "results.md")} (and results.json)')
    print(f'total time:         {(time.time() - started) / 60:.1f} min')


@tool('demo')
def main(argv: list[str] | None = None) -> int:
    parser = Parser('python -m kd_plugin.cli.demo', description=__doc__.splitlines()[0])
    parser.add_argument('--total-iter', type=int, help='override total_iter of both runs (default: the files\')')
    parser.add_argument('--tag', help='results/<tag>/ and experiments/<tag>_* (default: demo, or '
                                      'demo_<file name> with --teacher)')
    parser.add_argument('--teacher', metavar='FILE',
                        help='a published x4 model file as the teacher instead of the shipped HDRNet: IMDN, RLFN or '
                             'any architecture spandrel recognises (docs/published-teachers.md); its SHA-256 is '
                             'printed, not checked')
    parser.add_argument('--no-baseline', action='store_true', help='skip the student trained without KD')
    args = parser.parse_args(argv)
    started = time.time()
    kd_opt = load_options(shipped(KD_OPT))
    if args.teacher:  # before anything is built or archived: a file that is no teacher is refused first
        kd_opt = with_teacher_file(kd_opt, args.teacher)
    tag = args.tag or ('demo_' + osp.splitext(osp.basename(args.teacher))[0] if args.teacher else 'demo')
    out = osp.join(project_root(), 'results', tag)
    mkdir_and_rename(out)  # an earlier demo's results are archived, not overwritten
    os.makedirs(osp.join(out, 'options'))
    photos = prepare_data()
    if args.teacher:
        teacher = kd_opt['path']['pretrain_network_t']
        print(f'[2/{STEPS}] teacher {teacher}: a x{kd_opt["scale"]} {kd_opt["network_t"]["type"]}, SHA-256 '
              f'{sha256(teacher)}', flush=True)
    else:
        teacher = check_teacher(kd_opt)
        print(f'[2/{STEPS}] teacher {teacher} (SHA-256 checked)', flush=True)
        kd_opt = dict(kd_opt, path=dict(kd_opt['path'], pretrain_network_t=teacher))  # the checked file, found
    labels, label_seconds = teacher_labels(kd_opt, teacher)
    runs = train_students(kd_opt, tag, args.total_iter, not args.no_baseline, out, labels, label_seconds)
    scores, upscalers = score_methods(photos, runs, kd_opt)
    write_results(out, photos, scores, runs, upscalers, started)
    return 0


if __name__ == '__main__':
    sys.exit(main())
