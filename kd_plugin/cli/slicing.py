"""Fast slicing, before and after: ``python -m kd_plugin.cli.slicing``.

Times, round-robin in one run and on the same weights, the bilateral-grid archs' forward pass (and a
training step) with the reference full-resolution path and with the fast path they run now, prints the
largest output difference, and puts SRVGGNetCompact beside them (:mod:`kd_plugin.benchmark.slicing`).
"""
import sys

import torch

from kd_plugin.benchmark.slicing import measure, report
from kd_plugin.cli.common import Parser, tool
from kd_plugin.device import describe, pick_device


@tool('slicing')
def main(argv: list[str] | None = None) -> int:
    parser = Parser('python -m kd_plugin.cli.slicing', description=__doc__.splitlines()[0])
    parser.add_argument('--scale', type=int, default=4)
    parser.add_argument('--lr-size', type=int, nargs=2, default=[270, 480], metavar=('H', 'W'))
    parser.add_argument('--batch', type=int, default=32, help='training-step batch')
    parser.add_argument('--patch', type=int, default=64, help='training-step HR patch side')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--runs', type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    row = measure(args.scale, tuple(args.lr_size), args.batch, args.patch, args.runs)
    print(report(row, f'x{args.scale}, LR {args.lr_size[1]}x{args.lr_size[0]} forward; training step batch '
                      f'{args.batch} x {args.patch}px HR; fp32, median of {args.runs}; '
                      f'{describe(pick_device("cpu"), args.threads)}, torch {torch.__version__}'))
    return 0


if __name__ == '__main__':
    sys.exit(main())
