"""Quality next to cost for SR models (the library behind ``python -m kd_plugin.cli.benchmark``).

For every scale and model: Y-PSNR/SSIM per test set and averaged (:mod:`.quality`), parameters,
FLOPs at a stated LR size (with ``deform_conv2d`` counted), latency (median of synchronised runs
after warm-up) and FPS on the CPU (fp32, bf16 autocast) and, with CUDA, fp32/fp16/bf16 with and
without channels_last, and CUDA peak memory. Writes ``x{s}.md`` per scale, ``benchmark.csv`` and
``benchmark.json`` (same numbers, plus machine and versions) and PNG plots of PSNR against latency
and against parameters with the Pareto front. A model or set that fails is reported in its row
and the others are still computed.
"""
import argparse
import csv
import json
import os
import time
from os import path as osp
from typing import Any

import matplotlib

matplotlib.use('Agg')  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
from tqdm import tqdm  # noqa: E402

from kd_plugin.benchmark.cost import measure_cost
from kd_plugin.benchmark.quality import bicubic_upscaler, evaluate, load_test_set, resolve_set
from kd_plugin.device import machine_info, pick_device
from kd_plugin.model_loading import ModelSpec, load_model, network_upscaler, parse_model


def benchmark_model(spec: ModelSpec, scale: int, sets: dict[str, Any], args: argparse.Namespace) -> dict:
    """One row: quality per set (or the set's error) and cost; ``error`` when the model cannot run."""
    row: dict[str, Any] = {'model': spec.label, 'scale': scale, 'source': spec.source}
    try:
        if spec.scale is not None and spec.scale != scale:
            raise ValueError(f'model {spec.label} is trained for x{spec.scale}, not x{scale}')
        net = None if spec.is_bicubic else load_model(spec)
        device = pick_device(args.device)
        upscale = bicubic_upscaler(scale) if net is None else network_upscaler(net.to(device), device)
        for set_name, images in sets.items():
            if isinstance(images, Exception):
                row[f'{set_name}_error'] = str(images)
                continue
            start = time.perf_counter()
            with tqdm(total=len(images), desc=f'x{scale} {spec.label} {set_name}', leave=False,
                      disable=None) as bar:
                result = evaluate(upscale, images, scale, progress=lambda _: bar.update())
            row[f'{set_name}_psnr'], row[f'{set_name}_ssim'] = result['psnr'], result['ssim']
            # one line per model and set, also where the bar is off (output to a file or a pipe)
            print(f'[benchmark] x{scale} {spec.label} on {set_name}: {result["psnr"]:.2f} dB / {result["ssim"]:.4f} '
                  f'({len(images)} images, {time.perf_counter() - start:.0f} s)', flush=True)
        if net is not None:
            net.cpu()
            if not args.skip_cost:
                start = time.perf_counter()
                print(f'[benchmark] x{scale} {spec.label}: measuring cost (parameters, FLOPs, latency'
                      f'{"" if args.skip_onnx else ", onnxruntime"})', flush=True)
                row.update(measure_cost(net, tuple(args.lr_size), args.threads, args.runs,
                                        device.type == 'cuda', onnx=not args.skip_onnx))
                print(f'[benchmark] x{scale} {spec.label}: cost measured ({time.perf_counter() - start:.0f} s)',
                      flush=True)
        elif not args.skip_cost:
            row.update(params=0, gflops=None)
        row['notes'] = '; '.join(spec.notes)
    except Exception as err:  # noqa: BLE001  (one bad model must not cost the user the other rows)
        row['error'] = str(err)
        tqdm.write(f'error: {err}')
    return row


def _fmt(value: Any, digits: int) -> str:
    return '–' if value is None else f'{value:,.{digits}f}' if isinstance(value, float) else f'{value:,}'


