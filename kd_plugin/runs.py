"""The project's layout on disk and how runs are derived and launched.

Owns where things live: the *project root* is the current folder, the user's project (this checkout when run
from it): ``experiments/<name>/models/net_g_latest.pth``, ``results/``, ``datasets/`` and every relative path of
an options file are there, as BasicSR reads them, whether kd_plugin runs from a checkout or is installed as a
dependency. The files kd_plugin ships (``options/``, ``checkpoints/``) are found by :func:`shipped`. Also here:
the one YAML loader for options files, shortened runs (one schedule rule for the demo, the ablation and the GPU
check) and starting ``kd_plugin/cli/train.py`` in a subprocess from the project root, plain or under
``torchrun`` on a free port.
"""
import datetime
import os
import re
import site
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from copy import deepcopy
from os import path as osp
from typing import Any

import yaml

from kd_plugin.registration import import_custom_modules

#: The folder this package was imported from lies in: a checkout (with ``options/`` and ``checkpoints/``), or
#: ``site-packages`` of an installed kd_plugin.
PACKAGE_PARENT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TRAIN_SCRIPT = osp.join(PACKAGE_PARENT, 'kd_plugin', 'cli', 'train.py')
#: The shipped HDRNet x4 teacher (demo, GPU check), by its repository path; SHA-256 in ``checkpoints/SHA256SUMS``.
SHIPPED_TEACHER = osp.join('checkpoints', 'HDRNet_T91_x4_12k.pth')
SHA256SUMS = osp.join('checkpoints', 'SHA256SUMS')
#: Where ``pip install`` puts the shipped files (setup.py's ``data_files``), below an installation prefix.
SHARE = osp.join('share', 'kd_plugin')


def project_root() -> str:
    """The user's project: the current folder. Runs, results, prepared data and the relative paths of options
    files live there (BasicSR reads an options file's paths from the current folder too)."""
    return os.getcwd()


def _installed_shares() -> list[str]:
    """Folders where an installed kd_plugin's shipped files may be: beside the installation's
    ``lib/pythonX.Y/site-packages``, under ``sys.prefix`` and under the user base."""
    prefix = osp.abspath(osp.join(PACKAGE_PARENT, os.pardir, os.pardir, os.pardir))
    return [osp.join(base, SHARE) for base in (prefix, sys.prefix, site.USER_BASE or '')]


def shipped(path: str) -> str:
    """A file kd_plugin ships (an options file or a checkpoint), by its repository path (``checkpoints/...``):
    the project's own copy when there is one, else the checkout kd_plugin runs from, else the copy an installed
    kd_plugin carries; where none exists, the project's path (so errors name it). Absolute paths pass unchanged."""
    if osp.isabs(path):
        return path
    for base in (project_root(), PACKAGE_PARENT, *_installed_shares()):
        if osp.exists(osp.join(base, path)):
            return osp.join(base, path)
    return osp.join(project_root(), path)


