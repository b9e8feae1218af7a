"""Atomic checkpoint writes.

``basicsr/models/base_model.py:229`` (``save_network``) and ``base_model.py:327`` (``save_training_state``)
``torch.save`` straight to the final file name. A job killed mid-write leaves a truncated
``net_g_<iter>.pth`` or ``<iter>.state``; ``--auto_resume`` then picks the truncated state (the
highest iteration) and the run cannot continue. And when every retry fails (disk full), upstream
logs a warning and trains on with no checkpoint at all.

Here both write to a temporary file in the same folder, fsync it and ``os.replace`` it onto the
final name, so a file with a checkpoint's name is always complete. A write that still fails after
the retries raises, naming the file, rather than training on unprotected. Like upstream's (its
``@master_only``, ``base_model.py:195`` and ``base_model.py:305``), only rank 0 writes: under DDP the other ranks
hold the same weights, and on several nodes they have no experiment folder at all.
"""
import inspect
import os
import time
from os import path as osp
from typing import Any

import torch

from kd_plugin.compat.record import applied


def atomic_save(obj: Any, path: str, retries: int = 3) -> None:
    """``torch.save(obj, path)`` such that ``path`` is either its old version or the complete new one."""
    folder = osp.dirname(osp.abspath(path))
    tmp = osp.join(folder, f'.{osp.basename(path)}.tmp-{os.getpid()}')
    for attempt in range(retries):
        try:
            with open(tmp, 'wb') as f:
                torch.save(obj, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            return
        except OSError as err:
            if osp.exists(tmp):
                os.remove(tmp)
            if attempt == retries - 1:
                raise OSError(f'cannot write checkpoint {path!r}: {err}. Fix: free disk space or make '
                              f'{folder!r} writable, then resume with --auto_resume (earlier checkpoints '
                              'are intact)') from err
            time.sleep(1)


def _bare_state(model, net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key.removeprefix('module.'): value.cpu() for key, value in model.get_bare_model(net).state_dict().items()}


def _rank() -> int:
    from basicsr.utils.dist_util import get_dist_info

    return get_dist_info()[0]


def save_network(self, net, net_label: str, current_iter: int, param_key='params') -> None:
    """Replacement for ``BaseModel.save_network``: same file name and content, written atomically, by rank 0."""
    if _rank() != 0:
        return
    nets = net if isinstance(net, list) else [net]
    keys = param_key if isinstance(param_key, list) else [param_key]
    if len(nets) != len(keys):
        raise ValueError(f'save_network: {len(nets)} networks but {len(keys)} parameter keys')
    label = 'latest' if current_iter == -1 else current_iter
    path = osp.join(self.opt['path']['models'], f'{net_label}_{label}.pth')
    atomic_save({key: _bare_state(self, n) for n, key in zip(nets, keys)}, path)


def save_training_state(self, epoch: int, current_iter: int) -> None:
    """Replacement for ``BaseModel.save_training_state``: same content, written atomically, by rank 0."""
    if current_iter == -1 or _rank() != 0:
        return
    state = {'epoch': epoch, 'iter': current_iter,
             'optimizers': [o.state_dict() for o in self.optimizers],
             'schedulers': [s.state_dict() for s in self.schedulers]}
    atomic_save(state, osp.join(self.opt['path']['training_states'], f'{current_iter}.state'))


def patch_atomic_checkpoints() -> None:
    from basicsr.models import base_model

    cls = base_model.BaseModel
    for name, replacement in (('save_network', save_network), ('save_training_state', save_training_state)):
        current = getattr(cls, name)
        if current is replacement:
            continue
        source = inspect.getsource(current)
        if 'torch.save(' in source and 'os.replace' not in source and 'rename' not in source:
            setattr(cls, name, replacement)
            applied(f'atomic {name} (base_model.py)')
