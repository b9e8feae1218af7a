"""HR folder -> modcropped HR and MATLAB-bicubic LR folders, per scale."""
from os import path as osp

from tqdm import tqdm

from kd_plugin.data.image_io import list_images, read_image, write_image
from kd_plugin.data.matlab_bicubic import bicubic_downscale, modcrop


def make_lr_pairs(hr_folder: str, out_folder: str, scales: list[int], overwrite: bool = False) -> dict[int, str]:
    """Write ``out/X{s}/HR`` (HR modcropped to ``s``) and ``out/X{s}/LR`` (bicubic ``1/s``) for each scale.

    Any image OpenCV reads is accepted (PNG, JPEG such as BSD400's originals, BMP, ...); the pairs are
    always lossless PNG named ``<stem>.png``, so two inputs with one stem are an error naming both.

    The LR images equal the standard benchmark LR files bit for bit. Returns ``{scale: X{s} folder}``.
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
    targets = {s: osp.join(out_folder, f'X{s}') for s in scales}
    if not overwrite:
        for folder in targets.values():
            clash = [n for n in names if osp.exists(osp.join(folder, 'LR', osp.splitext(n)[0] + '.png'))]
            if clash:
                raise FileExistsError(f'{folder}/LR already holds {clash[0]!r} (and {len(clash) - 1} more); '
                                      'pass --overwrite to replace them or choose another --output')
    for name in tqdm(names, desc='bicubic LR', unit='img'):
        hr = read_image(osp.join(hr_folder, name))
        stem = osp.splitext(name)[0]
        for s, folder in targets.items():
            write_image(osp.join(folder, 'HR', stem + '.png'), modcrop(hr, s))
            write_image(osp.join(folder, 'LR', stem + '.png'), bicubic_downscale(hr, s))
    return targets