def with_total_iter(opt: dict[str, Any], total_iter: int) -> dict[str, Any]:
    """A copy of ``opt`` trained for ``total_iter`` iterations with its schedule scaled to fit.

    Cosine restarts: ``periods`` scaled proportionally (the last one absorbs rounding) so they sum to
    ``total_iter``; multi-step: ``milestones`` scaled by ``total_iter / old total``. Warm-up, and the
    validation, checkpoint and print frequencies shrink to fit a shorter run."""
    opt = deepcopy(opt)
    train = opt['train']
    old = train['total_iter']
    train['total_iter'] = total_iter
    scheduler = train.get('scheduler') or {}
    if scheduler.get('periods'):
        periods = [max(round(p * total_iter / sum(scheduler['periods'])), 1) for p in scheduler['periods']]
        periods[-1] = max(total_iter - sum(periods[:-1]), 1)
        scheduler['periods'] = periods
    if scheduler.get('milestones'):
        scheduler['milestones'] = [max(round(m * total_iter / old), 1) for m in scheduler['milestones']]
    if train.get('warmup_iter', -1) > 0:
        train['warmup_iter'] = min(train['warmup_iter'], max(total_iter // 10, 1))
    for section, key in (('val', 'val_freq'), ('logger', 'save_checkpoint_freq'), ('logger', 'print_freq')):
        if (opt.get(section) or {}).get(key, 0) > total_iter:
            opt[section][key] = total_iter
    return opt


def load_options(path: str) -> dict[str, Any]:
    """An options file as a dict (``ValueError`` naming the file when it is missing or not a mapping), with the
    modules it names in ``custom_imports`` imported (:func:`kd_plugin.registration.import_custom_modules`), so
    that every tool that reads it knows the file's own archs, losses and models."""
    if not osp.isfile(path):
        raise ValueError(f'options file {path!r} does not exist')
    with open(path) as f:
        opt = yaml.safe_load(f)
    if not isinstance(opt, dict):
        raise ValueError(f'options file {path!r} is not a YAML mapping')
    try:
        import_custom_modules(opt)
    except ValueError as err:
        raise ValueError(f'options file {path!r}: {err}') from err
    return opt


def write_options(opt: dict[str, Any], folder: str) -> str:
    """``opt`` written to ``<folder>/<name>.yml``; returns the path."""
    os.makedirs(folder, exist_ok=True)
    path = osp.join(folder, f'{opt["name"]}.yml')
    with open(path, 'w') as f:
        yaml.safe_dump(opt, f, sort_keys=False)
    return path


def from_project_root(path: str | None) -> str | None:
    """A path from an options file, which is relative to the project root (where runs start), made
    absolute; absolute paths and None pass unchanged."""
    return path if path is None or osp.isabs(path) else osp.join(project_root(), path)


def dataset_from_project_root(dataset_opt: dict[str, Any]) -> dict[str, Any]:
    """A copy of a dataset's options with its ``dataroot_*`` folders, ``meta_info_file`` and (in a multi-task
    set's ``tasks``, a mixed set's ``sources``) each part's own paths made absolute (:func:`from_project_root`), for
    code that reads the data from outside a run's working directory."""
    def rooted(key: str, value: Any) -> Any:
        if key.startswith('dataroot_') or key in ('meta_info_file', 'pretrain_network_t'):
            return from_project_root(value)
        if key in ('tasks', 'sources') and isinstance(value, dict):
            return {name: dataset_from_project_root(task) for name, task in value.items()}
        return value

    return {key: rooted(key, value) for key, value in dataset_opt.items()}


def experiment_dir(name: str, root: str | None = None) -> str:
    """``<root>/experiments/<name>`` (``root``: the project root): where BasicSR writes a training run."""
    return osp.join(root or project_root(), 'experiments', name)


def latest_weights(name: str, root: str | None = None) -> str:
    """``experiments/<name>/models/net_g_latest.pth``: the student a finished run leaves."""
    return osp.join(experiment_dir(name, root), 'models', 'net_g_latest.pth')


def free_port() -> int:
    """A TCP port nothing listens on now (for ``torchrun --master_port``)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


#: How a subprocess starts training: the module form, which runs in its working folder (the project root).
TRAIN_MODULE = ['-m', 'kd_plugin.cli.train']


def torchrun_command(opt_path: str, nproc: int = 1, *extra: str) -> list[str]:
    """``torchrun --nproc_per_node=N --master_port=<free> -m kd_plugin.cli.train -opt opt_path --launcher
    pytorch``, to run from the project root."""
    return [sys.executable, '-m', 'torch.distributed.run', f'--nproc_per_node={nproc}', f'--master_port={free_port()}',
            *TRAIN_MODULE, '-opt', opt_path, '--launcher', 'pytorch', *extra]


def launch_train(opt_path: str, *extra: str, on_line: Callable[[str], None] | None = None) -> tuple[int, float]:
    """``python -m kd_plugin.cli.train -opt opt_path *extra`` from the project root; returns (exit status,
    seconds). With ``on_line``, the run's output (stdout and stderr) is passed to it line by line
    instead of going to the terminal."""
    cmd = [sys.executable, '-u', *TRAIN_MODULE, '-opt', opt_path, *extra]
    start = time.time()
    if on_line is None:
        return subprocess.run(cmd, cwd=project_root()).returncode, time.time() - start
    with subprocess.Popen(cmd, cwd=project_root(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            on_line(line)
        return proc.wait(), time.time() - start


_STAMP = re.compile(r'^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ')
_START = re.compile(r'Start training from epoch: \d+, iter: (\d+)')
_PROGRESS = re.compile(r'iter:\s*([\d,]+), lr:\(')


#: Log lines that end a validation pass (BasicSR's metric report; KDModel's teacher score on the set).
_VALIDATION_ENDS = ('INFO: Validation ', 'INFO: Teacher on ')


def _log_part(path: str) -> dict[str, Any] | None:
    """One training log's timeline: the start (time, iteration), ``(time, iteration)`` of each progress line,
    the validation passes ``(start, end)`` and the last time stamp; None when the loop never started."""
    part: dict[str, Any] | None = None
    last = None
    with open(path) as f:
        for line in f:
            found = _STAMP.match(line)
            if not found:
                continue
            stamp = datetime.datetime.strptime(found.group(1), '%Y-%m-%d %H:%M:%S,%f').timestamp()
            if part is None:
                start = _START.search(line)
                if start:
                    part = {'start': (stamp, int(start.group(1))), 'progress': [], 'validation': []}
            elif any(end in line for end in _VALIDATION_ENDS):
                part['validation'].append((last, stamp))
            else:
                progress = _PROGRESS.search(line)
                if progress:
                    part['progress'].append((stamp, int(progress.group(1).replace(',', ''))))
            last = stamp
    if part is not None:
        part['end'] = last
    return part


def _time_at(part: dict[str, Any], iteration: int) -> float:
    """When ``part`` finished ``iteration``: its progress lines' times, linear in between; the part's last
    time stamp when it never logged that far."""
    points = [part['start'], *part['progress']]
    if iteration >= points[-1][1]:
        return part['end']
    for (t0, i0), (t1, i1) in zip(points, points[1:]):
        if i0 <= iteration <= i1:
            return t0 + (t1 - t0) * (iteration - i0) / max(i1 - i0, 1)
    return part['start'][0]


def training_seconds(name: str) -> float:
    """Measured wall time of a finished run's training loop, from BasicSR's log timestamps: from "Start
    training" to the last line of each log file, less the validation passes (each from the line before to
    the line that reports it). A resumed run adds up its parts, each counted only up to the iteration the
    next part resumed from: iterations done again after ``--auto_resume`` (those after the last checkpoint
    of a killed part) count once. Start-up before the loop is not in it; data loading, checkpoint writes and
    everything else the loop does are."""
    folder = experiment_dir(name)
    logs = sorted(f for f in os.listdir(folder) if f.startswith('train_') and f.endswith('.log'))
    parts = [part for part in (_log_part(osp.join(folder, log)) for log in logs) if part is not None]
    total = 0.0
    for part, following in zip(parts, [*parts[1:], None]):
        cut = part['end'] if following is None else _time_at(part, following['start'][1])
        validating = sum(end - begin for begin, end in part['validation'] if end <= cut)
        total += max(cut - part['start'][0] - validating, 0.0)
    if not total:
        raise RuntimeError(f'no training time in the logs of experiments/{name}')
    return total
