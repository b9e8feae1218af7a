"""Split paired training data into a training part and a held-out validation part.

Settings (loss weights, recipes, schedules) are chosen on images the reported test sets never see:
a few training images are held out, runs are compared on them, and the final models are then trained
on all the training images with the chosen settings.
"""
import os
import random
import shutil
from os import path as osp

from kd_plugin.data.image_io import list_images, name_difference


def split_pairs(folder: str, output: str, holdout: int, seed: int = 0) -> dict[str, list[str]]:
    """Copy ``folder/{HR,LR}`` (same file names) to ``output/{train,val}/{HR,LR}`` with ``holdout``
    pairs, drawn with ``seed``, in ``val``; returns the names in each part. Raises ``ValueError`` when
    the folders do not pair up or ``holdout`` leaves no training pair, ``FileExistsError`` when the
    output exists (a finished split is never overwritten)."""
    if osp.exists(output):
        raise FileExistsError(f'{output} exists; remove it or choose another --output')
    hr, lr = list_images(osp.join(folder, 'HR')), list_images(osp.join(folder, 'LR'))
    if hr != lr:
        raise ValueError(f'{folder}/HR and {folder}/LR hold different names ({name_difference(hr, lr, ("HR", "LR"))})')
    if not 0 < holdout < len(hr):
        raise ValueError(f'--holdout {holdout}: choose between 1 and {len(hr) - 1} of the {len(hr)} pairs')
    val = sorted(random.Random(seed).sample(hr, holdout))
    parts = {'train': [n for n in hr if n not in val], 'val': val}
    for part, names in parts.items():
        for kind in ('HR', 'LR'):
            target = osp.join(output, part, kind)
            os.makedirs(target)
            for name in names:
                shutil.copy2(osp.join(folder, kind, name), osp.join(target, name))
    return parts
