"""The one prepared command for a lent GPU: ``python -m kd_plugin.cli.gpu_check --output DIR`` (``make gpu-check``).

Within its own time budget (``--budget``, default 480 s; every step gets what is left and a step that
would not fit is recorded as skipped), on one CUDA device it

1. trains a short KD run (HDRNet -> DeformableHDRNet x4, teacher in bf16 + channels_last) through
   ``torchrun --nproc_per_node=1 kd_plugin/cli/train.py ... --launcher pytorch``
   (nccl, on a free port), on a small paired
   set cut from scikit-image's photographs;
2. measures the benchmark's cost columns (fp32/fp16/bf16, with and without channels_last, peak memory)
   of HDRNet, DeformableHDRNet, EDSR (32x4), SRVGGNetCompact and ECBSR (M4C16) at LR 480x270, x4;
3. runs ``kd_overhead`` for both T91 KD options files;
4. times the student exported to ONNX in onnxruntime's CUDA provider, when it is installed;
5. builds x8 whole-image teacher labels (``prepare teacher-labels``' code) with the shipped HDRNet teacher;

and writes ``gpu_check.json`` and ``gpu_check.md`` after every step (a step cut short leaves the
earlier results). ``--smoke`` runs the same code paths on the CPU with tiny sizes (CI runs it); without
CUDA and without ``--smoke`` the command explains and exits with status 2.

Where the machine lacks basicsr, lmdb or addict (and has no network), install them from wheels first, e.g.
``pip install --no-index --no-deps --target /tmp/site WHEELS/*.whl`` and run with ``PYTHONPATH=/tmp/site:.``.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from os import path as osp
from typing import Any

import cv2
import torch
import yaml

from kd_plugin.archs.build import build_network
from kd_plugin.benchmark import kd_overhead
from kd_plugin.benchmark.cost import measure_cost
from kd_plugin.benchmark.peers import peer_specs
from kd_plugin.benchmark.timing import median_latency
from kd_plugin.cli.common import Parser, fail
from kd_plugin.data.bundled_photos import load_photo
from kd_plugin.data.label_cache import Teacher, build_label_set
from kd_plugin.data.lr_generation import make_lr_pairs
from kd_plugin.device import machine_info, pick_device
from kd_plugin.distill.teacher_labels import TeacherRunner
from kd_plugin.model_loading import ModelSpec, OnnxNet, load_model
from kd_plugin.onnx_export import export_onnx
from kd_plugin.runs import SHIPPED_TEACHER, experiment_dir, load_options, project_root, shipped, torchrun_command

#: the archs timed in step 2: ours and the three small peers of ``arch_cost``'s table, x4
PEERS = {name: spec for name, spec in peer_specs(4, everything=True).items()
         if name in ('HDRNet', 'DeformableHDRNet', 'EDSR (32x4)', 'SRVGGNetCompact', 'ECBSR (M4C16)')}
KD_FILES = ('options/train/KD/train_KD_HDRNet_to_DeformableHDRNet_T91_x4.yml',
            'options/train/KD/train_KD_EDSR_64x16_to_EDSR_32x4_T91_x4.yml')
_BACKEND_LINE = re.compile(r'^\s*dist_backend: (\w+)\s*$', re.MULTILINE)


def check_device(smoke: bool) -> torch.device:
    """The CPU in a smoke run, else the CUDA device."""
    return pick_device('cpu' if smoke else 'auto')


class Budget:
    """Seconds left of the command's budget."""

    def __init__(self, seconds: float) -> None:
        self.end = time.time() + seconds

    @property
    def left(self) -> float:
        return self.end - time.time()


def tiny_pairs(folder: str, scale: int, size: int, count: int) -> str:
    """``count`` HR crops of ``size`` px from the bundled photographs and their MATLAB-bicubic LR."""
    src = osp.join(folder, 'src')
    os.makedirs(src, exist_ok=True)
    photo = cv2.cvtColor(load_photo('astronaut'), cv2.COLOR_RGB2BGR)
    for i in range(count):
        top, left = (i * 37) % (photo.shape[0] - size), (i * 53) % (photo.shape[1] - size)
        cv2.imwrite(osp.join(src, f'p{i}.png'), photo[top:top + size, left:left + size])
    return make_lr_pairs(src, folder, [scale])[scale]


