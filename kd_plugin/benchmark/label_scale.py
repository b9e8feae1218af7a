"""A label set as large as DIV2K's sub-images (the library behind ``python -m kd_plugin.cli.label_scale``).

Builds ``images`` synthetic training pairs (64 px HR crops of scikit-image's bundled photographs, MATLAB
bicubic x4 LR), labels them with a teacher through ``prepare teacher-labels``' code (one pass, fp32, array
store), then measures what a run meets at that size: the build, the pre-run label check (with the LR files
as built, and after they were all rewritten, which makes it hash every LR image again), and the rate at
which ``KDPairedImageDataset`` reads training samples from the store against BasicSR's
``PairedImageDataset`` without labels, in one process and through a two-worker DataLoader, under an
open-file limit of 1,024.
"""
import os
import random
import resource
import time
from os import path as osp
from typing import Any

import cv2
import torch
from basicsr.data import build_dataset

from kd_plugin.archs.build import build_network
from kd_plugin.data.bundled_photos import TRAIN_PHOTOS, load_photo
from kd_plugin.data.label_cache import build_label_set, check_label_set, load_teachers
from kd_plugin.data.matlab_bicubic import bicubic_downscale

HR_SIDE = 64
SCALE = 4


def tiny_teacher(folder: str) -> dict[str, Any]:
    """Options naming a tiny random EDSR x4 teacher, saved as ``<folder>/tiny_teacher.pth`` (seeded)."""
    arch = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': SCALE}
    path = osp.join(folder, 'tiny_teacher.pth')
    if not osp.isfile(path):
        os.makedirs(folder, exist_ok=True)
        torch.manual_seed(0)
        torch.save({'params': build_network(arch).state_dict()}, path)
    return {'network_t': arch, 'path': {'pretrain_network_t': path}}


def write_pairs(folder: str, images: int, seed: int = 0) -> None:
    """``images`` pairs ``<folder>/{HR,LR}/s<i>.png``: random 64 px crops of the bundled photographs."""
    rng = random.Random(seed)
    photos = [cv2.cvtColor(load_photo(name), cv2.COLOR_RGB2BGR) for name in TRAIN_PHOTOS]
    photos = [p if p.ndim == 3 else cv2.cvtColor(p, cv2.COLOR_GRAY2BGR) for p in photos]
    for kind in ('HR', 'LR'):
        os.makedirs(osp.join(folder, kind), exist_ok=True)
    for i in range(images):
        photo = rng.choice(photos)
        top, left = rng.randrange(photo.shape[0] - HR_SIDE), rng.randrange(photo.shape[1] - HR_SIDE)
        hr = photo[top:top + HR_SIDE, left:left + HR_SIDE]
        cv2.imwrite(osp.join(folder, 'HR', f's{i:06d}.png'), hr)
        cv2.imwrite(osp.join(folder, 'LR', f's{i:06d}.png'), bicubic_downscale(hr, SCALE))


def _options(folder: str, teacher_opt: dict[str, Any], labels: str | None) -> dict[str, Any]:
    train = {'name': 'scale', 'type': 'KDPairedImageDataset' if labels else 'PairedImageDataset', 'phase': 'train',
             'scale': SCALE, 'io_backend': {'type': 'disk'}, 'dataroot_gt': osp.join(folder, 'HR'),
             'dataroot_lq': osp.join(folder, 'LR'), 'gt_size': HR_SIDE, 'use_hflip': True, 'use_rot': True,
             'num_worker_per_gpu': 2, 'batch_size_per_gpu': 16}
    if labels:
        train['dataroot_teacher'] = labels
    return {'model_type': 'KDModel', 'scale': SCALE, 'network_t': dict(teacher_opt['network_t']),
            'path': dict(teacher_opt['path']), 'train': {}, 'datasets': {'train': train}}


