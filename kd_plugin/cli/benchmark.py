"""Quality next to cost for SR models: ``python -m kd_plugin.cli.benchmark --model ... [--sets ...]``.

For every scale and model: Y-PSNR/SSIM per test set and averaged, parameters, FLOPs at a stated LR size
(with ``deform_conv2d`` counted), latency and FPS on the CPU (fp32, bf16 autocast) and, with CUDA,
fp32/fp16/bf16 with and without channels_last, and CUDA peak memory (:mod:`kd_plugin.benchmark.compare`).
Writes ``x{s}.md`` per scale, ``benchmark.csv``, ``benchmark.json`` and PNG plots of PSNR against cost.
"""
import os
import sys
from os import path as osp

from kd_plugin.benchmark.compare import run
from kd_plugin.benchmark.quality import TEST_SETS
from kd_plugin.cli.common import Parser, add_device, add_sets, output_dir, tool


@tool('benchmark')
def main(argv: list[str] | None = None) -> int:
    parser = Parser('python -m kd_plugin.cli.benchmark', description=__doc__.splitlines()[0])
    parser.add_argument('--model', action='append', default=[], metavar='[LABEL=]SPEC',
                        help='bicubic | OPTIONS.yml | OPTIONS.yml@CHECKPOINT.pth (repeatable)')
    add_sets(parser, list(TEST_SETS))
    parser.add_argument('--scales', type=int, nargs='+', default=[4])
    parser.add_argument('--lr-size', type=int, nargs=2, default=[270, 480], metavar=('H', 'W'))
    parser.add_argument('--threads', type=int, default=2, help='CPU threads for CPU latency')
    parser.add_argument('--runs', type=int, default=3, help='timed runs (CUDA: at least 20)')
    add_device(parser)
    parser.add_argument('--skip-cost', action='store_true', help='quality only')
    parser.add_argument('--skip-onnx', action='store_true', help='no onnxruntime latency column')
    parser.add_argument('--output', help='folder for the tables, csv, json and plots (default: results/benchmark)')
    args = parser.parse_args(argv)
    args.model = args.model or ['bicubic']
    args.output = output_dir(args.output, 'benchmark')
    rows = run(args)
    for scale in args.scales:
        print(open(osp.join(args.output, f'x{scale}.md')).read())
    print(f'wrote {args.output}/: ' + ', '.join(sorted(os.listdir(args.output))))
    return 1 if rows and all('error' in r for r in rows) else 0


if __name__ == '__main__':
    sys.exit(main())
