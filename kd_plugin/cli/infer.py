"""Upscale your own images: ``python -m kd_plugin.cli.infer --model SPEC --input IMG_OR_DIR --output DIR``.

``SPEC`` is ``OPTIONS.yml`` (its ``network_g`` and ``path.pretrain_network_g``, or the run's
``net_g_latest.pth``) or ``OPTIONS.yml@CHECKPOINT.pth``, as for the benchmark, or a ``.onnx`` file
written by ``python -m kd_plugin.cli.export`` (run by onnxruntime on the CPU). Bit depth, grey and alpha
are kept; ``--tile N`` bounds memory on large images (:mod:`kd_plugin.inference`). Outputs are
``<DIR>/<stem>_x<scale>.png``; an input file is never overwritten. Exit status 2 for a bad option, 1 when
some images failed (each named).
"""
import sys

from kd_plugin.cli.common import Parser, add_device, fail, tool
from kd_plugin.device import pick_device
from kd_plugin.inference import input_images, load_upscaler, upscale_files


@tool('infer')
def main(argv: list[str] | None = None) -> int:
    parser = Parser('python -m kd_plugin.cli.infer', description=__doc__.splitlines()[0])
    parser.add_argument('--model', required=True, help='OPTIONS.yml, OPTIONS.yml@CHECKPOINT.pth or MODEL.onnx')
    parser.add_argument('--input', required=True, help='an image or a folder of images')
    parser.add_argument('--output', required=True, help='folder for the results')
    parser.add_argument('--tile', type=int, default=0, help='LR tile size (0: whole image)')
    parser.add_argument('--tile-overlap', type=int, default=16, help='LR pixels of context around each tile')
    add_device(parser)
    parser.add_argument('--fp16', action='store_true', help='fp16 autocast (CUDA only)')
    args = parser.parse_args(argv)
    net, scale = load_upscaler(args.model)
    inputs = input_images(args.input)
    device = pick_device(args.device)
    failed = upscale_files(net.to(device), inputs, args.output, scale, device, args.tile, args.tile_overlap,
                           args.fp16, report=lambda message: fail(f'infer: {message}'))
    if failed:
        print(f'{len(failed)} of {len(inputs)} image(s) failed: {", ".join(failed)}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
