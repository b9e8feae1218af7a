"""What distillation costs per step (the library behind ``python -m kd_plugin.cli.kd_overhead -opt <KD file>``).

Builds, from one KD options file (archs, losses, batch and patch size), the real ``KDModel`` and a
plain ``SRModel`` for the same student, then measures in one run, on the same batch:

* ``student``: one ``SRModel`` training step (pixel loss only);
* ``teacher``: one teacher forward under ``no_grad`` as the file configures it, in fp32, and in
  bf16 (CPU) / fp16 (CUDA) with channels_last (or the file's autocast dtype);
* ``kd``: one ``KDModel`` step with the file's losses minus forward adaptation and upcycling;
* ``kd + fwd``: the same with forward adaptation (when the file has it), its extra cost on its own;
* ``kd + <part>``: the ``kd`` step with one data-upcycling part (zoom-in, zoom-out, label
  consistency) applied every iteration, each part's extra cost reported on its own;
* ``recipe``: the file's whole training section, as a run would train;
* ``cached``: a step with cached teacher labels in the batch (``prepare teacher-labels``): the file's
  pixel loss and output distillation against the label, no teacher forward.

The headline is ``kd / (student + teacher)``: the price of the KD plumbing itself (hooks,
adapters, loss terms), which should stay near 1. Peak memory is CUDA's allocator peak on a GPU and
the growth of the peak RSS over two steps in a fresh subprocess on the CPU (Linux).

The teacher's weights are random (cost does not depend on them), so no checkpoint is needed.
"""
import multiprocessing
import os
import tempfile
from collections.abc import Callable
from copy import deepcopy
from typing import Any

import torch
from basicsr.models import build_model

from kd_plugin.archs.build import build_network
from kd_plugin.benchmark.timing import autocast_context, interleaved_medians, peak_memory_bytes
from kd_plugin.models.kd_config import precision_name

UPCYCLE_PARTS = ('zoom_in', 'zoom_out', 'consistency')


def model_options(kd_opt: dict[str, Any], teacher_path: str, device: str, variant: str) -> dict[str, Any]:
    """In-process options for ``variant``: ``student`` (SRModel, pixel loss), ``kd`` (the file's losses
    without forward adaptation or upcycling), ``kd_fwd`` (with forward adaptation), ``up_<part>`` (``kd``
    with that upcycling part at probability 1), ``recipe`` (the file's training section as it is) or
    ``cached`` (pixel loss + output distillation, for batches that carry cached labels)."""
    train = deepcopy(kd_opt['train'])
    train['ema_decay'] = 0
    upcycle = (train.get('upcycle') if variant == 'recipe' else train.pop('upcycle', None)) or {}
    opt = {
        'name': 'kd_overhead', 'scale': kd_opt['scale'], 'num_gpu': 1 if device == 'cuda' else 0,
        'is_train': True, 'dist': False, 'rank': 0, 'world_size': 1,
        'network_g': deepcopy(kd_opt['network_g']), 'datasets': deepcopy(kd_opt.get('datasets', {})),
        'path': {'models': tempfile.gettempdir(), 'resume_state': None},
    }
    if variant == 'cached':
        train = {k: v for k, v in train.items() if k not in ('feature_opt', 'forward_opt', 'upcycle')}
        train.setdefault('distill_opt', {'type': 'OutputDistillLoss', 'loss_weight': 1.0})
    if variant == 'student':
        opt['model_type'] = 'SRModel'
        pixel = train.get('pixel_opt') or {'type': 'L1Loss', 'loss_weight': 1.0}
        opt['train'] = {'optim_g': train['optim_g'], 'scheduler': train['scheduler'], 'pixel_opt': pixel}
        return opt
    if variant not in ('kd_fwd', 'recipe'):
        train.pop('forward_opt', None)
    if variant.startswith('up_'):
        part = variant[len('up_'):]
        train['upcycle'] = {part: dict(upcycle.get(part) or {}, prob=1.0)}
    opt.update(model_type='KDModel', train=train, network_t=deepcopy(kd_opt['network_t']))
    opt['path'].update(pretrain_network_t=teacher_path, param_key_t='params', strict_load_t=True)
    return opt


