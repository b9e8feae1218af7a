"""Cost of the plugin's archs next to common peers: ``python -m kd_plugin.benchmark.arch_cost``.

Prints a markdown table (parameters, GFLOPs, CPU latency and, with CUDA, fp32/fp16 latency and
peak memory) for one LR input size and scale; every figure comes from this one run.
"""
import platform
import sys

import torch

import kd_plugin  # noqa: F401  (registers HDRNet / DeformableHDRNet)
from kd_plugin.archs.build import build_network
from kd_plugin.benchmark.cost import measure_cost
from kd_plugin.cli import Parser


def peer_specs(scale: int) -> dict[str, dict]:
    """The default comparison: our two archs and two small BasicSR peers."""
    return {
        'HDRNet': {'type': 'HDRNet', 'upscale': scale},
        'DeformableHDRNet': {'type': 'DeformableHDRNet', 'upscale': scale},
        'EDSR (32x4)': {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 32, 'num_block': 4,
                        'upscale': scale},
        'SRVGGNetCompact': {'type': 'SRVGGNetCompact', 'upscale': scale},
    }


def main(argv: list[str] | None = None) -> int:
    parser = Parser('python -m kd_plugin.benchmark.arch_cost', description=__doc__.splitlines()[0])
    parser.add_argument('--scale', type=int, default=4)
    parser.add_argument('--lr-size', type=int, nargs=2, default=[270, 480], metavar=('H', 'W'))
    parser.add_argument('--threads', type=int, default=2, help='CPU threads for the CPU latency')
    parser.add_argument('--runs', type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    rows = {name: measure_cost(build_network(dict(spec)).eval(), tuple(args.lr_size), args.threads, args.runs, cuda,
                               cpu_dtypes=('fp32',)) for name, spec in peer_specs(args.scale).items()}
    teacher = rows['HDRNet']
    print(f'x{args.scale}, LR {args.lr_size[1]}x{args.lr_size[0]}, torch {torch.__version__}, '
          f'{platform.processor() or platform.machine()}, {args.threads} CPU threads'
          f'{", " + torch.cuda.get_device_name() if cuda else ""}; GFLOPs count convolutions, matrix products, '
          'deform_conv2d, grid sampling, interpolation and element-wise ops (kd_plugin/benchmark/flops.py)\n')
    cols = ['params', 'params / HDRNet', 'GFLOPs', 'GFLOPs / HDRNet', f'CPU ms ({args.threads} thr)']
    if cuda:
        cols += ['CUDA fp32 ms', 'CUDA fp16 ms', 'CUDA fp16 peak MiB']
    print('| model | ' + ' | '.join(cols) + ' |')
    print('|---' * (len(cols) + 1) + '|')
    for name, r in rows.items():
        cells = [f'{r["params"]:,}', f'{r["params"] / teacher["params"]:.3f}', f'{r["gflops"]:.1f}',
                 f'{r["gflops"] / teacher["gflops"]:.3f}', f'{r["cpu_fp32_ms"]:.0f}']
        if cuda:
            cells += [f'{r["cuda_fp32_ms"]:.2f}', f'{r["cuda_fp16_ms"]:.2f}', f'{r["cuda_fp16_peak_mib"]:.0f}']
        print(f'| {name} | ' + ' | '.join(cells) + ' |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
