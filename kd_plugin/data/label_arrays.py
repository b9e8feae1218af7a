"""A label set's arrays in one file: written once from the PNG labels, memory-mapped once per process.

An array store is a folder named ``<label set>.npy`` holding

* ``labels.u8``: every label's HWC uint8 BGR pixels (as BasicSR's ``imfrombytes`` decodes the PNG), one after
  the other, uncompressed;
* ``index.json``: ``{"labels": {<GT stem>: [offset, height, width, channels]}}``;
* the label set's ``manifest.json``.

A training process maps ``labels.u8`` once and a sample reads only the bytes of its crop, so loading a label
costs about as much as nothing, and the process holds one file descriptor however many labels the set has.
(One ``.npy`` file per label, mapped and kept open per process, ran out of descriptors past about 1,000
labels under the usual limit of 1,024 open files: a DIV2K sub-image set has 32,000.)
"""
import json
import os
import shutil
from os import path as osp
from typing import Any

import numpy as np
from basicsr.utils import imfrombytes

#: A label folder whose name ends so is an array store.
ARRAYS_SUFFIX = '.npy'
DATA_FILE = 'labels.u8'
INDEX_FILE = 'index.json'


def holds_arrays(root: str) -> bool:
    """Whether the label set ``root`` is an array store (``prepare teacher-labels --npy``)."""
    return osp.normpath(root).endswith(ARRAYS_SUFFIX)


def old_store_error(root: str) -> str:
    """The message for an array folder without ``index.json``: one ``<stem>.npy`` per label, as kd_plugin
    wrote them before the single-file store."""
    return (f'{root!r} is an array folder of the earlier kind (one .npy file per label), which a large set cannot '
            f'hold open. Fix: remove {root!r} and run python -m kd_plugin.cli.prepare teacher-labels -opt <this '
            'options file> --npy: the arrays are rebuilt from the PNG labels beside it, without running the teacher')


def missing_store_error(root: str) -> str:
    """The message for a label set path where nothing is."""
    return (f'{root!r} does not exist. Fix: python -m kd_plugin.cli.prepare teacher-labels -opt <this options file> '
            '--npy builds it there (the labels go where datasets.train.dataroot_teacher points)')


def write_label_arrays(folder: str, arrays_path: str, names: list[str], manifest: str) -> None:
    """The PNG labels ``<folder>/<name>.png`` of ``names`` as an array store at ``arrays_path`` with the
    ``manifest`` file copied in; written beside (``<arrays_path>.partial<pid>``), then moved into place whole."""
    partial = arrays_path + f'.partial{os.getpid()}'
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    index, offset = {}, 0
    with open(osp.join(partial, DATA_FILE), 'wb') as data:
        for name in names:
            with open(osp.join(folder, name + '.png'), 'rb') as f:
                img = np.ascontiguousarray(imfrombytes(f.read()))
            data.write(img.tobytes())
            index[name] = [offset, *img.shape]
            offset += img.nbytes
    with open(osp.join(partial, INDEX_FILE), 'w') as f:
        json.dump({'labels': index}, f)
    shutil.copy(manifest, osp.join(partial, osp.basename(manifest)))
    if osp.exists(arrays_path):
        shutil.rmtree(arrays_path)
    os.replace(partial, arrays_path)


def read_index(root: str) -> dict[str, list[int]]:
    """``{stem: [offset, h, w, c]}`` of array store ``root``; ``ValueError`` (with the fix) for a folder of the
    earlier kind."""
    path = osp.join(root, INDEX_FILE)
    if not osp.isdir(root):
        raise ValueError(missing_store_error(root))
    if not osp.isfile(path):
        raise ValueError(old_store_error(root))
    with open(path) as f:
        return json.load(f)['labels']


class LabelArrays:
    """Read access to one array store: ``arrays[name]`` is the label of GT stem ``name``, ``[H, W, C]`` uint8, a
    read-only view into the store's one memory map (opened at the first read in each process; a pickled copy,
    as a spawned loader worker gets, maps its own)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.index = read_index(root)
        self._data: np.ndarray | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, '_data': None}

    def __contains__(self, name: str) -> bool:
        return name in self.index

    def __getitem__(self, name: str) -> np.ndarray:
        if self._data is None:
            self._data = np.memmap(osp.join(self.root, DATA_FILE), dtype=np.uint8, mode='r')
        offset, h, w, c = self.index[name]
        return self._data[offset:offset + h * w * c].reshape(h, w, c)

    def expected_bytes(self) -> int:
        """How long ``labels.u8`` must be for every label of the index: the end of the last one."""
        return max((offset + h * w * c for offset, h, w, c in self.index.values()), default=0)

    def truncation(self) -> str | None:
        """None where ``labels.u8`` holds every label of the index; else what is wrong with it (missing, or how many
        bytes it lacks), for an error message."""
        path = osp.join(self.root, DATA_FILE)
        if not osp.isfile(path):
            return f'{path!r} is missing'
        have, need = osp.getsize(path), self.expected_bytes()
        if have < need:
            return f'{path!r} holds {have} bytes and its index {need} (a copy cut short?)'
        return None

    def sizes(self) -> dict[str, tuple[int, int]]:
        """``{stem: (width, height)}`` of every label, from the index (nothing is mapped)."""
        return {name: (w, h) for name, (_, h, w, _) in self.index.items()}
