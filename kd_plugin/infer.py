"""Upscale your own images: ``python -m kd_plugin.infer --model SPEC --input IMG_OR_DIR --output DIR``.

``SPEC`` is ``OPTIONS.yml`` (its ``network_g`` and ``path.pretrain_network_g``, or the run's
``net_g_latest.pth``) or ``OPTIONS.yml@CHECKPOINT.pth``, as for the benchmark, or a ``.onnx`` file
written by ``python -m kd_plugin.export`` (run by onnxruntime on the CPU). 8- and 16-bit
images keep their bit depth; grey images come out grey (the network sees them replicated to RGB);
RGBA keeps its alpha (upscaled bicubically). ``--tile N`` runs the network on N×N LR tiles with
``--tile-overlap`` LR pixels of context on each side, so memory stays bounded on large images; for
a network whose receptive field fits the overlap the result equals the untiled one (to rounding).
Networks with a global path (HDRNet's coefficient network pools the whole input) see only their tile.
Outputs are ``<DIR>/<stem>_x<scale>.png``; an input file is never overwritten.
"""
import os
import sys
from contextlib import nullcontext
from os import path as osp

import cv2
import numpy as np
import torch
from torch import nn

from kd_plugin.cli import Parser, fail
from kd_plugin.data.image_io import list_images, read_image
from kd_plugin.model_loading import OnnxNet, load_model, parse_model


def upscale_tensor(net: nn.Module, x: torch.Tensor, scale: int, tile: int = 0, overlap: int = 16) -> torch.Tensor:
    """``net(x)`` for ``x`` ``[1, 3, h, w]``, in ``tile``×``tile`` pieces with ``overlap`` context (0: whole)."""
    if tile <= 0 or (x.shape[-2] <= tile and x.shape[-1] <= tile):
        return net(x)
    _, _, h, w = x.shape
    out = None
    for top in range(0, h, tile):
        for left in range(0, w, tile):
            bottom, right = min(top + tile, h), min(left + tile, w)
            t0, l0 = max(top - overlap, 0), max(left - overlap, 0)
            t1, l1 = min(bottom + overlap, h), min(right + overlap, w)
            piece = net(x[..., t0:t1, l0:l1])
            if out is None:
                out = piece.new_zeros(1, piece.shape[1], h * scale, w * scale)
            out[..., top * scale:bottom * scale, left * scale:right * scale] = piece[
                ..., (top - t0) * scale:(bottom - t0) * scale, (left - l0) * scale:(right - l0) * scale]
    return out


def read_input(path: str) -> tuple[np.ndarray, float, np.ndarray | None, bool]:
    """(RGB float image in [0, 1] ``[h, w, 3]``, max value, alpha or None, was grey) of an image file."""
    img = read_image(path)
    if img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f'{path!r}: {img.dtype} images are not supported (8- or 16-bit only)')
    peak = 255.0 if img.dtype == np.uint8 else 65535.0
    grey = img.ndim == 2 or img.shape[2] == 1
    alpha = img[..., 3] if img.ndim == 3 and img.shape[2] == 4 else None
    if grey:
        rgb = np.repeat(img.reshape(img.shape[0], img.shape[1], 1), 3, axis=2)
    else:
        rgb = img[..., 2::-1]  # BGR(A) -> RGB
    return rgb.astype(np.float32) / peak, peak, alpha, grey


def upscale_image(net: nn.Module, path: str, scale: int, device: torch.device, tile: int, overlap: int,
                  fp16: bool) -> np.ndarray:
    """The upscaled image of ``path`` as an array ready for ``cv2.imwrite`` (same depth and layout)."""
    rgb, peak, alpha, grey = read_input(path)
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].to(device)
    context = torch.autocast('cuda', dtype=torch.float16) if fp16 and device.type == 'cuda' else nullcontext()
    with torch.no_grad(), context:
        y = upscale_tensor(net, x, scale, tile, overlap).float().clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy()
    dtype = np.uint8 if peak == 255.0 else np.uint16
    if grey:
        out = y[..., 0] * 0.299 + y[..., 1] * 0.587 + y[..., 2] * 0.114
    else:
        out = y[..., ::-1]
    out = np.clip(np.round(out * peak), 0, peak).astype(dtype)
    if alpha is not None:
        big = cv2.resize(alpha, (out.shape[1], out.shape[0]), interpolation=cv2.INTER_CUBIC)
        out = np.concatenate([out, big[..., None]], axis=2)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = Parser('python -m kd_plugin.infer', description=__doc__.splitlines()[0])
    parser.add_argument('--model', required=True, help='OPTIONS.yml, OPTIONS.yml@CHECKPOINT.pth or MODEL.onnx')
    parser.add_argument('--input', required=True, help='an image or a folder of images')
    parser.add_argument('--output', required=True, help='folder for the results')
    parser.add_argument('--tile', type=int, default=0, help='LR tile size (0: whole image)')
    parser.add_argument('--tile-overlap', type=int, default=16, help='LR pixels of context around each tile')
    parser.add_argument('--device', default='auto', choices=['auto', 'cpu', 'cuda'])
    parser.add_argument('--fp16', action='store_true', help='fp16 autocast (CUDA only)')
    args = parser.parse_args(argv)
    try:
        if args.model.endswith('.onnx'):
            net = OnnxNet(args.model)
            scale = net.scale
        else:
            spec = parse_model(args.model)
            net = load_model(spec)
            scale = spec.upscale
    except ValueError as err:
        return fail(f'--model: {err}')
    if not scale:
        return fail(f'--model {args.model}: its scale is unknown (no kd_plugin.scale metadata). Fix: export it with '
                    'python -m kd_plugin.export')
    if osp.isdir(args.input):
        inputs = [osp.join(args.input, n) for n in list_images(args.input)]
    elif osp.isfile(args.input):
        inputs = [args.input]
    else:
        print(f'error: --input: {args.input!r} does not exist', file=sys.stderr)
        return 2
    device = torch.device(('cuda' if torch.cuda.is_available() else 'cpu') if args.device == 'auto' else args.device)
    net = net.to(device)
    input_paths = {osp.realpath(p) for p in inputs}
    failed = []
    for path in inputs:
        target = osp.join(args.output, f'{osp.splitext(osp.basename(path))[0]}_x{scale}.png')
        if osp.realpath(target) in input_paths:
            print(f'error: {target} is one of the inputs; not overwritten. Fix: choose another --output',
                  file=sys.stderr)
            failed.append(path)
            continue
        try:
            out = upscale_image(net, path, scale, device, args.tile, args.tile_overlap, args.fp16)
        except ValueError as err:
            print(f'error: {err}', file=sys.stderr)
            failed.append(path)
            continue
        os.makedirs(args.output, exist_ok=True)
        if not cv2.imwrite(target, out):
            print(f'error: cannot write {target!r}', file=sys.stderr)
            failed.append(path)
            continue
        print(f'{path} -> {target} ({out.shape[1]}x{out.shape[0]}, {out.dtype})', flush=True)
    if failed:
        print(f'{len(failed)} of {len(inputs)} image(s) failed: {", ".join(failed)}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
