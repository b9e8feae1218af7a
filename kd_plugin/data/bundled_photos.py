"""A small paired SR dataset from the photographs scikit-image ships in its wheel (no download)."""
from os import path as osp

import cv2
import numpy as np

from kd_plugin.data.image_io import write_image

#: Training photographs (RGB, in the scikit-image wheel). The validation photos are disjoint scenes.
TRAIN_PHOTOS = ('astronaut', 'rocket', 'retina', 'immunohistochemistry', 'hubble_deep_field', 'stereo_motorcycle')
VAL_PHOTOS = ('chelsea', 'coffee')


def load_photo(name: str) -> np.ndarray:
    """The RGB uint8 photograph ``skimage.data.<name>()`` (left view for the stereo pair)."""
    import skimage.data

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