def markdown_table(rows: list[dict], set_names: list[str], scale: int, args: argparse.Namespace, info: dict) -> str:
    """One scale's table, in the spirit of traiNNer-redux's arch benchmark."""
    cuda = any('cuda_fp32_ms' in r for r in rows)
    cols = ['model', 'params', f'GFLOPs @{args.lr_size[1]}x{args.lr_size[0]}']
    cols += [f'{s} PSNR / SSIM' for s in set_names]
    cols += ['mean PSNR / SSIM (scored sets)', f'CPU fp32 ms ({args.threads} thr)', 'CPU FPS', 'CPU bf16 ms']
    ort = any('ort_cpu_ms' in r or 'ort_note' in r for r in rows)
    if ort:
        cols += [f'onnxruntime CPU ms ({args.threads} thr)']
    if cuda:
        cols += ['CUDA fp32 ms', 'CUDA fp16 ms', 'CUDA fp16+CL ms', 'CUDA bf16+CL ms', 'CUDA FPS (best)',
                 'CUDA peak MiB (fp16)']
    lines = [f'x{scale}: Y-channel PSNR (dB) / SSIM, crop {scale}; grey images on their own channel. '
             f'Cost at LR {args.lr_size[1]}x{args.lr_size[0]}. {info["cpu"]}, {info["cpu_count"]} cores, '
             f'torch {info["torch"]}' + (f', {info["cuda"]}' if info['cuda'] else '') + '. GFLOPs count '
             'convolutions, matrix products, deform_conv2d, grid sampling, interpolation and element-wise ops '
             '(2 per multiply-add; formulas in kd_plugin/benchmark/flops.py).', '',
             '| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)]
    for r in rows:
        if 'error' in r:
            lines.append(f'| {r["model"]} | error: {r["error"]} |' + ' |' * (len(cols) - 2))
            continue
        cells = [r['model'], _fmt(r.get('params'), 0), _fmt(r.get('gflops'), 1)]
        for s in set_names:
            cells.append('n/a (error below)' if s + '_error' in r else f'{r[s + "_psnr"]:.2f} / {r[s + "_ssim"]:.4f}')
        cells.append(f'{r["mean_psnr"]:.2f} / {r["mean_ssim"]:.4f}' if r.get('mean_psnr') is not None else '–')
        cpu_ms = r.get('cpu_fp32_ms')
        cells += [_fmt(cpu_ms, 0), _fmt(1e3 / cpu_ms if cpu_ms else None, 2), _fmt(r.get('cpu_bf16_ms'), 0)]
        if ort:
            cells.append(_fmt(r.get('ort_cpu_ms'), 0) if 'ort_cpu_ms' in r else f'– ({r.get("ort_note", "")})')
        if cuda:
            cuda_ms = [r.get(k) for k in ('cuda_fp32_ms', 'cuda_fp16_ms', 'cuda_fp16_cl_ms', 'cuda_bf16_cl_ms')]
            best = min((m for m in cuda_ms if m), default=None)
            cells += [_fmt(m, 2) for m in cuda_ms] + [_fmt(1e3 / best if best else None, 1),
                                                      _fmt(r.get('cuda_fp16_peak_mib'), 0)]
        lines.append('| ' + ' | '.join(cells) + ' |')
    errors = sorted({r[k] for r in rows for k in r if k.endswith('_error')})
    lines += ['', 'Errors:'] + [f'- {e}' for e in errors] if errors else []
    return '\n'.join(lines) + '\n'


def pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats in both cost (lower) and quality (higher), by cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float('-inf')
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def plot(rows: list[dict], scale: int, out_dir: str, cost_key: str, xlabel: str) -> str | None:
    """PSNR (mean over sets) against ``cost_key`` with the Pareto front; None when nothing to plot."""
    pts = [(r[cost_key], r['mean_psnr'], r['model']) for r in rows
           if r.get(cost_key) and r.get('mean_psnr') is not None]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.scatter([p[0] for p in pts], [p[1] for p in pts])
    for x, y, label in pts:
        ax.annotate(label, (x, y), textcoords='offset points', xytext=(4, 4), fontsize=8)
    front = pareto([(p[0], p[1]) for p in pts])
    ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], 'r--', label='Pareto front')
    ax.set_xscale('log')
    ax.set_xlabel(xlabel)
    ax.set_ylabel('mean Y-PSNR (dB)')
    ax.set_title(f'x{scale}')
    ax.legend()
    ax.grid(alpha=0.3)
    path = osp.join(out_dir, f'psnr_vs_{cost_key.removesuffix("_ms")}_x{scale}.png')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run(args: argparse.Namespace) -> list[dict]:
    """Every row for every scale, with the output files written under ``args.output``."""
    os.makedirs(args.output, exist_ok=True)
    info = machine_info()
    specs = []
    rows: list[dict] = []
    for text in args.model:
        try:
            specs.append(parse_model(text))
        except ValueError as err:
            tqdm.write(f'error: {err}')
            rows += [{'model': text, 'scale': s, 'error': str(err)} for s in args.scales]
    for scale in args.scales:
        sets: dict[str, Any] = {}
        for name in args.sets:
            folder = resolve_set(name, args.data_root)
            set_name = osp.basename(osp.normpath(folder))
            try:
                sets[set_name] = load_test_set(folder, scale)
            except (OSError, ValueError) as err:
                tqdm.write(f'error: {err}')
                sets[set_name] = err
        scale_rows = [r for r in rows if r['scale'] == scale]
        for spec in specs:
            row = benchmark_model(spec, scale, sets, args)
            scored = [n for n in sets if f'{n}_psnr' in row]
            if scored:
                row['mean_psnr'] = sum(row[f'{n}_psnr'] for n in scored) / len(scored)
                row['mean_ssim'] = sum(row[f'{n}_ssim'] for n in scored) / len(scored)
            scale_rows.append(row)
        with open(osp.join(args.output, f'x{scale}.md'), 'w') as f:
            f.write(markdown_table(scale_rows, list(sets), scale, args, info))
        for key, label in (('cpu_fp32_ms', f'CPU fp32 latency (ms, LR {args.lr_size[1]}x{args.lr_size[0]})'),
                           ('cuda_fp16_ms', 'CUDA fp16 latency (ms)'), ('params', 'parameters')):
            plot(scale_rows, scale, args.output, key, label)
        rows = [r for r in rows if r['scale'] != scale] + scale_rows
    fields = sorted({k for r in rows for k in r}, key=lambda k: (k not in ('model', 'scale'), k))
    with open(osp.join(args.output, 'benchmark.csv'), 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    with open(osp.join(args.output, 'benchmark.json'), 'w') as f:
        json.dump({'machine': info, 'lr_size': args.lr_size, 'sets': args.sets, 'rows': rows}, f, indent=1)
    return rows