def _random_teacher(kd_opt: dict[str, Any], folder: str) -> str:
    """A checkpoint of the file's teacher arch with seeded random weights, written in ``folder``."""
    path = os.path.join(folder, 'teacher.pth')
    torch.manual_seed(0)
    torch.save({'params': build_network(deepcopy(kd_opt['network_t'])).state_dict()}, path)
    return path


def _stepper() -> Callable[[Any], Callable[[], None]]:
    """``step(model)``: a call of one training step of ``model``; all steps share one iteration counter."""
    counter = iter(range(1, 10**6))

    def step(model):
        return lambda: model.optimize_parameters(next(counter))
    return step


def _batch(kd_opt: dict[str, Any], device: str, batch: int | None, patch: int | None) -> dict[str, torch.Tensor]:
    train_set = kd_opt['datasets']['train']
    n = batch or train_set['batch_size_per_gpu']
    gt = patch or train_set['gt_size']
    scale = kd_opt['scale']
    g = torch.Generator().manual_seed(0)
    return {'lq': torch.rand(n, 3, gt // scale, gt // scale, generator=g).to(device),
            'gt': torch.rand(n, 3, gt, gt, generator=g).to(device)}


def _build(kd_opt, teacher_path, device, variant, data):
    torch.manual_seed(0)
    model = build_model(model_options(kd_opt, teacher_path, device, variant))
    cached = variant == 'cached' or (variant == 'recipe' and kd_opt['datasets']['train'].get('dataroot_teacher'))
    model.feed_data(dict(data, teacher=data['gt'].flip(-1)) if cached else data)  # a cached-label file's batches
    return model


def _proc_status_kib(field: str) -> int:
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ':'))


def _step_peak(args: tuple) -> float:
    """In a fresh process: peak RSS growth (MiB) over two steps of ``variant`` (``teacher``: two forwards).

    Linux only: ``/proc/self/clear_refs`` resets the high-water mark ``VmHWM`` to the current RSS
    after set-up, so the figure is what the steps themselves add (``ru_maxrss`` would not do: it
    keeps the parent's peak across fork and exec)."""
    kd_opt, teacher_path, variant, batch, patch, threads = args
    torch.set_num_threads(threads)
    data = _batch(kd_opt, 'cpu', batch, patch)
    model = _build(kd_opt, teacher_path, 'cpu', 'kd' if variant == 'teacher' else variant, data)
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
    before = _proc_status_kib('VmRSS')
    for i in range(2):
        if variant == 'teacher':
            with torch.no_grad():
                model.teacher_forward(data['lq'])
        else:
            model.optimize_parameters(i + 1)
    return (_proc_status_kib('VmHWM') - before) / 1024


def _path_name(dtype: torch.dtype | None, channels_last: bool) -> str:
    return precision_name(dtype) + (' + channels_last' if channels_last else '')


