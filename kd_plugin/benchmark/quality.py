"""Quality on the standard SR test sets, with the conventions of the published tables.

* LR input: ``<set>/LR_bicubic/X{s}/<name>`` when present, else our bit-exact MATLAB bicubic of
  the modcropped HR image.
* Metrics: BasicSR's ``calculate_psnr`` / ``calculate_ssim`` with ``crop_border = scale`` on the Y
  channel of 8-bit BGR images.
* Greyscale images (Set14 ``bridge``) are scored on their own single channel, as the published
  tables are. A network gets the grey LR image replicated to 3 channels and its RGB output is
  brought back to one channel with the ITU-R 601 weights without offset (``0.299 R + 0.587 G +
  0.114 B``, MATLAB's ``rgb2gray``, which returns a grey image unchanged). BasicSR's default (read
  as 3 channels, take Y) compresses the range to [16, 235] and inflates such an image's PSNR.
"""
from collections.abc import Callable
from dataclasses import dataclass
from os import path as osp

import numpy as np
from basicsr.metrics import calculate_psnr, calculate_ssim

from kd_plugin.data.image_io import list_images, read_image
from kd_plugin.data.matlab_bicubic import bicubic_downscale, bicubic_upscale, modcrop

#: an upscaler takes an 8-bit LR image (``[h, w]`` grey or ``[h, w, 3]`` BGR) and returns an 8-bit
#: image of the same layout, ``scale`` times larger.
Upscaler = Callable[[np.ndarray], np.ndarray]


@dataclass
class TestImage:
    name: str
    hr: np.ndarray  # uint8, [H, W] or [H, W, 3] BGR, modcropped to the scale
    lr: np.ndarray  # uint8, same layout, [H/s, W/s(, 3)]


def load_test_set(folder: str, scale: int) -> list[TestImage]:
    """The HR/LR pairs of one test set folder: ``HR/`` and optional ``LR_bicubic/X{s}/`` (the standard sets'
    layout; a missing LR is made by MATLAB bicubic), ``HR/`` and ``LR/`` (what ``prepare split`` writes for a
    held-out set) or ``X{s}/HR`` and ``X{s}/LR`` as ``prepare lr`` writes them (e.g. the BD and DN test sets). In
    the last two layouts the LR must be there: it may come from another degradation than bicubic.

    Raises ``FileNotFoundError`` / ``ValueError`` naming the set (and image) when the folder is
    missing, an image cannot be read or is not 8-bit, or an LR file's size disagrees with the scale.
    """
    set_name = osp.basename(osp.normpath(folder))
    hr_dir, lr_dir = osp.join(folder, 'HR'), osp.join(folder, 'LR_bicubic', f'X{scale}')
    given_lr = True  # the layout's LR must be read, never made: it may not be bicubic
    if osp.isdir(osp.join(folder, f'X{scale}', 'HR')):
        hr_dir, lr_dir = osp.join(folder, f'X{scale}', 'HR'), osp.join(folder, f'X{scale}', 'LR')
        if not osp.isdir(lr_dir):
            raise FileNotFoundError(f'test set {set_name}: {lr_dir!r} does not exist. Fix: python -m '
                                    f'kd_plugin.cli.prepare lr --input <HR folder> --output {folder} --scales {scale}')
    elif osp.isdir(osp.join(folder, 'LR')) and not osp.isdir(lr_dir):
        lr_dir = osp.join(folder, 'LR')
    else:
        given_lr = False
    if not osp.isdir(hr_dir):
        raise FileNotFoundError(f'test set {set_name}: {hr_dir!r} does not exist (expected {folder}/HR/ and '
                                f'optionally {folder}/LR_bicubic/X{scale}/, or {folder}/X{scale}/{{HR,LR}})')
    images = []
    for name in list_images(hr_dir):
        hr = read_image(osp.join(hr_dir, name))
        if hr.dtype != np.uint8:
            raise ValueError(f'test set {set_name}: {name} is {hr.dtype}; the published tables score 8-bit images')
        if hr.ndim == 3 and hr.shape[2] == 4:
            hr = hr[..., :3]
        hr = modcrop(hr, scale)
        lr_path = osp.join(lr_dir, name)
        if osp.isfile(lr_path):
            lr = read_image(lr_path)
            if lr.ndim == 3 and lr.shape[2] == 4:
                lr = lr[..., :3]
            if lr.shape[0] * scale != hr.shape[0] or lr.shape[1] * scale != hr.shape[1] or lr.ndim != hr.ndim:
                raise ValueError(f'test set {set_name}: {name}: LR {lr.shape} x{scale} does not give the '
                                 f'(modcropped) HR {hr.shape}. Fix: regenerate {lr_dir} with `python -m '
                                 f'kd_plugin.cli.prepare lr`, or remove it to have the LR computed here')
        elif given_lr:
            raise FileNotFoundError(f'test set {set_name}: {name} has no LR image {lr_path!r}; this layout gives '
                                    'its own LR (it may not be bicubic). Fix: add it, or remove the HR image')
        else:
            lr = bicubic_downscale(hr, scale)
        images.append(TestImage(osp.splitext(name)[0], hr, lr))
    if not images:
        raise FileNotFoundError(f'test set {set_name}: no images in {hr_dir!r}')
    return images


def to_grey(img: np.ndarray) -> np.ndarray:
    """``0.299 R + 0.587 G + 0.114 B`` of an 8-bit BGR image, rounded to 8 bits (grey stays grey)."""
    if img.ndim == 2:
        return img
    grey = img[..., 2] * 0.299 + img[..., 1] * 0.587 + img[..., 0] * 0.114
    return np.clip(np.round(grey), 0, 255).astype(np.uint8)


def score(sr: np.ndarray, hr: np.ndarray, scale: int) -> tuple[float, float]:
    """(PSNR, SSIM) of an 8-bit ``sr`` against ``hr``: Y channel for colour, the channel itself for grey."""
    if hr.ndim == 2:
        sr, hr = to_grey(sr)[..., None], hr[..., None]
        y = False
    else:
        y = True
    if sr.shape != hr.shape:
        raise ValueError(f'output {sr.shape} does not match HR {hr.shape}')
    kwargs = {'crop_border': scale, 'input_order': 'HWC', 'test_y_channel': y}
    return float(calculate_psnr(sr, hr, **kwargs)), float(calculate_ssim(sr, hr, **kwargs))


def evaluate(upscale: Upscaler, images: list[TestImage], scale: int,
             progress: Callable[[str], None] | None = None) -> dict[str, float]:
    """Mean PSNR/SSIM of ``upscale`` over ``images`` (``progress(name)`` after each)."""
    psnrs, ssims = [], []
    for image in images:
        p, s = score(upscale(image.lr), image.hr, scale)
        psnrs.append(p)
        ssims.append(s)
        if progress:
            progress(image.name)
    return {'psnr': float(np.mean(psnrs)), 'ssim': float(np.mean(ssims))}


def bicubic_upscaler(scale: int) -> Upscaler:
    """The ``bicubic`` row: MATLAB bicubic upscaling, rounded to 8 bits."""
    return lambda lr: bicubic_upscale(lr, scale)


#: The standard test sets the benchmark and the ablation report on.
TEST_SETS = ('Set5', 'Set14', 'BSD100')


def resolve_set(name: str, data_root: str) -> str:
    """The folder of test set ``name``: ``name`` itself when it is a folder or a path, else ``data_root/name``."""
    return name if osp.isdir(name) or osp.sep in name else osp.join(data_root, name)
