"""A label set as large as DIV2K's sub-images: ``python -m kd_plugin.cli.label_scale --images 32000``.

Builds that many synthetic 64 px training pairs, labels them with a teacher (one pass, array store) and reports
the build time, the pre-run label check's time and the rate at which training samples are read, with and
without labels, under an open-file limit of 1,024 (:mod:`kd_plugin.benchmark.label_scale`). The default teacher
is a tiny random EDSR: what is measured is the label set's machinery at that size, and a real teacher's pass
costs what it costs per image whatever the set (``-opt`` takes a KD file's own teacher instead).
"""
import sys

import torch

from kd_plugin.benchmark.label_scale import measure, report, tiny_teacher
from kd_plugin.cli.common import Parser, tool
from kd_plugin.runs import load_options, shipped


@tool('label_scale')
def main(argv: list[str] | None = None) -> int:
    parser = Parser('python -m kd_plugin.cli.label_scale', description=__doc__.splitlines()[0])
    parser.add_argument('--images', type=int, default=32000, help='training pairs (default 32000: DIV2K x4 sub-images)')
    parser.add_argument('--output', required=True, help='folder for the pairs and labels (kept between runs)')
    parser.add_argument('-opt', help='a KD options file whose network_t and path.pretrain_network_t label the set '
                                      '(default: a tiny random EDSR x4, saved in --output)')
    parser.add_argument('--samples', type=int, default=5000, help='random samples read in one process (default 5000)')
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.opt:
        opt = load_options(shipped(args.opt))
        opt['path']['pretrain_network_t'] = shipped(opt['path']['pretrain_network_t'])
    else:
        opt = tiny_teacher(args.output)
    print(report(measure(args.output, args.images, opt, args.samples)), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
