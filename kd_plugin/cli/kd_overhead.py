"""What distillation costs per step: ``python -m kd_plugin.cli.kd_overhead -opt <KD options file>``.

Times, in one run on the same batch, a student step, the teacher forward, the KD step (with each extra
term on its own), the file's whole recipe and a cached-label step, and their peak memory
(:mod:`kd_plugin.benchmark.kd_overhead` says what each row is). The teacher's weights are random.
"""
import os
import sys

import torch

from kd_plugin.benchmark.kd_overhead import measure, report
from kd_plugin.cli.common import Parser, add_device, tool
from kd_plugin.device import describe, pick_device
from kd_plugin.heap import steady_heap
from kd_plugin.runs import load_options


@tool('kd_overhead')
def main(argv: list[str] | None = None) -> int:
    parser = Parser('python -m kd_plugin.cli.kd_overhead', description=__doc__.splitlines()[0])
    parser.add_argument('-opt', required=True, help='a KD options file (options/train/KD/...)')
    add_device(parser)
    parser.add_argument('--threads', type=int, default=2, help='CPU threads')
    parser.add_argument('--runs', type=int, default=7)
    parser.add_argument('--batch', type=int, help='override datasets.train.batch_size_per_gpu')
    parser.add_argument('--patch', type=int, help='override datasets.train.gt_size')
    parser.add_argument('--autocast', help='override train.teacher.autocast (bf16/fp16)')
    parser.add_argument('--channels-last', action='store_true', help='set train.teacher.channels_last')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    steady_heap()  # as in training processes (kd_plugin/heap.py)
    device = pick_device(args.device)
    kd_opt = load_options(args.opt)
    teacher_opt = kd_opt['train'].get('teacher') or {}
    kd_opt['train']['teacher'] = teacher_opt
    if args.autocast:
        teacher_opt['autocast'] = args.autocast
    if args.channels_last:
        teacher_opt['channels_last'] = True
    row = measure(kd_opt, device.type, args.runs, args.batch, args.patch, args.threads)
    train_set = kd_opt['datasets']['train']
    title = (f'{os.path.basename(args.opt)}: {kd_opt["network_t"]["type"]} -> {kd_opt["network_g"]["type"]}, '
             f'x{kd_opt["scale"]}, batch {args.batch or train_set["batch_size_per_gpu"]}, '
             f'patch {args.patch or train_set["gt_size"]}, {describe(device, args.threads)}, torch {torch.__version__}')
    print(report(row, title))
    return 0


if __name__ == '__main__':
    sys.exit(main())
