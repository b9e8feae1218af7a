"""Export a trained network to ONNX and prove it: ``python -m kd_plugin.cli.export --model SPEC --output model.onnx``.

``SPEC`` is ``OPTIONS.yml`` or ``OPTIONS.yml@CHECKPOINT.pth`` as for the benchmark (HDRNet,
DeformableHDRNet, BasicSR archs). The file takes ``[1, 3, H, W]`` images in [0, 1] of any size and is
written only once onnxruntime matches PyTorch on a real photograph (1e-4 in fp32, 2e-2 with ``--fp16``);
an op without an ONNX translation is an error naming the op and the layer (:mod:`kd_plugin.onnx_export`).
An existing output file is kept unless ``--overwrite``.
"""
import sys
from os import path as osp

from kd_plugin.cli.common import Parser, tool
from kd_plugin.model_loading import load_model, parse_model
from kd_plugin.onnx_export import TOLERANCE, export_verified, require_onnx


@tool('export')
def main(argv: list[str] | None = None) -> int:
    parser = Parser('python -m kd_plugin.cli.export', description=__doc__.splitlines()[0])
    parser.add_argument('--model', required=True, help='OPTIONS.yml or OPTIONS.yml@CHECKPOINT.pth')
    parser.add_argument('--output', required=True, help='the .onnx file to write')
    parser.add_argument('--fp16', action='store_true', help='half-precision weights and activations (fp32 I/O)')
    parser.add_argument('--opset', type=int, default=20, help='ONNX opset (default 20; DeformConv needs 19)')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing output file')
    args = parser.parse_args(argv)
    require_onnx()
    if osp.exists(args.output) and not args.overwrite:
        raise ValueError(f'--output {args.output} exists; it is kept. Fix: choose another path, or pass --overwrite')
    try:
        spec = parse_model(args.model)
        net = load_model(spec).float().eval()
    except ValueError as err:
        raise ValueError(f'--model: {err}') from err
    precision = 'fp16' if args.fp16 else 'fp32'
    try:
        results = export_verified(net, args.output, args.opset, args.fp16,
                                  {'kd_plugin.scale': spec.upscale, 'kd_plugin.arch': spec.arch.get('type'),
                                   'kd_plugin.source': spec.source},
                                  progress=lambda step: print(f'[export] {spec.label}: {step}', flush=True))
    except ValueError as err:
        raise ValueError(f'{spec.label}: {err}') from err
    checks = ', '.join(f'LR {h}x{w}: {diff:.1e}' for (h, w), diff in results)
    size = osp.getsize(args.output) / 2**20
    print(f'wrote {args.output} ({size:.1f} MiB, opset {args.opset}, {precision}, x{spec.upscale}, dynamic height '
          f'and width); onnxruntime vs PyTorch max |diff|: {checks} (tolerance {TOLERANCE[precision]:g})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
