"""Crop large training images into overlapping sub-images (faster random access while training)."""
from os import path as osp

from tqdm import tqdm

from kd_plugin.data.image_io import list_images, read_image, write_image


def crop_starts(length: int, size: int, step: int) -> list[int]:
    """Start offsets of ``size`` crops every ``step`` along ``length``, the last one flush with the far edge
    (BasicSR's ``extract_subimages.py`` with ``thresh_size: 0``); one crop at 0 when ``length <= size``."""
    starts = list(range(0, max(length - size, 0) + 1, step))
    if starts[-1] + size < length:  # cover the far edge too
        starts.append(length - size)
    return starts


def crop_subimages(in_folder: str, out_folder: str, size: int, step: int, min_size: int = 0) -> int:
    """Cut every image of ``in_folder`` into ``size``×``size`` crops every ``step`` pixels.

    Crops are named ``<stem>_s001.png``, ... Images smaller than ``size`` are copied whole;
    edge crops narrower than ``min_size`` are skipped. Returns the number of files written.
    """
    if size <= 0 or step <= 0:
        raise ValueError(f'--size and --step must be positive, got size={size}, step={step}')
    count = 0
    for name in tqdm(list_images(in_folder), desc='sub-images', unit='img'):
        img = read_image(osp.join(in_folder, name))
        stem = osp.splitext(name)[0]
        h, w = img.shape[:2]
        index = 0
        for y in crop_starts(h, size, step):
            for x in crop_starts(w, size, step):
                crop = img[y:y + size, x:x + size]
                if min(crop.shape[:2]) < min_size:
                    continue
                index += 1
                out = osp.join(out_folder, f'{stem}_s{index:03d}.png')
                if osp.exists(out):
                    raise FileExistsError(f'{out!r} exists; choose an empty --output folder')
                write_image(out, crop)
                count += 1
    return count
