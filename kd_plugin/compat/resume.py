"""Resume fixes: find the run from any working directory, load on CPU, keep foreign networks' paths."""
import inspect
import os
from os import path as osp
from typing import Any

import torch

from kd_plugin.compat.record import applied


def latest_training_state(state_dir: str) -> str | None:
    """Path of the ``<iter>.state`` file with the highest iteration in ``state_dir`` (or None)."""
    if not osp.isdir(state_dir):
        return None
    iters = []
    for name in os.listdir(state_dir):
        stem, ext = osp.splitext(name)
        if ext == '.state' and stem.isdigit():
            iters.append(int(stem))
    return osp.join(state_dir, f'{max(iters)}.state') if iters else None


def state_map_location(opt: dict[str, Any]) -> str:
    """Device that resumed tensors go to: the current CUDA device, or the CPU without one."""
    if opt.get('num_gpu', 0) != 0 and torch.cuda.is_available():
        return f'cuda:{torch.cuda.current_device()}'
    return 'cpu'


def load_resume_state(opt: dict[str, Any]) -> dict[str, Any] | None:
    """Replacement for ``basicsr.train.load_resume_state``.

    Two upstream traps are fixed here:

    * ``basicsr/train.py:71`` looks for ``experiments/<name>/training_states`` relative to the
      *current directory*. Started elsewhere, ``--auto_resume`` finds nothing, starts over and
      ``make_exp_dirs`` renames the real experiment to ``*_archived_*``. We use
      ``opt['path']['training_states']``, which ``parse_options`` anchors at ``root_path``.
    * ``basicsr/train.py:85`` calls ``torch.cuda.current_device()`` unconditionally, which raises
      on a machine without CUDA. We map to the CPU there.

    The file is read with ``weights_only=True`` (BasicSR's state files only hold tensors,
    numbers and a ``Counter``, which torch allow-lists).
    """
    if opt['auto_resume']:
        resume_path = latest_training_state(opt['path']['training_states'])
        if resume_path is not None:
            opt['path']['resume_state'] = resume_path
    else:
        resume_path = opt['path'].get('resume_state')
    if resume_path is None:
        return None
    state = torch.load(resume_path, map_location=state_map_location(opt), weights_only=True)
    check_resume(opt, state['iter'])
    return state


def frozen_networks(opt: dict[str, Any]) -> set[str]:
    """The ``network_<x>`` sections the run's model class declares frozen (its ``frozen_networks``, e.g.
    ``KDModel``'s teacher ``network_t``): never saved by the run, so never redirected on resume."""
    from basicsr.utils.registry import MODEL_REGISTRY

    name = opt.get('model_type')
    model = MODEL_REGISTRY.get(name) if name in MODEL_REGISTRY else None
    return set(getattr(model, 'frozen_networks', ()))


def resumed_networks(opt: dict[str, Any], resume_iter: int) -> dict[str, str]:
    """``network_<x>`` -> ``models/net_<x>_<iter>.pth`` for every network a resumed run reloads from its
    own checkpoints: all but those in ``path.ignore_resume_networks`` and the model's frozen networks
    (:func:`frozen_networks`), which keep their own ``path.pretrain_network_<x>``."""
    ignored = set(opt['path'].get('ignore_resume_networks') or []) | frozen_networks(opt)
    return {network: osp.join(opt['path']['models'], f'net_{network[len("network_"):]}_{resume_iter}.pth')
            for network in opt if network.startswith('network_') and network not in ignored}


def missing_checkpoint_error(state: str, missing: str, what: str) -> str:
    """The message for a training state whose network checkpoint is gone."""
    return (f'resume: training state {state!r} needs {missing!r}, which does not exist, so {what} would restart from '
            'scratch with the saved optimizer. Fix: restore that file, or resume from an earlier state whose files '
            'are all there (path.resume_state: <experiment>/training_states/<iter>.state, after moving the later '
            'states away), or start a new run under another name')


def check_resume(opt: dict[str, Any], resume_iter: int) -> None:
    """Replacement for ``basicsr.utils.misc.check_resume`` (``misc.py:116``).

    Upstream points ``path.pretrain_network_<x>`` of *every* top-level ``network_<x>`` at
    ``models/net_<x>_<iter>.pth`` and flips every ``param_key*`` from ``params_ema`` to
    ``params``. A frozen network (a KD teacher, ``network_t``) is never saved by the run, so it would be
    "resumed" from a file that does not exist. Here frozen networks keep their own path
    (:func:`resumed_networks`), only the redirected networks' own ``param_key_<x>`` changes, and a
    missing checkpoint of a redirected network is an error naming the file, never a silent restart
    from fresh weights.
    """
    state = opt['path'].get('resume_state')
    if not state:
        return
    for network, saved in resumed_networks(opt, resume_iter).items():
        if not osp.isfile(saved):
            raise ValueError(missing_checkpoint_error(state, saved, network))
        opt['path'][f'pretrain_{network}'] = saved
        label = network[len('network_'):]
        if opt['path'].get(f'param_key_{label}') == 'params_ema':
            opt['path'][f'param_key_{label}'] = 'params'
        print(f'Resume: set pretrain_{network} to {saved}', flush=True)


def patch_load_resume_state() -> None:
    import basicsr.train

    source = inspect.getsource(basicsr.train.load_resume_state)
    if "osp.join('experiments'" not in source and 'torch.cuda.current_device()' not in source:
        return
    basicsr.train.load_resume_state = load_resume_state
    applied('resume from root_path, on CPU too')


def patch_check_resume() -> None:
    import basicsr.train
    import basicsr.utils
    import basicsr.utils.misc

    if 'ignore_resume_networks' not in inspect.getsource(basicsr.utils.misc.check_resume):
        return
    for module in (basicsr.utils.misc, basicsr.utils, basicsr.train):
        module.check_resume = check_resume
    applied('resume keeps non-saved networks')