def _read_rate(opt: dict[str, Any], samples: int, seed: int = 0) -> dict[str, float]:
    """Samples per second read by the training set of ``opt``: ``samples`` random ones in this process, and
    one pass of a two-worker DataLoader over the whole set."""
    dataset = build_dataset(dict(opt['datasets']['train']))
    order = random.Random(seed).sample(range(len(dataset)), min(samples, len(dataset)))
    start = time.perf_counter()
    for index in order:
        dataset[index]
    one = len(order) / (time.perf_counter() - start)
    loader = torch.utils.data.DataLoader(dataset, batch_size=16, num_workers=2, shuffle=True)
    start = time.perf_counter()
    count = sum(batch['gt'].shape[0] for batch in loader)
    return {'one_process': one, 'loader_2_workers': count / (time.perf_counter() - start)}


def measure(folder: str, images: int, teacher_opt: dict[str, Any], samples: int = 5000) -> dict[str, Any]:
    """Build the set in ``folder`` (pairs kept between calls, labels rebuilt) and measure it; ``teacher_opt``:
    a KD options dict whose ``network_t`` and ``path.pretrain_network_t`` label it."""
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, limit[1]), limit[1]))
    result: dict[str, Any] = {'images': images, 'open_file_limit': 1024}
    if not osp.isdir(osp.join(folder, 'LR')) or len(os.listdir(osp.join(folder, 'LR'))) != images:
        start = time.perf_counter()
        write_pairs(folder, images)
        result['pairs_s'] = time.perf_counter() - start
    labels = osp.join(folder, 'labels_none')
    opt = _options(folder, teacher_opt, None)
    teachers, precision = load_teachers(opt, None, torch.device('cpu'), fp32=True)
    start = time.perf_counter()
    manifest = build_label_set(opt['datasets']['train'], SCALE, teachers, 'none', labels, torch.device('cpu'),
                               precision, npy=True, overwrite=True)
    result.update(build_s=time.perf_counter() - start, labelling_s=manifest['seconds'],
                  store_bytes=os.path.getsize(osp.join(labels + '.npy', 'labels.u8')),
                  manifest_bytes=os.path.getsize(osp.join(labels, 'manifest.json')))
    with_labels = _options(folder, teacher_opt, labels + '.npy')
    with_labels['datasets']['train']['type'] = 'KDPairedImageDataset'
    start = time.perf_counter()
    check_label_set(with_labels)
    result['check_s'] = time.perf_counter() - start
    for name in os.listdir(osp.join(folder, 'LR')):  # new modification times: the check hashes every LR image
        os.utime(osp.join(folder, 'LR', name))
    start = time.perf_counter()
    check_label_set(with_labels)
    result['check_rehash_s'] = time.perf_counter() - start
    result['read_plain'] = _read_rate(opt, samples)
    result['read_labels'] = _read_rate(with_labels, samples)
    return result


def report(result: dict[str, Any]) -> str:
    plain, labels = result['read_plain'], result['read_labels']
    lines = [f'{result["images"]} pairs (64 px HR, x4), open-file limit {result["open_file_limit"]}']
    if 'pairs_s' in result:
        lines.append(f'pairs written: {result["pairs_s"]:.0f} s')
    lines += [
        f'label set built: {result["build_s"]:.0f} s in all ({result["labelling_s"]:.0f} s labelling; the rest LR '
        f'digests, PNG labels and the array store of {result["store_bytes"] / 1e6:.0f} MB; manifest '
        f'{result["manifest_bytes"] / 1e6:.1f} MB)',
        f'pre-run label check: {result["check_s"]:.1f} s; after every LR file was touched (all rehashed): '
        f'{result["check_rehash_s"]:.1f} s',
        '| samples per second | one process | DataLoader, 2 workers |', '|---|---|---|',
        f'| PairedImageDataset (no labels) | {plain["one_process"]:.0f} | {plain["loader_2_workers"]:.0f} |',
        f'| KDPairedImageDataset (array store) | {labels["one_process"]:.0f} | {labels["loader_2_workers"]:.0f} |',
        f'| ratio | {labels["one_process"] / plain["one_process"]:.2f} | '
        f'{labels["loader_2_workers"] / plain["loader_2_workers"]:.2f} |',
    ]
    return '\n'.join(lines)
