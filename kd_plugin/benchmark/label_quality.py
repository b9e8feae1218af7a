"""How good are a teacher's labels (the library behind ``python -m kd_plugin.cli.label_quality -opt <KD file>``).

On the KD file's own training images, at random GT patches of the file's ``gt_size`` (the same places
for every column), the Y-PSNR against the GT of

* ``patch``: the teacher run on the LR training patch, as online distillation labels it;
* ``whole``: the teacher run on the whole LR image, cropped to the patch;
* ``x8``: the x8 self-ensemble of the whole image, cropped (what ``prepare teacher-labels`` stores);
* ``mean of teachers``: with several ``--teacher``, the per-pixel mean of their x8 whole-image outputs.

Labels are rounded to 8 bits first, as stored; PSNR on the Y channel of each patch (BasicSR's
``calculate_psnr``, no border cropped), averaged over patches.
"""
import random
from typing import Any

import numpy as np
import torch
from basicsr.metrics import calculate_psnr
from basicsr.utils import imfrombytes, img2tensor

from kd_plugin.data.label_cache import teacher_specs, training_pairs
from kd_plugin.data.lr_identity import file_client
from kd_plugin.distill.teacher_labels import TeacherRunner, label
from kd_plugin.model_loading import load_model


def _bgr8(t: torch.Tensor) -> np.ndarray:
    """``[1, 3, H, W]`` RGB in [0, 1] -> HWC BGR uint8, as a label is stored."""
    return (t[0].clamp(0, 1).permute(1, 2, 0).numpy()[:, :, ::-1] * 255).round().astype(np.uint8)


def measure(opt: dict[str, Any], teachers: dict[str, TeacherRunner], patches: int = 4, seed: int = 0,
            max_images: int | None = None) -> dict[str, dict[str, float]]:
    """``{teacher label: {column: mean Y-PSNR}}`` (plus ``'mean of teachers'`` with several teachers)."""
    train_set, scale = opt['datasets']['train'], opt['scale']
    gt_size = train_set['gt_size']
    lq_size = gt_size // scale
    client, gt_client = file_client(train_set, 'lq'), file_client(train_set, 'gt')
    rng = random.Random(seed)
    sums: dict[str, dict[str, list[float]]] = {name: {'patch': [], 'whole': [], 'x8': []} for name in teachers}
    mean_col: list[float] = []
    pairs = training_pairs(train_set)[:max_images]
    for pair in pairs:
        lq = img2tensor(imfrombytes(client.get(pair['lq_path'], 'lq'), float32=True), bgr2rgb=True)[None]
        gt = (imfrombytes(gt_client.get(pair['gt_path'], 'gt'), float32=True) * 255).round().astype(np.uint8)
        h, w = lq.shape[-2:]
        spots = [(rng.randint(0, h - lq_size), rng.randint(0, w - lq_size)) for _ in range(patches)]
        x8_outs = []
        for name, teacher in teachers.items():
            whole = _bgr8(label([teacher], lq, scale))
            x8 = label([teacher], lq, scale, 'x8')
            x8_outs.append(x8)
            x8 = _bgr8(x8)
            for top, left in spots:
                gt_patch = gt[top * scale:(top + lq_size) * scale, left * scale:(left + lq_size) * scale]
                on_patch = _bgr8(label([teacher], lq[..., top:top + lq_size, left:left + lq_size], scale))
                region = np.s_[top * scale:(top + lq_size) * scale, left * scale:(left + lq_size) * scale]
                for column, img in (('patch', on_patch), ('whole', whole[region]), ('x8', x8[region])):
                    sums[name][column].append(calculate_psnr(img, gt_patch, 0, test_y_channel=True))
        if len(teachers) > 1:
            mean = _bgr8(torch.stack(x8_outs).mean(dim=0))
            for top, left in spots:
                region = np.s_[top * scale:(top + lq_size) * scale, left * scale:(left + lq_size) * scale]
                mean_col.append(calculate_psnr(mean[region], gt[region], 0, test_y_channel=True))
    result = {name: {c: float(np.mean(v)) for c, v in cols.items()} for name, cols in sums.items()}
    if mean_col:
        result['mean of teachers'] = {'x8': float(np.mean(mean_col))}
    return result


def report(result: dict[str, dict[str, float]], title: str) -> str:
    lines = [title, '', '| teacher | label from the LR patch | whole image, cropped | whole image x8, cropped |',
             '|---|---|---|---|']
    for name, cols in result.items():
        cells = [f'{cols[c]:.2f}' if c in cols else '' for c in ('patch', 'whole', 'x8')]
        if 'patch' in cols:
            cells[1] += f' ({cols["whole"] - cols["patch"]:+.2f})'
            cells[2] += f' ({cols["x8"] - cols["whole"]:+.2f})'
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def fp32_teachers(opt: dict[str, Any], specs: list[str] | None) -> dict[str, TeacherRunner]:
    """``{label: fp32 teacher}``: each ``OPTIONS.yml[@CHECKPOINT]`` of ``specs``, else the file's ``network_t``."""
    return {spec.label: TeacherRunner(load_model(spec)) for spec in teacher_specs(opt, specs)}
