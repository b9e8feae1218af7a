"""Listing and reading image files, with errors that name the file."""
import os
from collections.abc import Iterable
from os import path as osp

import cv2
import numpy as np

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm')


def list_images(folder: str) -> list[str]:
    """Sorted file names (not paths) of the images directly inside ``folder``."""
    if not osp.isdir(folder):
        raise FileNotFoundError(f'image folder {folder!r} does not exist')
    return sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith('.'))


def name_difference(first: Iterable[str], second: Iterable[str], labels: tuple[str, str]) -> str:
    """``only in <label 0>: [...], only in <label 1>: [...]``, the first three sorted names of each side's
    surplus: the detail of an error about two image collections that should hold the same names."""
    a, b = set(first), set(second)
    return f'only in {labels[0]}: {sorted(a - b)[:3]}, only in {labels[1]}: {sorted(b - a)[:3]}'


def read_image(path: str) -> np.ndarray:
    """Read an image as stored (grey stays 2-D, 16-bit stays 16-bit, BGR channel order)."""
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f'cannot read image {path!r}: the file is missing, truncated or not an image')
    return img


def write_image(path: str, img: np.ndarray) -> None:
    """Write ``img`` to ``path`` (parent folders are created); raises if OpenCV cannot encode it."""
    os.makedirs(osp.dirname(path) or '.', exist_ok=True)
    if not cv2.imwrite(path, img):
        raise OSError(f'cannot write image {path!r}')
