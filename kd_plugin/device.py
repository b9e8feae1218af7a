"""The device a command runs on, and the machine facts its reports print."""
import os
import platform
from typing import Any

import torch

DEVICE_CHOICES = ('auto', 'cpu', 'cuda')


def pick_device(name: str = 'auto') -> torch.device:
    """``auto``: the current CUDA device when there is one, else the CPU; ``cpu``; ``cuda`` (or ``cuda:N``),
    which must exist (``ValueError`` naming ``--device`` otherwise)."""
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if name.startswith('cuda') and not torch.cuda.is_available():
        raise ValueError(f'--device {name}: no CUDA device is visible. Fix: --device cpu (or auto)')
    if name != 'cpu' and not name.startswith('cuda'):
        raise ValueError(f'--device {name}: use one of {", ".join(DEVICE_CHOICES)}')
    return torch.device(name)


def machine_info() -> dict[str, Any]:
    """CPU, core count, Python, torch and (when present) the CUDA device's name."""
    return {'cpu': platform.processor() or platform.machine(), 'cpu_count': os.cpu_count(),
            'python': platform.python_version(), 'torch': torch.__version__,
            'cuda': torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def describe(device: torch.device, threads: int | None = None) -> str:
    """One line for a report header: the GPU's name, or the CPU with its thread count."""
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    info = machine_info()
    return f'{info["cpu"]}, {threads or torch.get_num_threads()} CPU threads'
