"""Latency measurement: warm-up, synchronised runs, median; peak memory on CUDA."""
import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def median_latency(fn: Callable[[], object], device: torch.device, warmup: int = 2, runs: int = 5,
                   grad: bool = False) -> float:
    """Median wall time of ``fn()`` in seconds over ``runs`` synchronised calls after ``warmup`` calls.

    Autograd is off unless ``grad`` (training steps need it)."""
    with torch.set_grad_enabled(grad):
        for _ in range(warmup):
            fn()
        _sync(device)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_medians(fns: dict[str, Callable[[], object]], device: torch.device, warmup: int = 1, runs: int = 7,
                        grad: bool = False) -> dict[str, float]:
    """Median seconds of each of ``fns``, timed round-robin (one call of each per round) so that a
    slow drift of the machine (thermal, other load) affects all of them alike; ratios between the
    results are then fair."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    with torch.set_grad_enabled(grad):
        for fn in fns.values():
            for _ in range(warmup):
                fn()
        _sync(device)
        for _ in range(runs):
            for name, fn in fns.items():
                start = time.perf_counter()
                fn()
                _sync(device)
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def autocast_context(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager:
    """``torch.autocast`` for ``dtype`` on ``device``, or a no-op for fp32 (``dtype=None``)."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def peak_memory_bytes(fn: Callable[[], object], device: torch.device, grad: bool = False) -> int | None:
    """Peak CUDA memory allocated during ``fn()`` (None on CPU, where torch does not track it).

    Autograd is off unless ``grad`` (training steps need it)."""
    if device.type != 'cuda':
        return None
    torch.cuda.empty_cache()
    _sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    with torch.set_grad_enabled(grad):
        fn()
    _sync(device)
    return torch.cuda.max_memory_allocated(device)
