"""``KDPairedImageDataset``: BasicSR's paired dataset with a cached teacher label beside each GT image."""
from os import path as osp
from typing import Any

import numpy as np
from basicsr.data.paired_image_dataset import PairedImageDataset
from basicsr.data.transforms import augment, paired_random_crop
from basicsr.utils import FileClient, bgr2ycbcr, imfrombytes, img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from torchvision.transforms.functional import normalize

from kd_plugin.data.label_arrays import LabelArrays, holds_arrays

#: The option that names the label folder (or LMDB) of ``python -m kd_plugin.cli.prepare teacher-labels``.
LABEL_ROOT = 'dataroot_teacher'


def label_location(image_path: str, root: str, backend: str) -> str:
    """Where the label of image ``image_path`` lives (the GT image of a paired set; the LR image of an LR-only
    source, whose labels are named after the LR images): ``<root>/<stem>`` in an array store (``<root>`` ending
    in ``.npy``; the stem is its index key), else the LMDB key (the image's key, its file stem) or
    ``<root>/<stem>.png`` (labels are PNG whatever the image's format)."""
    name = osp.splitext(osp.basename(image_path))[0]
    if holds_arrays(root):
        return osp.join(root, name)  # a name in the store's index, shown as a path
    if backend == 'lmdb':
        return image_path
    return osp.join(root, name + '.png')


def attach_labels(root: str, io_backend_opt: dict[str, Any]) -> LabelArrays | None:
    """Get a dataset ready to read the label set ``root``: an array store is returned (mapped at its first read);
    PNG labels in an LMDB join the dataset's ``io_backend_opt`` (changed in place) as client key ``teacher``;
    a PNG folder needs nothing (None)."""
    if holds_arrays(root):
        return LabelArrays(root)
    if io_backend_opt['type'] == 'lmdb':
        io_backend_opt['db_paths'] = [*io_backend_opt['db_paths'], root]
        io_backend_opt['client_keys'] = [*io_backend_opt['client_keys'], 'teacher']
    return None


def read_label(file_client: FileClient, arrays: LabelArrays | None, location: str) -> np.ndarray:
    """The label at ``location`` (:func:`label_location`), ``[H, W, C]`` BGR: from an array store a read-only
    uint8 view (crop it before anything reads it: only the crop's bytes are then read), else the decoded PNG as
    float32 in [0, 1] (``to_float`` makes both the same)."""
    if arrays is not None:
        return arrays[osp.basename(location)]
    return imfrombytes(file_client.get(location, 'teacher'), float32=True)


def to_float(img: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [0, 1] with the arithmetic of BasicSR's ``imfrombytes(float32=True)``, so a label
    read from an array equals the same label read from its PNG bit for bit; float32 passes unchanged."""
    return img if img.dtype == np.float32 else img.astype(np.float32) / 255.


@DATASET_REGISTRY.register()
class KDPairedImageDataset(PairedImageDataset):
    """``PairedImageDataset`` plus ``dataroot_teacher``: whole-image teacher outputs ``T(x)``, one per GT image,
    named like it (disk: ``<stem>.png``; LMDB: the GT's key), as ``prepare teacher-labels`` writes them.

    Each training sample's label gets the GT's random crop and the same flips/rotation (BasicSR's
    ``paired_random_crop`` and ``augment`` on the list ``[gt, label]``), so ``label[i] = T(x)`` at exactly
    the GT patch's place. The sample dict adds ``'teacher'``: ``[C, gt_size, gt_size]`` float in [0, 1], the
    GT's layout. Without ``dataroot_teacher`` (e.g. validation) it is ``PairedImageDataset``.

    Every other option is ``PairedImageDataset``'s (``io_backend`` disk or lmdb for all three roots,
    ``filename_tmpl``, ``meta_info_file``, ``color``, ``mean``/``std``); DDP, workers and ``prefetch_mode``
    work unchanged because the label is one more image of the same sample.

    A PNG or LMDB label is decoded whole before the crop, like the GT: a third HR-sized decode per sample.
    An array store (``dataroot_teacher: ...npy``, any ``io_backend`` for GT/LQ;
    :mod:`kd_plugin.data.label_arrays`) is one file memory-mapped once per process, and only the crop is read,
    which keeps a cached-label sample about as cheap to load as a plain one whatever the set's size.
    """

    def __init__(self, opt: dict[str, Any]) -> None:
        super().__init__(opt)
        self.label_root = opt.get(LABEL_ROOT)
        if not self.label_root:
            return
        backend = self.io_backend_opt['type']
        self.arrays = attach_labels(self.label_root, self.io_backend_opt)
        for item in self.paths:
            item['teacher_path'] = label_location(item['gt_path'], self.label_root, backend)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not self.label_root:
            return super().__getitem__(index)
        if self.file_client is None:
            self.file_client = FileClient(self.io_backend_opt.pop('type'), **self.io_backend_opt)
        scale = self.opt['scale']
        item = self.paths[index]
        img_gt = imfrombytes(self.file_client.get(item['gt_path'], 'gt'), float32=True)
        img_lq = imfrombytes(self.file_client.get(item['lq_path'], 'lq'), float32=True)
        img_label = read_label(self.file_client, self.arrays, item['teacher_path'])  # arrays: cropped before read
        if img_label.shape != img_gt.shape:
            raise ValueError(f'{LABEL_ROOT}: label {item["teacher_path"]} is {img_label.shape[1]}x'
                             f'{img_label.shape[0]}, its GT {item["gt_path"]} {img_gt.shape[1]}x{img_gt.shape[0]}. '
                             'Fix: rebuild the labels with python -m kd_plugin.cli.prepare teacher-labels -opt '
                             '<this file> --overwrite')
        if self.opt['phase'] == 'train':
            (img_gt, img_label), img_lq = paired_random_crop([img_gt, img_label], img_lq, self.opt['gt_size'], scale,
                                                             item['gt_path'])
            # as floats before augment, whose in-place flips must not reach a read-only memory map
            img_gt, img_label, img_lq = augment([img_gt, to_float(img_label), img_lq], self.opt['use_hflip'],
                                                self.opt['use_rot'])
        img_label = to_float(img_label)
        if self.opt.get('color') == 'y':
            img_gt, img_label, img_lq = (bgr2ycbcr(img, y_only=True)[..., None] for img in (img_gt, img_label, img_lq))
        if self.opt['phase'] != 'train':
            img_gt = img_gt[0:img_lq.shape[0] * scale, 0:img_lq.shape[1] * scale, :]
            img_label = img_label[0:img_lq.shape[0] * scale, 0:img_lq.shape[1] * scale, :]
        img_gt, img_label, img_lq = img2tensor([img_gt, img_label, img_lq], bgr2rgb=True, float32=True)
        if self.mean is not None or self.std is not None:
            for img in (img_lq, img_gt, img_label):
                normalize(img, self.mean, self.std, inplace=True)
        return {'lq': img_lq, 'gt': img_gt, 'teacher': img_label, 'lq_path': item['lq_path'],
                'gt_path': item['gt_path'], 'teacher_path': item['teacher_path']}
