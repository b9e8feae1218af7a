"""Which LR images a label set was made from: recorded when the labels are built, re-checked before a run.

A label is the teacher's output on one LR image, so labels are only valid beside the very images they were
made from: a degraded or re-generated copy under the same names and sizes would train the student on
labels of inputs it never sees. The label set's manifest records, per image, a digest of the decoded 8-bit
pixels (what the teacher saw; a re-encoded file with the same pixels still matches) and the file's size
and modification time (for an LMDB, those of its ``data.mdb``). A run compares the cheap file facts first
and recomputes the digests only when they differ, e.g. after a fresh ``make data``.
"""
import hashlib
import os
from collections.abc import Callable
from os import path as osp
from typing import Any

import numpy as np
from basicsr.utils import FileClient, imfrombytes


def file_client(train_set: dict[str, Any], which: str) -> FileClient:
    """BasicSR's ``FileClient`` for the training set's ``which`` images (``lq`` or ``gt``), folder or LMDB;
    read with ``client.get(path, which)``."""
    backend = dict(train_set['io_backend'])
    if backend['type'] == 'lmdb':
        backend.update(db_paths=[train_set[f'dataroot_{which}']], client_keys=[which])
    return FileClient(backend.pop('type'), **backend)


def stem(path: str) -> str:
    return osp.splitext(osp.basename(path))[0]


def pair_name(pair: dict[str, str]) -> str:
    """The name a training image's label goes by: the stem of its GT image, or of its LR image in an LR-only set
    (whose pairs have no ``gt_path``)."""
    return stem(pair.get('gt_path') or pair['lq_path'])


def pixel_digest(img: np.ndarray) -> str:
    """SHA-256 (first 128 bits, hex) of an image's shape and pixels."""
    digest = hashlib.sha256(str(img.shape).encode())
    digest.update(np.ascontiguousarray(img).tobytes())
    return digest.hexdigest()[:32]


def lr_digests(train_set: dict[str, Any], pairs: list[dict[str, str]]) -> dict[str, str]:
    """``{name: digest of the decoded LR image}`` for the training ``pairs`` (as BasicSR lists them; names:
    :func:`pair_name`)."""
    client = file_client(train_set, 'lq')
    return {pair_name(p): pixel_digest(imfrombytes(client.get(p['lq_path'], 'lq'))) for p in pairs}


def lr_file_facts(train_set: dict[str, Any], pairs: list[dict[str, str]]) -> dict[str, list[int]]:
    """``{name: [bytes, mtime_ns]}`` of each LR file, or ``{'data.mdb': [...]}`` of an LMDB's data file."""
    if train_set['io_backend']['type'] == 'lmdb':
        info = os.stat(osp.join(train_set['dataroot_lq'], 'data.mdb'))
        return {'data.mdb': [info.st_size, info.st_mtime_ns]}
    facts = {}
    for pair in pairs:
        info = os.stat(pair['lq_path'])
        facts[pair_name(pair)] = [info.st_size, info.st_mtime_ns]
    return facts


def record(train_set: dict[str, Any], pairs: list[dict[str, str]]) -> dict[str, Any]:
    """The manifest fields that identify the LR images: ``lr_sha256`` and ``lr_files``."""
    return {'lr_sha256': lr_digests(train_set, pairs), 'lr_files': lr_file_facts(train_set, pairs)}


def changed(train_set: dict[str, Any], pairs: list[dict[str, str]], manifest: dict[str, Any],
            refresh: Callable[[dict[str, list[int]]], None] | None = None) -> list[str]:
    """The names (:func:`pair_name`) whose LR image is not the one ``manifest`` recorded (sorted; empty when all
    are): the file facts first, the pixel digests only when those differ. When the facts differ and every digest still
    matches (the same pixels, touched or copied), ``refresh`` gets the current facts, so that the manifest can
    record them and the next check is the cheap one again."""
    facts = lr_file_facts(train_set, pairs)
    if facts == manifest['lr_files']:
        return []
    recorded = manifest['lr_sha256']
    other = sorted(name for name, digest in lr_digests(train_set, pairs).items() if recorded.get(name) != digest)
    if not other and refresh is not None:
        refresh(facts)
    return other
