"""Cost of the plugin's archs next to the SR models people use: ``python -m kd_plugin.cli.arch_cost``.

Prints a markdown table for one LR input size and scale, every figure from this one run: parameters,
GFLOPs (everything counted, :mod:`kd_plugin.benchmark.flops`), PyTorch CPU fp32 latency, onnxruntime CPU
latency of the same network exported to ONNX (with the ``[export]`` extra) and, with CUDA, fp32/fp16
latency and peak memory; and the ratios the student's targets are stated in. The plugin's archs also get a
``before`` row: the PyTorch path without the fused CPU kernel and the ONNX export with the 5-D ``GridSample``
slice, the paths they ran before. Weights are random: cost does not depend on them (quality does:
``python -m kd_plugin.cli.benchmark``).
"""
import contextlib
import sys

import torch

from kd_plugin.archs import fused_slice
from kd_plugin.archs.bilateral_grid import grid_sample_export
from kd_plugin.archs.build import build_network
from kd_plugin.benchmark.cost import measure_cost, onnxruntime_op_shares
from kd_plugin.benchmark.peers import peer_specs
from kd_plugin.cli.common import Parser, add_device, tool
from kd_plugin.device import describe, pick_device

PLUGIN_ARCHS = ('HDRNet', 'DeformableHDRNet')


@tool('arch_cost')
def main(argv: list[str] | None = None) -> int:
    parser = Parser('python -m kd_plugin.cli.arch_cost', description=__doc__.splitlines()[0])
    parser.add_argument('--scale', type=int, default=4)
    parser.add_argument('--lr-size', type=int, nargs=2, default=[270, 480], metavar=('H', 'W'))
    parser.add_argument('--threads', type=int, default=2, help='CPU threads for the CPU latencies')
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--all', action='store_true', help='every peer of the README benchmark, not only two')
    parser.add_argument('--skip-onnx', action='store_true', help='no onnxruntime column')
    parser.add_argument('--onnx-profile', action='store_true',
                        help="also print where onnxruntime's time goes (share per op type) for the student")
    add_device(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    cuda = device.type == 'cuda'
    rows, nets = {}, {}
    for name, spec in peer_specs(args.scale, args.all).items():
        net = nets[name] = build_network(dict(spec)).eval()
        rows[name] = measure_cost(net, tuple(args.lr_size), args.threads, args.runs, cuda, cpu_dtypes=('fp32',),
                                  onnx=not args.skip_onnx)
        if name in PLUGIN_ARCHS:
            with fused_slice.disabled(), grid_sample_export():
                rows[f'{name}, before'] = measure_cost(net, tuple(args.lr_size), args.threads, args.runs, cuda,
                                                       cpu_dtypes=('fp32',), onnx=not args.skip_onnx)
    teacher = rows['HDRNet']
    print(f'x{args.scale}, LR {args.lr_size[1]}x{args.lr_size[0]}, torch {torch.__version__}, '
          f'{describe(pick_device("cpu"), args.threads)}{", " + describe(device) if cuda else ""}; '
          'GFLOPs count convolutions, matrix products, '
          'deform_conv2d, grid sampling, interpolation and element-wise ops (kd_plugin/benchmark/flops.py)\n')
    ort = any('ort_cpu_ms' in r for r in rows.values())
    cols = ['params', 'params / HDRNet', 'GFLOPs', 'GFLOPs / HDRNet', f'CPU ms ({args.threads} thr)']
    cols += [f'onnxruntime CPU ms ({args.threads} thr)'] if ort else []
    cols += ['CUDA fp32 ms', 'CUDA fp16 ms', 'CUDA fp16 peak MiB'] if cuda else []
    print('| model | ' + ' | '.join(cols) + ' |')
    print('|---' * (len(cols) + 1) + '|')
    for name, r in rows.items():
        cells = [f'{r["params"]:,}', f'{r["params"] / teacher["params"]:.3f}', f'{r["gflops"]:.1f}',
                 f'{r["gflops"] / teacher["gflops"]:.3f}', f'{r["cpu_fp32_ms"]:.0f}']
        if ort:
            cells.append(f'{r["ort_cpu_ms"]:.0f}' if 'ort_cpu_ms' in r else f'– ({r.get("ort_note", "")})')
        if cuda:
            cells += [f'{r["cuda_fp32_ms"]:.2f}', f'{r["cuda_fp16_ms"]:.2f}', f'{r["cuda_fp16_peak_mib"]:.0f}']
        print(f'| {name} | ' + ' | '.join(cells) + ' |')
    peer = rows['SRVGGNetCompact']
    print()
    for suffix in ('', ', before'):
        student, teacher = rows[f'DeformableHDRNet{suffix}'], rows[f'HDRNet{suffix}']
        print(f'DeformableHDRNet{suffix}: {student["cpu_fp32_ms"] / peer["cpu_fp32_ms"]:.2f}x SRVGGNetCompact\'s CPU '
              f'latency (target <= 0.7), HDRNet / DeformableHDRNet = '
              f'{teacher["cpu_fp32_ms"] / student["cpu_fp32_ms"]:.2f}x (target >= 3.5)'
              + (f', onnxruntime / PyTorch CPU = {student["ort_cpu_ms"] / student["cpu_fp32_ms"]:.2f} (target <= 1)'
                 if 'ort_cpu_ms' in student else ''))
    if args.onnx_profile:
        for suffix, ctx in (('', contextlib.nullcontext), (', before', grid_sample_export)):
            with ctx():
                shares = onnxruntime_op_shares(nets['DeformableHDRNet'], tuple(args.lr_size), args.threads, args.runs)
            print(f"onnxruntime's time on DeformableHDRNet{suffix}, by op type: "
                  + (', '.join(f'{op} {share:.0%}' for op, share in shares.items() if share >= 0.005)
                     or 'not measured (onnxruntime or the export missing)'))
    return 0


if __name__ == '__main__':
    sys.exit(main())
