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
    return {'cpu': _cpu_model_and_flags()[0], 'cpu_count': os.cpu_count(),
            'python': platform.python_version(), 'torch': torch.__version__,
            'cuda': torch.cuda.get_device_name() if torch.cuda.is_available() else None}


#: CPU instruction sets that change how fast torch runs a step (vector width, native bf16, AMX).
_SPEED_FLAGS = ('avx2', 'fma', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'amx_tile', 'amx_bf16', 'asimd', 'sve')


def _cpu_model_and_flags() -> tuple[str, list[str]]:
    """The CPU's model name and which of :data:`_SPEED_FLAGS` it has (from ``/proc/cpuinfo`` where there is one)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                key, _, value = line.partition(':')
                if key.strip() == 'model name' and value.strip():
                    model = value.strip()
                elif key.strip() in ('flags', 'Features'):
                    flags.update(value.split())
    except OSError:
        pass
    return model, [flag for flag in _SPEED_FLAGS if flag in flags]


def speed_facts(device: torch.device) -> dict[str, Any]:
    """What decides how fast a training step runs here: the device (the GPU's name, or the CPU's model and
    instruction sets), torch's thread count and the torch version. Two timings compare only when these agree."""
    model, flags = _cpu_model_and_flags()
    return {'device': torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu', 'cpu': model,
            'cpu_flags': flags, 'threads': torch.get_num_threads(), 'torch': torch.__version__}


def describe(device: torch.device, threads: int | None = None) -> str:
    """One line for a report header: the GPU's name, or the CPU with its thread count."""
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    return f'{_cpu_model_and_flags()[0]}, {threads or torch.get_num_threads()} CPU threads'
