"""HR folder -> modcropped HR and LR folders (MATLAB bicubic, or the BD / DN degradations), per scale."""
import json
from os import path as osp

from tqdm import tqdm

from kd_plugin.data.degradations import BD_RULE, BD_SIGMA, bd_kernel_size, degrader
from kd_plugin.data.image_io import list_images, read_image, write_image
from kd_plugin.data.matlab_bicubic import modcrop

#: Written beside ``HR``/``LR`` in each ``X{s}`` folder: which degradation made the LR images, and its seed.
DEGRADATION_FILE = 'degradation.json'


def make_lr_pairs(hr_folder: str, out_folder: str, scales: list[int], overwrite: bool = False,
                  degradation: str = 'bi', seed: int = 0) -> dict[int, str]:
    """Write ``out/X{s}/HR`` (HR modcropped to ``s``) and ``out/X{s}/LR`` (``degradation`` of it: ``bi``
    bicubic ``1/s``, ``bd`` blur and nearest downscale, ``dn`` bicubic and noise drawn from ``seed``; see
    :mod:`kd_plugin.data.degradations`) for each scale, and ``out/X{s}/degradation.json`` naming them.

    Any image OpenCV reads is accepted (PNG, JPEG such as BSD400's originals, BMP, ...); the pairs are
    always lossless PNG named ``<stem>.png``, so two inputs with one stem are an error naming both.

    BI's LR images equal the standard benchmark LR files bit for bit. Returns ``{scale: X{s} folder}``.
    Existing files are never replaced unless ``overwrite`` is set.
    """
    names = list_images(hr_folder)
    if not names:
        raise ValueError(f'no images found in {hr_folder!r}')
    by_stem: dict[str, str] = {}
    for name in names:
        other = by_stem.setdefault(osp.splitext(name)[0], name)
        if other != name:
            raise ValueError(f'{hr_folder!r} holds {other!r} and {name!r}: both would become '
                             f'{osp.splitext(name)[0]}.png. Fix: keep one of them in the folder')
    degrade = degrader(degradation, seed)
    targets = {s: osp.join(out_folder, f'X{s}') for s in scales}
    if not overwrite:
        for folder in targets.values():
            clash = [n for n in names if osp.exists(osp.join(folder, 'LR', osp.splitext(n)[0] + '.png'))]
            if clash:
                raise FileExistsError(f'{folder}/LR already holds {clash[0]!r} (and {len(clash) - 1} more); '
                                      'pass --overwrite to replace them or choose another --output')
    for name in tqdm(names, desc=f'{degradation.upper()} LR', unit='img'):
        hr = read_image(osp.join(hr_folder, name))
        stem = osp.splitext(name)[0]
        for s, folder in targets.items():
            write_image(osp.join(folder, 'HR', stem + '.png'), modcrop(hr, s))
            write_image(osp.join(folder, 'LR', stem + '.png'), degrade(hr, s, stem))
    for s, folder in targets.items():
        with open(osp.join(folder, DEGRADATION_FILE), 'w') as f:
            record = {'degradation': degradation, 'scale': s, 'seed': seed if degradation == 'dn' else None}
            if degradation == 'bd':
                record.update(rule=BD_RULE, kernel_size=bd_kernel_size(s), sigma=BD_SIGMA)
            json.dump(record, f)
    return targets