def logged_backend(log: str) -> str | None:
    """The process-group backend a training run used, as its log states it (``dist_backend: nccl`` in
    BasicSR's dump of the options, :func:`kd_plugin.preflight.checked_parse_options`); None if absent."""
    found = _BACKEND_LINE.search(log)
    return found.group(1) if found else None


def kd_training(work: str, output: str, smoke: bool, budget: Budget) -> dict[str, Any]:
    """Step 1: a short KD run through torchrun (nccl on CUDA, gloo on the CPU) on data made in ``work``; its
    output goes to ``<output>/kd_training.log`` and its experiment folder is removed."""
    data = tiny_pairs(osp.join(work, 'pairs'), 4, 64 if smoke else 128, 4 if smoke else 16)
    teacher_path = shipped(SHIPPED_TEACHER)
    teacher = {'type': 'HDRNet', 'upscale': 4}
    if smoke or not osp.isfile(teacher_path):
        teacher_path = osp.join(work, 'teacher.pth')
        torch.save({'params': build_network(dict(teacher)).state_dict()}, teacher_path)
    iters = 2 if smoke else 60
    dataset = {'name': 'gpu_check', 'type': 'PairedImageDataset', 'io_backend': {'type': 'disk'},
               'dataroot_gt': osp.join(data, 'HR'), 'dataroot_lq': osp.join(data, 'LR')}
    opt = {
        'name': f'gpu_check_kd_{os.getpid()}', 'model_type': 'KDModel', 'scale': 4, 'num_gpu': 'auto',
        'manual_seed': 0,
        'datasets': {'train': {**dataset, 'gt_size': 64, 'use_hflip': True, 'use_rot': True, 'num_worker_per_gpu': 2,
                               'batch_size_per_gpu': 4 if smoke else 32, 'dataset_enlarge_ratio': 10,
                               'prefetch_mode': None}},
        'network_g': {'type': 'DeformableHDRNet', 'upscale': 4}, 'network_t': teacher,
        'path': {'pretrain_network_t': teacher_path, 'strict_load_t': True, 'resume_state': None},
        'train': {'optim_g': {'type': 'Adam', 'lr': 2e-3}, 'total_iter': iters, 'warmup_iter': -1,
                  'scheduler': {'type': 'CosineAnnealingRestartLR', 'periods': [iters], 'restart_weights': [1]},
                  'teacher': {'autocast': 'bf16', 'channels_last': True},
                  'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0},
                  'distill_opt': {'type': 'OutputDistillLoss', 'loss_weight': 1.0}},
        'logger': {'print_freq': max(iters // 4, 1), 'save_checkpoint_freq': iters, 'use_tb_logger': False},
    }
    opt_path = osp.join(work, 'kd.yml')
    with open(opt_path, 'w') as f:
        yaml.safe_dump(opt, f)
    cmd = torchrun_command(opt_path, 1)
    start = time.time()
    try:
        proc = subprocess.run(cmd, cwd=project_root(), capture_output=True, text=True, timeout=max(budget.left - 5, 1))
    except subprocess.TimeoutExpired:
        return {'ok': False, 'error': 'timed out (time budget)'}
    log = proc.stdout + proc.stderr
    with open(osp.join(output, 'kd_training.log'), 'w') as f:
        f.write(log)
    shutil.rmtree(experiment_dir(opt['name']), ignore_errors=True)  # a throwaway run: its log is the record
    lines = [line for line in log.splitlines() if 'iter:' in line and 'lr:(' in line]
    result = {'ok': proc.returncode == 0, 'iterations': iters, 'seconds': time.time() - start,
              'backend': logged_backend(log),
              'last_log_line': lines[-1].split('INFO: ')[-1] if lines else None}
    if proc.returncode != 0:
        result['error'] = log[-2000:]
    return result


def arch_costs(smoke: bool, budget: Budget) -> dict[str, Any]:
    """Step 2: the benchmark's cost columns for every peer, random weights (cost does not depend on them)."""
    cuda = check_device(smoke).type == 'cuda'
    rows = {}
    for name, spec in PEERS.items():
        if budget.left < 20:
            rows[name] = {'skipped': 'time budget'}
            continue
        net = build_network(dict(spec)).eval()
        rows[name] = measure_cost(net, (16, 16) if smoke else (270, 480), threads=2, runs=1 if smoke else 10,
                                  cuda=cuda, cpu_dtypes=('fp32',))
    return rows


def overheads(smoke: bool, budget: Budget) -> dict[str, Any]:
    """Step 3: ``kd_overhead`` of both KD files (tiny batch and patch in a smoke run)."""
    device = check_device(smoke).type
    rows = {}
    for path in KD_FILES:
        if budget.left < 30:
            rows[path] = {'skipped': 'time budget'}
            continue
        opt = load_options(shipped(path))
        # the GPU run's peaks are CUDA's allocator peaks, measured in process; the CPU's need a fresh process
        # per kind of step, a path kd_overhead's own command measures, so a smoke run leaves them out
        rows[path] = kd_overhead.measure(opt, device, runs=1 if smoke else 7, batch=2 if smoke else None,
                                         patch=32 if smoke else None, threads=2, cpu_peaks=not smoke)
    return rows


def onnxruntime_cuda(smoke: bool, budget: Budget) -> dict[str, Any]:
    """Step 4: the student in onnxruntime's CUDA provider (the CPU provider in a smoke run)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return {'skipped': 'onnxruntime not installed'}
    provider = 'CPUExecutionProvider' if smoke else 'CUDAExecutionProvider'
    if provider not in ort.get_available_providers():
        return {'skipped': f'{provider} not available (providers: {ort.get_available_providers()})'}
    with tempfile.TemporaryDirectory() as tmp:
        path = osp.join(tmp, 'student.onnx')
        export_onnx(build_network(dict(PEERS['DeformableHDRNet'])).eval(), path, opset=20)
        student = OnnxNet(path, provider=provider)
        x = torch.rand(1, 3, *((16, 16) if smoke else (270, 480)))
        seconds = median_latency(lambda: student(x), torch.device('cpu'), warmup=2, runs=2 if smoke else 20)
    return {'provider': provider, 'ms': seconds * 1e3}


def teacher_labels(work: str, smoke: bool, budget: Budget) -> dict[str, Any]:
    """Step 5: ``prepare teacher-labels``' label building (x8 self-ensemble, fp32) with the shipped HDRNet
    teacher on whole images (random weights in a smoke run); its speed in LR megapixels per second."""
    size, count = (64, 2) if smoke else (384, 16)  # crops of the 512 px astronaut
    data = tiny_pairs(osp.join(work, 'label_pairs'), 4, size, count)
    arch = {'type': 'HDRNet', 'upscale': 4}
    checkpoint = shipped(SHIPPED_TEACHER)
    if smoke or not osp.isfile(checkpoint):
        checkpoint = osp.join(work, 'label_teacher.pth')
        torch.save({'params': build_network(dict(arch)).state_dict()}, checkpoint)
    device = check_device(smoke)
    net = load_model(ModelSpec('teacher', dict(arch), checkpoint, 'params')).to(device)
    train_set = {'dataroot_gt': osp.join(data, 'HR'), 'dataroot_lq': osp.join(data, 'LR'),
                 'io_backend': {'type': 'disk'}}
    start = time.time()
    manifest = build_label_set(train_set, 4, [Teacher(arch, checkpoint, TeacherRunner(net))], 'x8',
                               osp.join(work, 'labels'), device, 'fp32')
    seconds = time.time() - start
    megapixels = count * (size // 4) ** 2 / 1e6
    return {'device': str(device), 'images': manifest['count'], 'lr_side': size // 4, 'ensemble': 'x8',
            'seconds': seconds, 'lr_megapixels_per_s': megapixels / seconds}


def report(results: dict[str, Any]) -> str:
    """``gpu_check.md``: one table per step."""
    env = results['environment']
    lines = [f'# gpu_check ({"smoke, CPU" if env["smoke"] else env["device"]})', '',
             f'torch {env["torch"]}, CUDA {env["cuda"]}, Python {env["python"]}; {results["seconds"]:.0f} s in all',
             '']
    kd = results.get('kd_training')
    if kd:
        lines += ['## KD training through torchrun', '',
                  f'ok: {kd.get("ok")}, backend {kd.get("backend")}, {kd.get("iterations")} iterations in '
                  f'{kd.get("seconds", 0):.0f} s; last log line: `{kd.get("last_log_line")}`', '']
    costs = results.get('arch_costs')
    if costs:
        keys = sorted({k for r in costs.values() for k in r if k.endswith('_ms') or k.endswith('_mib')})
        lines += ['## Cost at LR 480x270, x4 (random weights)', '',
                  '| model | params | GFLOPs | ' + ' | '.join(keys) + ' |', '|---|---|---|' + '---|' * len(keys)]
        for name, r in costs.items():
            cells = [f'{r[k]:.2f}' if isinstance(r.get(k), float) else str(r.get(k, '–')) for k in keys]
            lines.append(f'| {name} | {r.get("params", "–")} | {r.get("gflops", 0) or 0:.1f} | ' + ' | '.join(cells)
                         + ' |')
        lines.append('')
    for path, row in (results.get('kd_overhead') or {}).items():
        if 'skipped' in row:
            lines += [f'## kd_overhead {path}: skipped ({row["skipped"]})', '']
            continue
        lines += [f'## kd_overhead {path}', '', kd_overhead.report(row, ''), '']
    ort = results.get('onnxruntime')
    if ort:
        lines += ['## onnxruntime', '', json.dumps(ort), '']
    labels = results.get('teacher_labels')
    if labels:
        lines += ['## Teacher labels (prepare teacher-labels: HDRNet, x8, fp32, whole images)', '',
                  json.dumps(labels), '']
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = Parser('python -m kd_plugin.cli.gpu_check', description=__doc__.splitlines()[0])
    parser.add_argument('--output', required=True, help='folder for gpu_check.json and gpu_check.md')
    parser.add_argument('--smoke', action='store_true', help='the same code paths on the CPU, tiny sizes')
    parser.add_argument('--budget', type=float, default=480, help='seconds for the whole check (default 480)')
    args = parser.parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        return fail('gpu_check needs a CUDA device (none is visible here); use --smoke for a CPU dry run')
    budget = Budget(args.budget)
    started = time.time()
    os.makedirs(args.output, exist_ok=True)
    info = machine_info()
    results: dict[str, Any] = {'environment': {
        'smoke': args.smoke, 'torch': info['torch'], 'cuda': torch.version.cuda, 'python': info['python'],
        'device': info['cuda'] or info['cpu']}}

    def save() -> None:
        results['seconds'] = time.time() - started
        with open(osp.join(args.output, 'gpu_check.json'), 'w') as f:
            json.dump(results, f, indent=1, default=str)
        with open(osp.join(args.output, 'gpu_check.md'), 'w') as f:
            f.write(report(results))

    with tempfile.TemporaryDirectory() as work:
        for name, step in (('kd_training', lambda: kd_training(work, args.output, args.smoke, budget)),
                           ('arch_costs', lambda: arch_costs(args.smoke, budget)),
                           ('kd_overhead', lambda: overheads(args.smoke, budget)),
                           ('onnxruntime', lambda: onnxruntime_cuda(args.smoke, budget)),
                           ('teacher_labels', lambda: teacher_labels(work, args.smoke, budget))):
            if budget.left < 10:
                results[name] = {'skipped': 'time budget'}
                continue
            print(f'[gpu_check] {name} ({budget.left:.0f} s left)', flush=True)
            try:
                results[name] = step()
            except Exception as err:  # noqa: BLE001  (one failing step must not lose the others' figures)
                results[name] = {'error': f'{type(err).__name__}: {err}'}
            save()
    save()
    print(report(results))
    print(f'wrote {args.output}/gpu_check.json and gpu_check.md')
    return 0 if (results.get('kd_training') or {}).get('ok') else 1


if __name__ == '__main__':
    sys.exit(main())
