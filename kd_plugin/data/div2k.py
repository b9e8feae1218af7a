"""DIV2K the way BasicSR's ``scripts/data_preparation`` lays it out, resumable and never overwriting.

From the folders as downloaded under ``root``::

    DIV2K_train_HR/0001.png                       DIV2K_train_LR_bicubic/X4/0001x4.png

it writes BasicSR's sub-images and (optionally) LMDBs, with the names its options files use::

    DIV2K_train_HR_sub/0001_s001.png              DIV2K_train_LR_bicubic/X4_sub/0001_s001.png
    DIV2K_train_HR_sub.lmdb                       DIV2K_train_LR_bicubic_X4_sub.lmdb

HR crops are 480 px every 240 px, the last row and column of crops flush with the far edge (BasicSR's
``extract_subimages.py`` with ``thresh_size: 0``); LR crops are the same windows divided by the scale,
and the ``x{s}`` of the LR file names is dropped, so HR and LR sub-images pair by name. Every crop is
written to a temporary name and renamed, an image whose crops all exist is skipped, and a finished
folder (marked by a hidden ``.<folder>.complete`` file beside it) or LMDB is never touched again: an
interrupted run is resumed by running the same command.
"""
import os
from os import path as osp

from PIL import Image
from tqdm import tqdm

from kd_plugin.data.image_io import list_images, name_difference, read_image, write_image
from kd_plugin.data.lmdb_builder import build_lmdb
from kd_plugin.data.subimages import crop_starts

HR_CROP, HR_STEP = 480, 240


def complete_marker(folder: str) -> str:
    """The file beside ``folder`` that marks it finished (beside, not inside: BasicSR lists every file of a
    data folder)."""
    parent, name = osp.split(osp.normpath(folder))
    return osp.join(parent, f'.{name}.complete')


def folders(root: str, scale: int | None = None) -> tuple[str, str]:
    """(source folder, sub-image folder) of the HR images (``scale`` None) or of the LR images at ``scale``."""
    if scale is None:
        return osp.join(root, 'DIV2K_train_HR'), osp.join(root, 'DIV2K_train_HR_sub')
    lr = osp.join(root, 'DIV2K_train_LR_bicubic')
    return osp.join(lr, f'X{scale}'), osp.join(lr, f'X{scale}_sub')


def lmdb_path(root: str, scale: int | None = None) -> str:
    """BasicSR's LMDB name for the HR sub-images (``scale`` None) or the LR sub-images at ``scale``."""
    name = 'DIV2K_train_HR_sub' if scale is None else f'DIV2K_train_LR_bicubic_X{scale}_sub'
    return osp.join(root, f'{name}.lmdb')


def sub_stem(name: str, scale: int | None) -> str:
    """``0001x4.png`` -> ``0001`` (LR at x4), ``0001.png`` -> ``0001`` (HR)."""
    stem = osp.splitext(name)[0]
    suffix = f'x{scale}'
    if scale is not None and stem.endswith(suffix):
        stem = stem[:-len(suffix)]
    return stem


def windows(height: int, width: int, crop: int, step: int) -> list[tuple[int, int]]:
    """Top-left corners of the crops, row by row (BasicSR's order and count)."""
    return [(y, x) for y in crop_starts(height, crop, step) for x in crop_starts(width, crop, step)]


def extract(source: str, target: str, scale: int | None) -> int:
    """Sub-images of every image of ``source`` into ``target``; returns how many were written now."""
    marker = complete_marker(target)
    if osp.isfile(marker):
        return 0
    factor = scale or 1
    crop, step = HR_CROP // factor, HR_STEP // factor
    os.makedirs(target, exist_ok=True)
    written = 0
    for name in tqdm(list_images(source), desc=osp.basename(target), unit='img'):
        with Image.open(osp.join(source, name)) as im:
            width, height = im.size
        stem = sub_stem(name, scale)
        corners = windows(height, width, crop, step)
        outputs = [osp.join(target, f'{stem}_s{i:03d}.png') for i in range(1, len(corners) + 1)]
        if all(osp.isfile(p) for p in outputs):
            continue  # done in an earlier, interrupted run
        img = read_image(osp.join(source, name))
        for (y, x), out in zip(corners, outputs):
            if osp.isfile(out):
                continue
            tmp = out[:-len('.png')] + '.partial.png'
            write_image(tmp, img[y:y + crop, x:x + crop])
            os.replace(tmp, out)
            written += 1
    open(marker, 'w').close()
    return written


def check_pairs(root: str, scale: int) -> int:
    """HR and LR sub-images at ``scale`` pair up by name, and each LR crop is the HR crop / ``scale``;
    returns the number of pairs. Raises ``ValueError`` naming the first problem."""
    hr_dir, lr_dir = folders(root)[1], folders(root, scale)[1]
    hr, lr = list_images(hr_dir), list_images(lr_dir)
    if hr != lr:
        raise ValueError(f'{hr_dir} and {lr_dir} do not pair up ({name_difference(hr, lr, ("HR", "LR"))}). Fix: check '
                         f'that DIV2K_train_LR_bicubic/X{scale} holds the LR image of every HR image, then run the '
                         'command again')
    for name in hr:
        with Image.open(osp.join(hr_dir, name)) as a, Image.open(osp.join(lr_dir, name)) as b:
            if a.size != (b.size[0] * scale, b.size[1] * scale):
                raise ValueError(f'{name}: HR sub-image {a.size[0]}x{a.size[1]} is not {scale} x the LR '
                                 f'{b.size[0]}x{b.size[1]}. Fix: the LR images must be the x{scale} bicubic '
                                 'downscales of the HR images')
    return len(hr)


def prepare_div2k(root: str, scales: list[int], lmdb: bool = False) -> dict[str, int]:
    """Sub-images (and LMDBs) of DIV2K under ``root`` for ``scales``; returns pairs per scale."""
    sources = [(None, *folders(root))] + [(s, *folders(root, s)) for s in scales]
    for scale, source, _ in sources:
        if not osp.isdir(source):
            what = 'HR' if scale is None else f'LR bicubic x{scale}'
            raise FileNotFoundError(f'{source} does not exist. Fix: download DIV2K ({what}) and unpack it under {root}')
    for scale, source, target in sources:
        extract(source, target, scale)
    pairs = {f'x{s}': check_pairs(root, s) for s in scales}
    if lmdb:
        for scale, _, target in sources:
            if not osp.isdir(lmdb_path(root, scale)):
                build_lmdb(target, lmdb_path(root, scale))
    return pairs