def measure(kd_opt: dict[str, Any], device: str, runs: int, batch: int | None = None, patch: int | None = None,
            threads: int = 2, cpu_peaks: bool = True) -> dict[str, float]:
    """All timings (seconds) and peaks (MiB) for one KD options dict; see the module docstring. Without
    ``cpu_peaks`` the CPU peaks (one fresh process per kind of step, ~10 s each to start) are left out of the
    row; CUDA peaks are always measured."""
    dev = torch.device(device)
    with tempfile.TemporaryDirectory() as tmp:
        teacher_path = _random_teacher(kd_opt, tmp)
        data = _batch(kd_opt, device, batch, patch)
        variants = ('student', 'kd', *(['kd_fwd'] if kd_opt['train'].get('forward_opt') else []),
                    *(f'up_{p}' for p in UPCYCLE_PARTS), 'recipe', 'cached')
        models = {v: _build(kd_opt, teacher_path, device, v, data) for v in variants}
        kd = models['kd']
        step = _stepper()

        def teacher(net, dtype, channels_last):
            lq = data['lq'].contiguous(memory_format=torch.channels_last) if channels_last else data['lq']

            def run():
                with torch.no_grad(), autocast_context(dev, dtype):
                    net(lq)
            return run

        fast_dtype = kd.kd.teacher.dtype or (torch.float16 if device == 'cuda' else torch.bfloat16)
        plain = deepcopy(kd.net_t).to(memory_format=torch.contiguous_format)
        fast_net = deepcopy(kd.net_t).to(memory_format=torch.channels_last)
        fns = {v: step(m) for v, m in models.items()}
        fns.update({'teacher': teacher(kd.net_t, kd.kd.teacher.dtype, kd.kd.teacher.channels_last),
                    'teacher_fp32': teacher(plain, None, False), 'teacher_fast': teacher(fast_net, fast_dtype, True)})
        row = interleaved_medians(fns, dev, warmup=1 if device == 'cpu' else 5, runs=runs, grad=True)
        row['teacher_path'] = _path_name(kd.kd.teacher.dtype, kd.kd.teacher.channels_last)
        row['fast_path'] = _path_name(fast_dtype, True)
        peaks = ['student', 'teacher', 'kd', 'recipe']
        if device == 'cuda':
            for name in peaks:
                fn = fns['teacher'] if name == 'teacher' else step(models[name])
                row[f'{name}_peak_mib'] = peak_memory_bytes(fn, dev, grad=name != 'teacher') / 2**20
        elif cpu_peaks:
            ctx = multiprocessing.get_context('spawn')
            with ctx.Pool(1, maxtasksperchild=1) as pool:
                for name in peaks:
                    row[f'{name}_peak_mib'] = pool.apply(_step_peak, ((kd_opt, teacher_path, name, batch, patch,
                                                                       threads),))
    return row


def report(row: dict[str, float], title: str) -> str:
    """The markdown report of ``measure``'s row."""
    base = row['student'] + row['teacher']
    forward = []
    if 'kd_fwd' in row:
        extra = row['kd_fwd'] - row['kd']
        forward = [f'| KD step, + forward adaptation | {row["kd_fwd"] * 1e3:.1f} | extra {extra * 1e3:.1f} ms = '
                   f'{extra / row["teacher"]:.2f}x a teacher forward |']
    lines = [title, '', '| measurement | ms | ratio |', '|---|---|---|',
             f'| student-only step (SRModel) | {row["student"] * 1e3:.1f} | |',
             f'| teacher forward, no_grad, as configured ({row["teacher_path"]}) | {row["teacher"] * 1e3:.1f} | |',
             f'| teacher forward, no_grad, fp32 | {row["teacher_fp32"] * 1e3:.1f} | |',
             f'| teacher forward, no_grad, {row["fast_path"]} | {row["teacher_fast"] * 1e3:.1f} | '
             f'speed-up over fp32: {row["teacher_fp32"] / row["teacher_fast"]:.2f}x |',
             f'| KD step, the file\'s output/feature losses | {row["kd"] * 1e3:.1f} | '
             f'**KD / (student + teacher) = {row["kd"] / base:.3f}** |',
             *forward,
             *(f'| KD step, + upcycling {p.replace("_", "-")} (every step) | {row[f"up_{p}"] * 1e3:.1f} | extra '
               f'{(row[f"up_{p}"] - row["kd"]) * 1e3:.1f} ms = {(row[f"up_{p}"] - row["kd"]) / row["kd"]:.2f}x '
               'the KD step |' for p in UPCYCLE_PARTS),
             f'| the whole recipe as the file configures it | {row["recipe"] * 1e3:.1f} | '
             f'{row["recipe"] / row["student"]:.2f}x the student step |',
             f'| KD step with cached teacher labels (pixel + output distillation, no teacher forward) | '
             f'{row["cached"] * 1e3:.1f} | **{row["cached"] / row["student"]:.2f}x the student step** |', '']
    if 'student_peak_mib' not in row:
        return '\n'.join(lines + ['Peak memory: not measured.'])
    lines += ['| peak memory (MiB) | student step | teacher fwd | student + teacher | KD step | recipe step |',
              '|---|---|---|---|---|---|',
              f'| | {row["student_peak_mib"]:.0f} | {row["teacher_peak_mib"]:.0f} | '
              f'{row["student_peak_mib"] + row["teacher_peak_mib"]:.0f} | {row["kd_peak_mib"]:.0f} | '
              f'{row["recipe_peak_mib"]:.0f} |']
    return '\n'.join(lines)
