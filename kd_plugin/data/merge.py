"""Several paired training folders -> one, by links (no image is copied or re-encoded).

T91 + the training part of BSD400 become one folder that BasicSR's ``PairedImageDataset`` (and an
LMDB built from it) reads as a single set. Images smaller than the largest patch a file will crop are
left out here, each named on the way, so that the options check never meets them.
"""
import os
from os import path as osp

from PIL import Image

from kd_plugin.data.image_io import list_images, name_difference


def merge_pairs(inputs: list[str], output: str, min_size: int = 0) -> dict[str, list[str]]:
    """Link every ``INPUT/{HR,LR}/NAME`` of ``inputs`` into ``output/{HR,LR}/NAME`` (relative symlinks).

    Pairs whose HR side is shorter than ``min_size`` px are left out. Returns ``{'kept': names,
    'skipped': names}``. Raises, before anything is written: ``FileExistsError`` when ``output``
    exists; ``ValueError`` when an input's HR and LR names differ or two inputs hold the same name.
    """
    if osp.exists(output):
        raise FileExistsError(f'{output} exists; remove it or choose another --output')
    owner: dict[str, str] = {}
    for folder in inputs:
        hr, lr = list_images(osp.join(folder, 'HR')), list_images(osp.join(folder, 'LR'))
        if hr != lr:
            raise ValueError(f'{folder}/HR and {folder}/LR hold different names '
                             f'({name_difference(hr, lr, ("HR", "LR"))})')
        for name in hr:
            if name in owner:
                raise ValueError(f'{name!r} is in both {owner[name]} and {folder}: a merged set needs unique names. '
                                 'Fix: rename one of them')
            owner[name] = folder
    kept, skipped = [], []
    for name, folder in sorted(owner.items()):
        with Image.open(osp.join(folder, 'HR', name)) as image:
            (kept if min(image.size) >= min_size else skipped).append(name)
    for kind in ('HR', 'LR'):
        target = osp.join(output, kind)
        os.makedirs(target)
        for name in kept:
            source = osp.abspath(osp.join(owner[name], kind, name))
            os.symlink(osp.relpath(source, target), osp.join(target, name))
    return {'kept': kept, 'skipped': skipped}
