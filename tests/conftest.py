"""Shared fixtures: paths, tiny paired datasets, options files and subprocess runners."""
import os
import shutil
import socket
import subprocess
import sys
import uuid
from os import path as osp

import cv2
import pytest
import yaml

import kd_plugin  # noqa: F401  (must precede any basicsr import: compatibility fixes)

ROOT = osp.abspath(osp.join(osp.dirname(__file__), osp.pardir))
SHARED_DATA = osp.abspath(osp.join(ROOT, osp.pardir, 'shared', 'data'))


def shared_data(*parts: str) -> str:
    """Path under ../shared/data; skips the test where the development data is not present."""
    path = osp.join(SHARED_DATA, *parts)
    if not osp.exists(path):
        pytest.skip(f'{path} not present (development/CI data)')
    return path


def free_port() -> int:
    """A TCP port on the loopback that nothing listens on right now (for torch.distributed)."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run(args: list[str], cwd: str = ROOT, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a command of this project with the test interpreter; output captured as text."""
    full_env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1', **(env or {}))
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env)


def train(opt_path: str, *extra: str, cwd: str = ROOT, timeout: int = 600) -> subprocess.CompletedProcess:
    return run([sys.executable, osp.join(ROOT, 'kd_plugin', 'train.py'), '-opt', opt_path, *extra], cwd, timeout)


def torchrun_train(opt_path: str, nproc: int = 2, timeout: int = 300, env: dict | None = None):
    """``torchrun --nproc_per_node=N kd_plugin/train.py -opt F --launcher pytorch`` on a free port."""
    cmd = [sys.executable, '-m', 'torch.distributed.run', f'--nproc_per_node={nproc}', f'--master_port={free_port()}',
           osp.join(ROOT, 'kd_plugin', 'train.py'), '-opt', opt_path, '--launcher', 'pytorch']
    return run(cmd, timeout=timeout, env=env)


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


def sr_options(name: str, data: str, backend: str = 'disk', total_iter: int = 4, **top) -> dict:
    """Options of a tiny EDSR x2 SRModel run on ``data`` (a ``tiny_pairs`` folder)."""
    suffix = '.lmdb' if backend == 'lmdb' else ''

    def dataset(phase: str) -> dict:
        d = {'name': f'tiny_{phase}', 'type': 'PairedImageDataset', 'io_backend': {'type': backend},
             'dataroot_gt': osp.join(data, 'HR' + suffix), 'dataroot_lq': osp.join(data, 'LR' + suffix)}
        if phase == 'train':
            d.update(gt_size=32, use_hflip=True, use_rot=True, num_worker_per_gpu=0, batch_size_per_gpu=2,
                     dataset_enlarge_ratio=1, prefetch_mode=None)
        return d

    opt = {
        'name': name, 'model_type': 'SRModel', 'scale': 2, 'num_gpu': 'auto', 'manual_seed': 0,
        'datasets': {'train': dataset('train'), 'val': dataset('val')},
        'network_g': {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 2},
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {'optim_g': {'type': 'Adam', 'lr': 1e-3}, 'scheduler': {'type': 'MultiStepLR', 'milestones': [100],
                  'gamma': 0.5}, 'total_iter': total_iter, 'warmup_iter': -1,
                  'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0}},
        'val': {'val_freq': 2, 'save_img': False, 'metrics': {
            'psnr': {'type': 'calculate_psnr', 'crop_border': 2, 'test_y_channel': True},
            'ssim': {'type': 'calculate_ssim', 'crop_border': 2, 'test_y_channel': True}}},
        'logger': {'print_freq': 1, 'save_checkpoint_freq': 2, 'use_tb_logger': False},
    }
    opt.update(top)
    return opt


def write_options(folder: str, opt: dict) -> str:
    path = osp.join(folder, f'{opt["name"]}.yml')
    with open(path, 'w') as f:
        yaml.safe_dump(opt, f, sort_keys=False)
    return path


@pytest.fixture
def exp_name():
    """A unique experiment name; its experiments/ and results/ folders are removed afterwards."""
    name = f'pytest_{uuid.uuid4().hex[:8]}'
    yield name
    for top in ('experiments', 'results'):
        for entry in os.listdir(osp.join(ROOT, top)) if osp.isdir(osp.join(ROOT, top)) else []:
            if entry.startswith(name):
                shutil.rmtree(osp.join(ROOT, top, entry), ignore_errors=True)


def experiment(name: str, *parts: str) -> str:
    return osp.join(ROOT, 'experiments', name, *parts)


def train_log(name: str) -> str:
    """Concatenated text of every ``train_*.log`` of experiment ``name``."""
    folder = experiment(name)
    return ''.join(open(osp.join(folder, f)).read() for f in sorted(os.listdir(folder))
                   if f.startswith('train_') and f.endswith('.log'))
