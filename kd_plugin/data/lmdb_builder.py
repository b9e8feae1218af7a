"""Image folders -> BasicSR LMDB databases that ``PairedImageDataset`` (``io_backend: lmdb``) reads."""
import os
import shutil
from os import path as osp

from basicsr.utils.lmdb_util import make_lmdb_from_imgs
from PIL import Image

from kd_plugin.data.image_io import list_images, name_difference

_SAFETY = 1.5          # PNG can be a little larger than raw for noise-like images
_MIN_MAP = 64 << 20    # LMDB metadata and small sets


def lmdb_keys(folder: str) -> dict[str, str]:
    """``{lmdb key: file name}`` for a folder; keys are file stems, which must not contain dots.

    BasicSR reads keys back from ``meta_info.txt`` with ``line.split('.')[0]``
    (``basicsr/data/data_util.py:142``, ``data_util.py:144``), so ``a.b.png`` would silently become key ``a``.
    """
    keys = {}
    for name in list_images(folder):
        stem = osp.splitext(name)[0]
        if '.' in stem or ' ' in stem or not stem.isascii():
            raise ValueError(f'{osp.join(folder, name)!r}: LMDB keys come from file stems, which must be ASCII '
                             'without dots or spaces (BasicSR splits meta_info.txt lines on them); rename the file')
        if stem in keys:
            raise ValueError(f'{folder!r} holds both {keys[stem]!r} and {name!r}: they would share LMDB key {stem!r}')
        keys[stem] = name
    if not keys:
        raise ValueError(f'no images found in {folder!r}')
    return keys


def estimate_map_size(folder: str, names: list[str]) -> int:
    """LMDB map size that fits every image of ``names`` however their sizes differ."""
    total = 0
    for name in names:
        with Image.open(osp.join(folder, name)) as im:
            w, h = im.size
            channels = len(im.getbands())
            bytes_per_sample = 2 if im.mode.startswith('I;16') or im.mode == 'I' else 1
        total += w * h * channels * bytes_per_sample
    return int(total * _SAFETY) + _MIN_MAP


def build_lmdb(folder: str, lmdb_path: str, overwrite: bool = False, compress_level: int = 1) -> int:
    """Write every image of ``folder`` into the LMDB ``lmdb_path`` (must end with ``.lmdb``).

    An existing database is kept unless ``overwrite``; even then it is only replaced after the new
    one was written completely. Returns the number of images.
    """
    if not lmdb_path.endswith('.lmdb'):
        raise ValueError(f'LMDB path must end with ".lmdb" (BasicSR detects LMDB folders by it): {lmdb_path!r}')
    if osp.exists(lmdb_path) and not overwrite:
        raise FileExistsError(f'{lmdb_path!r} already exists; pass --overwrite to replace it')
    keys = lmdb_keys(folder)
    names = list(keys.values())
    partial = lmdb_path[:-len('.lmdb')] + f'.partial{os.getpid()}.lmdb'
    shutil.rmtree(partial, ignore_errors=True)
    make_lmdb_from_imgs(folder, partial, names, list(keys), compress_level=compress_level,
                        map_size=estimate_map_size(folder, names))
    if osp.exists(lmdb_path):
        shutil.rmtree(lmdb_path)
    os.replace(partial, lmdb_path)
    return len(names)


def build_paired_lmdbs(pairs: list[tuple[str, str]], overwrite: bool = False) -> None:
    """Build one LMDB per ``(folder, lmdb_path)``; with several, their key sets must be identical.

    All key sets are compared before anything is written.
    """
    key_sets = [(folder, set(lmdb_keys(folder))) for folder, _ in pairs]
    first_folder, first_keys = key_sets[0]
    for folder, keys in key_sets[1:]:
        if keys != first_keys:
            raise ValueError(f'{first_folder!r} and {folder!r} must hold the same image names for a paired LMDB; '
                             f'{name_difference(first_keys, keys, ("the first", "the second"))}')
    for folder, lmdb_path in pairs:
        build_lmdb(folder, lmdb_path, overwrite=overwrite)
