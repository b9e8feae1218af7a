"""Upscaling images with a trained network or an exported ONNX file (the library behind
``python -m kd_plugin.cli.infer``).

8- and 16-bit images keep their bit depth; grey images come out grey (the network sees them replicated to
RGB); RGBA keeps its alpha (upscaled bicubically). Tiled inference (``tile``) runs the network on N×N LR
tiles with ``overlap`` LR pixels of context on each side, so memory stays bounded on large images; for a
network whose receptive field fits the overlap the result equals the untiled one (to rounding). Networks
with a global path (HDRNet's coefficient network pools the whole input) see only their tile.
"""
import os
from collections.abc import Callable
from contextlib import nullcontext
from os import path as osp

import cv2
import numpy as np
import torch
from torch import nn

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


def load_upscaler(model: str) -> tuple[nn.Module, int]:
    """``(network, scale)`` of ``OPTIONS.yml[@CHECKPOINT.pth]`` or an exported ``.onnx`` file; ``ValueError``
    naming ``--model`` when it cannot be loaded or its scale is unknown."""
    try:
        if model.endswith('.onnx'):
            net = OnnxNet(model)
            scale = net.scale
        else:
            spec = parse_model(model)
            net, scale = load_model(spec), spec.upscale
    except ValueError as err:
        raise ValueError(f'--model: {err}') from err
    if not scale:
        raise ValueError(f'--model {model}: its scale is unknown (no kd_plugin.scale metadata). Fix: export it with '
                         'python -m kd_plugin.cli.export')
    return net, scale


def input_images(path: str) -> list[str]:
    """The image ``path``, or the images of folder ``path``; ``ValueError`` naming ``--input`` otherwise."""
    if osp.isdir(path):
        return [osp.join(path, n) for n in list_images(path)]
    if osp.isfile(path):
        return [path]
    raise ValueError(f'--input: {path!r} does not exist')


def upscale_files(net: nn.Module, inputs: list[str], output: str, scale: int, device: torch.device, tile: int,
                  overlap: int, fp16: bool, report: Callable[[str], None]) -> list[str]:
    """Write ``<output>/<stem>_x<scale>.png`` for every input; returns the inputs that failed, each reported
    through ``report`` (an input file is never overwritten)."""
    input_paths = {osp.realpath(p) for p in inputs}
    failed = []
    for path in inputs:
        target = osp.join(output, f'{osp.splitext(osp.basename(path))[0]}_x{scale}.png')
        try:
            if osp.realpath(target) in input_paths:
                raise ValueError(f'{target} is one of the inputs; not overwritten. Fix: choose another --output')
            out = upscale_image(net, path, scale, device, tile, overlap, fp16)
            os.makedirs(output, exist_ok=True)
            if not cv2.imwrite(target, out):
                raise ValueError(f'cannot write {target!r}')
        except ValueError as err:
            report(str(err))
            failed.append(path)
            continue
        print(f'{path} -> {target} ({out.shape[1]}x{out.shape[0]}, {out.dtype})', flush=True)
    return failed
