"""Shared fixtures: tiny paired datasets, a tiny teacher checkpoint, unique experiment names.

Helpers that tests import live in ``tests/helpers.py``."""
import os
import shutil
import uuid
from os import path as osp

import cv2
import pytest

# `make test` runs the suite in pytest-xdist workers; torch's default of one thread per core in each would
# oversubscribe the machine, so each worker computes on its share of the cores (set before torch is imported).
_WORKERS = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1'))
if _WORKERS > 1:
    os.environ.setdefault('OMP_NUM_THREADS', str(max(1, len(os.sched_getaffinity(0)) // _WORKERS)))

import torch  # noqa: E402

from tests.helpers import ROOT  # noqa: E402


@pytest.fixture(autouse=True)
def _worker_threads():
    """A test that runs a tool in this process may set torch's thread count (the cost tools do); the
    tests after it in the same worker get the worker's share back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='session')
def tiny_pairs(tmp_path_factory) -> str:
    """Four 64x64 HR crops of T91-like photos with x2 LR, as folders and as LMDBs.

    Layout: ``<root>/X2/{HR,LR}`` and ``<root>/X2/{HR,LR}.lmdb``.
    """
    from kd_plugin.data.bundled_photos import load_photo
    from kd_plugin.data.lmdb_builder import build_paired_lmdbs
    from kd_plugin.data.lr_generation import make_lr_pairs

    root = str(tmp_path_factory.mktemp('tiny_pairs'))
    hr = osp.join(root, 'src')
    os.makedirs(hr)
    for i, name in enumerate(('astronaut', 'rocket', 'coffee', 'chelsea')):
        img = cv2.cvtColor(load_photo(name), cv2.COLOR_RGB2BGR)
        cv2.imwrite(osp.join(hr, f'img{i}.png'), img[100:164, 100:164])
    make_lr_pairs(hr, root, [2])
    base = osp.join(root, 'X2')
    build_paired_lmdbs([(osp.join(base, 'HR'), osp.join(base, 'HR.lmdb')),
                        (osp.join(base, 'LR'), osp.join(base, 'LR.lmdb'))])
    return base


@pytest.fixture(scope='session')
def teacher(tmp_path_factory) -> str:
    """A tiny random HDRNet x2 teacher checkpoint (``kd_fixtures.TINY_TEACHER``)."""
    from tests.kd_fixtures import save_teacher

    return save_teacher(str(tmp_path_factory.mktemp('kd_teacher')))


@pytest.fixture
def exp_name():
    """A unique experiment name; its experiments/ and results/ folders are removed afterwards."""
    name = f'pytest_{uuid.uuid4().hex[:8]}'
    yield name
    for top in ('experiments', 'results'):
        for entry in os.listdir(osp.join(ROOT, top)) if osp.isdir(osp.join(ROOT, top)) else []:
            if entry.startswith(name):
                shutil.rmtree(osp.join(ROOT, top, entry), ignore_errors=True)
