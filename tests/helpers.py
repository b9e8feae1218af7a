"""Test helpers: paths, subprocess runners, options builders and small model files.

Fixtures live in ``conftest.py``; everything a test imports lives here (or in ``kd_fixtures``).
"""
import contextlib
import io
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from os import path as osp

import pytest
import torch
import yaml

import kd_plugin  # noqa: F401  (must precede any basicsr import: compatibility fixes)
from kd_plugin.runs import TRAIN_SCRIPT, free_port, torchrun_command  # noqa: F401  (free_port: for tests)

ROOT = osp.abspath(osp.join(osp.dirname(__file__), osp.pardir))
SHARED_DATA = osp.abspath(osp.join(ROOT, osp.pardir, 'shared', 'data'))


SHIPPED_DATA = osp.join(ROOT, 'tests', 'data')


def shared_data(test_set: str, *parts: str) -> str:
    """Path of a standard test set (``Set5``, ``Set14``, ``BSD100``, ``T91``), optionally inside it.

    Set5 ships with the project (``tests/data/Set5``), so tests on it run on every clone; the larger
    sets come from the development data ``../shared/data``, and a test that needs one is skipped,
    saying so, where that folder is absent."""
    if test_set == 'Set5':
        return osp.join(SHIPPED_DATA, 'Set5', *parts)
    path = osp.join(SHARED_DATA, test_set, *parts)
    if not osp.exists(path):
        pytest.skip(f'needs {test_set} from the development data ({SHARED_DATA}); only Set5 ships with the project')
    return path


def run(args: list[str], cwd: str = ROOT, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a command of this project with the test interpreter; output captured as text. On timeout the
    whole process group is killed (a hung torchrun leaves no workers behind) and ``TimeoutExpired`` raised."""
    full_env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1', **(env or {}))
    with subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env,
                          start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def train(opt_path: str, *extra: str, cwd: str = ROOT, timeout: int = 600,
          env: dict | None = None) -> subprocess.CompletedProcess:
    """``python kd_plugin/cli/train.py -opt opt_path *extra``."""
    return run([sys.executable, TRAIN_SCRIPT, '-opt', opt_path, *extra], cwd, timeout, env)


def torchrun_train(opt_path: str, nproc: int = 2, timeout: int = 300, env: dict | None = None,
                   script: str = TRAIN_SCRIPT):
    """``torchrun --nproc_per_node=N kd_plugin/cli/train.py -opt F --launcher pytorch`` on a free port
    (:func:`kd_plugin.runs.torchrun_command`; ``script`` replaces train.py), on CPU processes (gloo) even where
    CUDA is present, so the test means the same on every machine."""
    cmd = torchrun_command(opt_path, nproc)
    if script != TRAIN_SCRIPT:
        at = cmd.index('kd_plugin.cli.train')
        cmd[at - 1:at + 1] = [script]
    return run(cmd, timeout=timeout, env={'CUDA_VISIBLE_DEVICES': '', **(env or {})})


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


def experiment(name: str, *parts: str) -> str:
    return osp.join(ROOT, 'experiments', name, *parts)


def train_log(name: str) -> str:
    """Concatenated text of every ``train_*.log`` of experiment ``name``."""
    folder = experiment(name)
    return ''.join(open(osp.join(folder, f)).read() for f in sorted(os.listdir(folder))
                   if f.startswith('train_') and f.endswith('.log'))


def tiny_model(folder, name, arch: dict, scale: int = 2, seed: int = 0) -> str:
    """An options file with ``network_g: arch`` and a random checkpoint of it (seeded)."""
    from basicsr.archs import build_network

    torch.manual_seed(seed)
    ckpt = osp.join(folder, f'{name}.pth')
    torch.save({'params': build_network(dict(arch)).state_dict()}, ckpt)
    path = osp.join(folder, f'{name}.yml')
    with open(path, 'w') as f:
        yaml.safe_dump({'name': name, 'scale': scale, 'network_g': arch,
                        'path': {'pretrain_network_g': ckpt}}, f)
    return path


@contextlib.contextmanager
def _as_a_tool(argv: list[str], stdout: io.StringIO, stderr: io.StringIO) -> Iterator[None]:
    """``sys.argv``, the working directory (the project root) and the standard streams as a tool started from
    the command line would have them, restored afterwards."""
    saved_argv, cwd = sys.argv, os.getcwd()
    sys.argv = argv
    os.chdir(ROOT)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            yield
    finally:
        sys.argv = saved_argv
        os.chdir(cwd)


def tool_in_process(main: Callable[[list[str]], int], *args: str) -> subprocess.CompletedProcess:
    """A tool's ``main(argv)`` (``kd_plugin.cli.<tool>.main``) run in this process from the project root, its
    output captured; the status is what ``python -m kd_plugin.cli.<tool>`` exits with (``main``'s return, or
    argparse's exit code). It saves the ~10 s start-up (torch, torchvision, BasicSR) of a fresh interpreter;
    tests that need the real process (a signal, an environment, the exit path itself) use :func:`run`."""
    out, err = io.StringIO(), io.StringIO()
    with _as_a_tool([main.__module__, *args], out, err):
        try:
            status = main(list(args))
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    return subprocess.CompletedProcess([main.__module__, *args], status, out.getvalue(), err.getvalue())


def train_in_process(opt_path: str) -> tuple[int, str]:
    """``kd_plugin/cli/train.py -opt opt_path`` run in this process, from the project root, as the script
    runs it (:func:`kd_plugin.pipeline.run_pipeline`); returns its status and what it wrote to stderr. For
    runs that must stop at their option checks."""
    from kd_plugin.pipeline import run_pipeline

    err = io.StringIO()
    with _as_a_tool([TRAIN_SCRIPT, '-opt', opt_path], io.StringIO(), err):
        status = run_pipeline('train', ROOT)
    return status, err.getvalue()


def fails_cleanly(opt: dict, tmp_path, *needles: str, as_script: bool = False, env: dict | None = None) -> str:
    """Run training (in this process, or as ``python kd_plugin/cli/train.py`` with ``as_script`` or an ``env``
    the process must start with); assert status 2 with all ``needles`` in stderr and the old experiment
    untouched."""
    existing = experiment(opt['name'])
    os.makedirs(existing)
    with open(osp.join(existing, 'keep.txt'), 'w') as f:
        f.write('earlier run')
    opt_path = write_options(str(tmp_path), opt)
    if as_script or env:
        result = train(opt_path, env=env)
        status, stderr = result.returncode, result.stderr
    else:
        status, stderr = train_in_process(opt_path)
    assert status == 2, stderr[-2000:]
    for needle in needles:
        assert needle in stderr, stderr[-2000:]
    assert 'Traceback' not in stderr
    assert os.listdir(existing) == ['keep.txt']  # not archived, not written into
    assert not [d for d in os.listdir(osp.join(ROOT, 'experiments')) if d.startswith(f'{opt["name"]}_archived')]
    return stderr


TINY_SWINIR = {'type': 'SwinIR', 'upscale': 2, 'img_size': 16, 'window_size': 8, 'embed_dim': 12, 'depths': [1],
               'num_heads': [2], 'mlp_ratio': 1, 'upsampler': 'pixelshuffledirect', 'img_range': 1.0}
