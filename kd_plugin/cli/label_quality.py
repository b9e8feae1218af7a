"""How good are a teacher's labels: ``python -m kd_plugin.cli.label_quality -opt <KD options file>``.

On the KD file's own training images, at random GT patches of its ``gt_size``, the Y-PSNR against the GT
of the teacher's patch labels (online KD), its whole-image output cropped, the x8 self-ensemble (what
``prepare teacher-labels`` stores) and, with several ``--teacher``, their mean
(:mod:`kd_plugin.benchmark.label_quality`).
"""
import sys

import torch

from kd_plugin.benchmark.label_quality import fp32_teachers, measure, report
from kd_plugin.cli.common import Parser, tool
from kd_plugin.runs import load_options


@tool('label_quality')
def main(argv: list[str] | None = None) -> int:
    parser = Parser('python -m kd_plugin.cli.label_quality', description=__doc__.splitlines()[0])
    parser.add_argument('-opt', required=True, help='a KD options file: its training set, gt_size and teacher')
    parser.add_argument('--teacher', action='append', metavar='SPEC',
                        help='OPTIONS.yml[@CHECKPOINT] of a teacher (repeatable); default: the file\'s network_t')
    parser.add_argument('--patches', type=int, default=4, help='random GT patches per image (default 4)')
    parser.add_argument('--max-images', type=int, help='only the first N training images')
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    opt = load_options(args.opt)
    result = measure(opt, fp32_teachers(opt, args.teacher), args.patches, max_images=args.max_images)
    train_set = opt['datasets']['train']
    print(report(result, f'{args.opt}: Y-PSNR (dB) of teacher labels against the GT, x{opt["scale"]}, '
                         f'{train_set["dataroot_gt"]}, {args.patches} random {train_set["gt_size"]} px GT patches per '
                         'image, labels rounded to 8 bits, fp32 teachers'))
    return 0


if __name__ == '__main__':
    sys.exit(main())
