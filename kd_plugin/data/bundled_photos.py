"""A small paired SR dataset from the photographs scikit-image ships in its wheel (no download)."""
import os
from os import path as osp

import cv2
import numpy as np
import skimage.data
from basicsr.utils import mkdir_and_rename

from kd_plugin.data.image_io import write_image
from kd_plugin.data.lmdb_builder import build_paired_lmdbs
from kd_plugin.data.lr_generation import make_lr_pairs
from kd_plugin.data.subimages import crop_subimages

#: Training photographs (RGB, in the scikit-image wheel). The validation photos are disjoint scenes.
TRAIN_PHOTOS = ('astronaut', 'rocket', 'retina', 'immunohistochemistry', 'hubble_deep_field', 'stereo_motorcycle')
VAL_PHOTOS = ('chelsea', 'coffee')


#: training photos are cut into sub-images of this size (HR px, step half of it): decoding a 2 MP
#: PNG per sample would cost more CPU than the small nets' training step.
PHOTO_CROP = 192


def load_photo(name: str) -> np.ndarray:
    """The RGB uint8 photograph ``skimage.data.<name>()`` (left view for the stereo pair)."""
    img = getattr(skimage.data, name)()
    return img[0] if isinstance(img, tuple) else img


def write_photos(out_folder: str) -> dict[str, str]:
    """Write the bundled photos as BGR PNGs to ``out/train/HR`` and ``out/val/HR``; returns both folders."""
    folders = {}
    for split, names in (('train', TRAIN_PHOTOS), ('val', VAL_PHOTOS)):
        folders[split] = osp.join(out_folder, split, 'HR')
        for name in names:
            write_image(osp.join(folders[split], f'{name}.png'), cv2.cvtColor(load_photo(name), cv2.COLOR_RGB2BGR))
    return folders


def prepare_photos(output: str, scales: list[int], lmdb: bool) -> None:
    """Build (once) the no-download paired dataset under ``output``.

    ``train/HR`` holds the whole training photos, ``train/HR_sub`` their overlapping sub-images and
    ``train/X{s}/{HR,LR}`` the pairs made from those; ``val/X{s}/{HR,LR}`` the whole validation photos.
    A folder left by an earlier layout is archived (renamed), not deleted."""
    marker = osp.join(output, f".complete-v2-x{'-'.join(map(str, scales))}{'-lmdb' if lmdb else ''}")
    if osp.exists(marker):
        print(f'{output}: already prepared', flush=True)
        return
    for stale in [osp.join(output, 'train', 'HR_sub')] + [osp.join(output, 'train', f'X{s}') for s in scales]:
        if osp.exists(stale):
            mkdir_and_rename(stale)
            os.rmdir(stale)
    folders = write_photos(output)
    sub = osp.join(output, 'train', 'HR_sub')
    crop_subimages(folders['train'], sub, PHOTO_CROP, PHOTO_CROP // 2, min_size=PHOTO_CROP // 2)
    make_lr_pairs(sub, osp.join(output, 'train'), scales, overwrite=True)
    make_lr_pairs(folders['val'], osp.join(output, 'val'), scales, overwrite=True)
    if lmdb:
        for s in scales:
            base = osp.join(output, 'train', f'X{s}')
            build_paired_lmdbs([(osp.join(base, 'HR'), osp.join(base, 'HR.lmdb')),
                                (osp.join(base, 'LR'), osp.join(base, 'LR.lmdb'))], overwrite=True)
    open(marker, 'w').close()
    print(f'{output}: prepared {", ".join(f"x{s}" for s in scales)}', flush=True)
