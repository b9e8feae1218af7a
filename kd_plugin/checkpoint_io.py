"""Loading checkpoints that may come from strangers: tensors and numbers only, never code.

``torch.load(..., weights_only=True)`` unpickles only tensors, containers, numbers and a short
allow-list of types; a pickle that would import and call anything else is refused before it runs.
A ``.safetensors`` file (the format published SR checkpoints often come in) holds tensors and nothing
else by construction; it is read with the ``safetensors`` package as a plain state dict.
This module turns torch's and safetensors' refusals into messages that name the option and the fix.
"""
import hashlib
import pickle
from os import path as osp
from typing import Any

import safetensors
import safetensors.torch
import torch

#: The suffix of a safetensors checkpoint (the format is told by the name, as safetensors' own tools do).
SAFETENSORS = '.safetensors'


def load_weights_only(path: str, option: str) -> Any:
    """The object saved in ``path``, unpickled with ``weights_only=True`` onto the CPU (a ``.safetensors``
    file: its tensors, as a state dict).

    Raises ``ValueError`` naming ``option`` when the file is missing, is not a weights-only
    checkpoint (it would run code when unpickled) or is truncated/corrupt.
    """
    if not osp.isfile(path):
        raise ValueError(f'{option}: {path!r} does not exist. Fix: correct the path')
    return weights_only_from_bytes(path, path, option)


def weights_only_from_bytes(source: Any, path: str, option: str) -> Any:
    """:func:`load_weights_only` of ``source`` (a path or a file object holding ``path``'s bytes)."""
    if path.lower().endswith(SAFETENSORS):
        return _safetensors(source, path, option)
    try:
        return torch.load(source, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f'{option}: refused to load {path!r}: it holds Python objects beyond tensors and numbers, '
                         f'and unpickling them could run code ({reason}). Fix: use a checkpoint saved by '
                         'BasicSR/kd_plugin, or re-save only its state_dict from a trusted copy') from err
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise ValueError(f'{option}: cannot read {path!r} as a PyTorch checkpoint ({str(err).splitlines()[0]}); the '
                         'file is truncated or not a .pth file. Fix: point it at a complete checkpoint') from err


def _safetensors(source: Any, path: str, option: str) -> dict[str, torch.Tensor]:
    try:
        if isinstance(source, str):
            return safetensors.torch.load_file(source, device='cpu')
        return safetensors.torch.load(source.read())
    except (safetensors.SafetensorError, OSError) as err:
        raise ValueError(f'{option}: cannot read {path!r} as a safetensors file ({str(err).splitlines()[0]}); it is '
                         'truncated or not a .safetensors file. Fix: point it at a complete checkpoint') from err


def pick_state_dict(ckpt: Any, param_key: str | None, option: str) -> tuple[dict[str, torch.Tensor], str | None]:
    """The state dict inside a loaded checkpoint, and the key it came from (None: the top level).

    With ``param_key`` (``path.param_key_<x>``), that entry; BasicSR's ``load_network`` falls back to
    ``params`` when the key is absent, and so does this. Without one, ``params_ema`` when present (the
    EMA weights BasicSR's releases evaluate), else ``params``, else the checkpoint itself when it is a
    plain state dict. Raises ``ValueError`` naming ``option`` otherwise."""
    if not isinstance(ckpt, dict):
        raise ValueError(f'{option}: the checkpoint holds a {type(ckpt).__name__}, not a state dict')
    keys = [param_key, 'params'] if param_key else ['params_ema', 'params']
    for key in keys:
        if isinstance(ckpt.get(key), dict):
            return ckpt[key], key
    if param_key is None and ckpt and all(torch.is_tensor(v) for v in ckpt.values()):
        return ckpt, None
    raise ValueError(f'{option}: no parameter key {" or ".join(map(repr, keys))} in the checkpoint (it has '
                     f'{sorted(ckpt)[:5]}). Fix: set the param_key option to one of those')


def state_dict_mismatch(saved: dict[str, torch.Tensor], net: torch.nn.Module) -> str | None:
    """None when ``saved`` (``module.`` prefixes ignored) fits ``net`` exactly, else a description
    naming the first missing keys, unexpected keys and shape mismatches."""
    saved = {k.removeprefix('module.'): v for k, v in saved.items()}
    expected = net.state_dict()
    missing = [k for k in expected if k not in saved]
    unexpected = [k for k in saved if k not in expected]
    wrong = [f'{k} {tuple(saved[k].shape)} vs {tuple(v.shape)}' for k, v in expected.items()
             if k in saved and saved[k].shape != v.shape]
    if not (missing or unexpected or wrong):
        return None
    return f'missing keys {missing[:3]}, unexpected keys {unexpected[:3]}, shape mismatches {wrong[:3]}'


def check_checkpoint_options(opt: dict[str, Any], resume_path: str | None = None) -> None:
    """Every checkpoint the run would load (``path.pretrain_network_*``, ``path.resume_state`` or the
    state ``--auto_resume`` would pick, given as ``resume_path``) loads weights-only."""
    paths = opt.get('path') or {}
    for key, value in paths.items():
        if key.startswith('pretrain_network_') and value:
            load_weights_only(value, f'path.{key}')
    state = resume_path or paths.get('resume_state')
    if state:
        load_weights_only(state, 'path.resume_state' if not resume_path else '--auto_resume state')


def sha256(path: str) -> str:
    """The SHA-256 of a file's bytes, as ``sha256sum`` prints it."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def listed_sha256(sums_file: str) -> dict[str, str]:
    """File name -> SHA-256 hex of every line of ``sums_file`` (``<hex>  <file name>``, as ``sha256sum`` writes)."""
    with open(sums_file) as f:
        return dict(reversed(line.split()) for line in f if line.strip())


def verify_listed_sha256(path: str, sums_file: str) -> str:
    """``path``, after checking its SHA-256 against its line in ``sums_file`` (:func:`listed_sha256`);
    ``ValueError`` naming both and the fix otherwise."""
    expected = listed_sha256(sums_file)
    actual = sha256(path)
    if expected.get(osp.basename(path)) != actual:
        raise ValueError(f'{path} has SHA-256 {actual}, expected {expected.get(osp.basename(path))} '
                         f'({sums_file}). Fix: git checkout {osp.dirname(path) or "."}/ (the file was modified or is '
                         'a Git LFS pointer)')
    return path
