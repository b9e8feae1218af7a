"""Deriving runs from an options file and launching them through ``kd_plugin/train.py``.

Used by the demo and the ablation, so that both shorten a schedule by the same rule and start
training the same way (BasicSR's own pipeline, in a subprocess, from the project root).
"""
import os
import subprocess
import sys
import time
from collections.abc import Callable
from copy import deepcopy
from os import path as osp
from typing import Any

import yaml

#: The project checkout: ``experiments/``, ``results/``, ``datasets/`` and ``checkpoints/`` live here.
PROJECT_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TRAIN_SCRIPT = osp.join(PROJECT_ROOT, 'kd_plugin', 'train.py')


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
    with open(path) as f:
        return yaml.safe_load(f)


def write_options(opt: dict[str, Any], folder: str) -> str:
    """``opt`` written to ``<folder>/<name>.yml``; returns the path."""
    os.makedirs(folder, exist_ok=True)
    path = osp.join(folder, f'{opt["name"]}.yml')
    with open(path, 'w') as f:
        yaml.safe_dump(opt, f, sort_keys=False)
    return path


def experiment_dir(name: str) -> str:
    return osp.join(PROJECT_ROOT, 'experiments', name)


def launch_train(opt_path: str, *extra: str, on_line: Callable[[str], None] | None = None) -> tuple[int, float]:
    """``python kd_plugin/train.py -opt opt_path *extra`` from the project root; returns (exit status,
    seconds). With ``on_line``, the run's output (stdout and stderr) is passed to it line by line
    instead of going to the terminal."""
    cmd = [sys.executable, '-u', TRAIN_SCRIPT, '-opt', opt_path, *extra]
    start = time.time()
    if on_line is None:
        return subprocess.run(cmd, cwd=PROJECT_ROOT).returncode, time.time() - start
    with subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            on_line(line)
        return proc.wait(), time.time() - start
