"""``LabelledLRDataset``: LR images that have no HR, each with its cached teacher label (the LR-only source of
``MixedKDDataset``).

The teacher's output on the whole LR image, ``T(x)`` (``prepare teacher-labels`` on the LR folder or LMDB, each
label named after its LR image's stem), is the only target such an image has. A training sample is a random crop
of ``gt_size // scale`` LR pixels and the label cropped at exactly the corresponding place (``gt_size`` pixels),
the same flips/rotation on both: BasicSR's ``paired_random_crop`` and ``augment`` with the label in the GT slot.
Labels are read as ``KDPairedImageDataset`` reads them (PNG folder, LMDB, or an array store mapped once per process
of which only the crop is read).

So that a batch can mix these samples with paired ones under the default collate, a sample has the keys of a
``KDPairedImageDataset`` sample: ``lq`` ``[C, gt_size/s, gt_size/s]``, ``teacher`` ``[C, gt_size, gt_size]``
float in [0, 1], ``gt`` a placeholder of zeros of the label's shape (nothing may train on it: ``KDModel`` leaves
such samples out of the GT losses), ``lq_path``, ``teacher_path``, ``gt_path`` (``''``), plus ``has_gt``: False.
"""
from os import path as osp
from typing import Any

import torch
from basicsr.data.data_util import paths_from_lmdb
from basicsr.data.transforms import augment, paired_random_crop
from basicsr.utils import FileClient, bgr2ycbcr, imfrombytes, img2tensor
from torch.utils import data
from torchvision.transforms.functional import normalize

from kd_plugin.data.image_io import list_images
from kd_plugin.data.kd_paired_dataset import LABEL_ROOT, attach_labels, label_location, read_label, to_float


def has_gt(set_opt: dict[str, Any]) -> bool:
    """Whether a training set's options give ground truth (``dataroot_gt``); one without is LR-only."""
    return bool(set_opt.get('dataroot_gt'))


def lr_only_paths(set_opt: dict[str, Any]) -> list[str]:
    """The LR images of an LR-only set as its ``FileClient`` reads them: the keys of an LMDB (``io_backend:
    lmdb``), else the files that ``meta_info_file`` lists (first word of each line) or the images in
    ``dataroot_lq``, as paths, sorted by name."""
    root = set_opt['dataroot_lq']
    if set_opt['io_backend']['type'] == 'lmdb':
        return paths_from_lmdb(root)
    if set_opt.get('meta_info_file'):
        with open(set_opt['meta_info_file']) as f:
            return [osp.join(root, line.split()[0]) for line in f if line.strip()]
    return [osp.join(root, name) for name in list_images(root)]


class LabelledLRDataset(data.Dataset):
    """LR images with their teacher labels and no HR (see the module docstring). Options: ``dataroot_lq``,
    ``dataroot_teacher`` (required), ``io_backend`` (disk or lmdb, for the LR images and PNG labels; an array
    store suits either), ``meta_info_file``, ``scale``, ``phase``, ``gt_size``, ``use_hflip``, ``use_rot``,
    ``color``, ``mean``/``std``: ``PairedImageDataset``'s keys, without the GT's."""

    def __init__(self, opt: dict[str, Any]) -> None:
        super().__init__()
        self.opt = opt
        self.label_root = opt.get(LABEL_ROOT)
        if not self.label_root:
            raise ValueError(f'{LABEL_ROOT}: LR images without HR need their teacher labels. Fix: set it and build '
                             'them with python -m kd_plugin.cli.prepare teacher-labels -opt <this options file>')
        self.file_client = None
        self.io_backend_opt = dict(opt['io_backend'])
        self.mean, self.std = opt.get('mean'), opt.get('std')
        backend = self.io_backend_opt['type']
        if backend == 'lmdb':
            self.io_backend_opt.update(db_paths=[opt['dataroot_lq']], client_keys=['lq'])
        self.arrays = attach_labels(self.label_root, self.io_backend_opt)
        self.paths = [{'lq_path': path, 'teacher_path': label_location(path, self.label_root, backend)}
                      for path in lr_only_paths(opt)]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.file_client is None:
            self.file_client = FileClient(self.io_backend_opt.pop('type'), **self.io_backend_opt)
        scale = self.opt['scale']
        item = self.paths[index]
        img_lq = imfrombytes(self.file_client.get(item['lq_path'], 'lq'), float32=True)
        img_label = read_label(self.file_client, self.arrays, item['teacher_path'])  # arrays: cropped before read
        h, w = img_lq.shape[:2]
        if img_label.shape[:2] != (h * scale, w * scale):
            raise ValueError(f'{LABEL_ROOT}: label {item["teacher_path"]} is {img_label.shape[1]}x'
                             f'{img_label.shape[0]}, and its LR image {item["lq_path"]} ({w}x{h}) times the scale '
                             f'{scale} is {w * scale}x{h * scale}. Fix: rebuild the labels with python -m '
                             'kd_plugin.cli.prepare teacher-labels -opt <this options file> --overwrite')
        if self.opt['phase'] == 'train':
            img_label, img_lq = paired_random_crop(img_label, img_lq, self.opt['gt_size'], scale, item['lq_path'])
            # as floats before augment, whose in-place flips must not reach a read-only memory map
            img_label, img_lq = augment([to_float(img_label), img_lq], self.opt['use_hflip'], self.opt['use_rot'])
        img_label = to_float(img_label)
        if self.opt.get('color') == 'y':
            img_label, img_lq = (bgr2ycbcr(img, y_only=True)[..., None] for img in (img_label, img_lq))
        img_label, img_lq = img2tensor([img_label, img_lq], bgr2rgb=True, float32=True)
        if self.mean is not None or self.std is not None:
            for img in (img_lq, img_label):
                normalize(img, self.mean, self.std, inplace=True)
        return {'lq': img_lq, 'gt': torch.zeros_like(img_label), 'teacher': img_label, 'has_gt': False,
                'lq_path': item['lq_path'], 'gt_path': '', 'teacher_path': item['teacher_path']}
