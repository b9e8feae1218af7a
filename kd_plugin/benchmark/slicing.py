"""Fast slicing, before and after (the library behind ``python -m kd_plugin.cli.slicing``).

Times, round-robin in one run and on the same weights, the bilateral-grid archs' forward pass with three
full-resolution paths: the reference (``slice_grid`` + ``apply_affine`` and the guide as 1x1 convolutions,
what the archs first ran), the PyTorch fast path (:func:`~kd_plugin.archs.bilateral_grid.slice_and_apply`
with the fused kernel off: banded ``grid_sample``, :class:`~kd_plugin.archs.bilateral_sr.PointwiseGuide`) and
the fused C++ kernel the archs run now on CPU inference (:mod:`kd_plugin.archs.fused_slice`); a training step
with the reference and the fast path (training never takes the kernel). It prints the largest output
difference of each path against the reference and puts SRVGGNetCompact beside them, the peer the student's
CPU latency is compared with.
"""
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from kd_plugin.archs import bilateral_sr, fused_slice
from kd_plugin.archs.bilateral_grid import apply_affine, slice_grid
from kd_plugin.archs.build import build_network
from kd_plugin.benchmark.timing import interleaved_medians


@contextmanager
def reference_path() -> Iterator[None]:
    """Run the archs' full-resolution part as before the fast path (same math, same weights)."""
    fast_slice, fast_guide = bilateral_sr.slice_and_apply, bilateral_sr.PointwiseGuide.forward
    bilateral_sr.slice_and_apply = lambda grid, guide, feats: apply_affine(slice_grid(grid, guide), feats)
    bilateral_sr.PointwiseGuide.forward = nn.Sequential.forward
    try:
        with fused_slice.disabled():
            yield
    finally:
        bilateral_sr.slice_and_apply, bilateral_sr.PointwiseGuide.forward = fast_slice, fast_guide


#: The full-resolution paths of the forward pass, in the report's order.
PATHS = ('reference', 'pytorch', 'fused')


def _switched(fn, path: str):
    """``fn`` run on ``path``: ``reference``, ``pytorch`` (the fast path without the fused kernel) or ``fused``."""
    def run():
        if path == 'reference':
            with reference_path():
                return fn()
        if path == 'pytorch':
            with fused_slice.disabled():
                return fn()
        return fn()
    return run


def measure(scale: int, lr_size: tuple[int, int], batch: int, patch: int, runs: int) -> dict[str, float]:
    """Seconds per forward at ``lr_size`` and per training step (``batch`` x ``patch``² HR) of each arch
    on each path, and the largest forward difference between the paths."""
    torch.manual_seed(0)
    nets = {name: build_network({'type': name, 'upscale': scale}) for name in ('HDRNet', 'DeformableHDRNet')}
    peer = build_network({'type': 'SRVGGNetCompact', 'upscale': scale}).eval()
    x = torch.rand(1, 3, *lr_size)
    lq, gt = torch.rand(batch, 3, patch // scale, patch // scale), torch.rand(batch, 3, patch, patch)
    row: dict[str, float] = {}
    forwards, steps = {'SRVGGNetCompact': lambda: peer(x)}, {}
    if fused_slice.kernel() is None:
        raise ValueError(f'the fused CPU slice kernel could not be built here ({fused_slice.failure()}), so there is '
                         'nothing to compare. Fix: install a C++ compiler (and ninja, a dependency of kd_plugin)')
    for name, net in nets.items():
        with torch.no_grad():
            with reference_path():
                reference = net.eval()(x)
            for path in PATHS[1:]:
                out = _switched(lambda net=net: net(x), path)()
                row[f'{name}_{path}_max_diff'] = (out - reference).abs().max().item()
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)

        def step(net=net, optimizer=optimizer):
            optimizer.zero_grad()
            torch.nn.functional.l1_loss(net.train()(lq), gt).backward()
            optimizer.step()

        for path in PATHS:
            forwards[f'{name}_{path}'] = _switched(lambda net=net: net.eval()(x), path)
        for path in PATHS[:2]:
            steps[f'{name}_{path}_step'] = _switched(step, path)
    device = torch.device('cpu')
    row.update(interleaved_medians(forwards, device, warmup=1, runs=runs))
    row.update(interleaved_medians(steps, device, warmup=1, runs=runs, grad=True))
    return row


def report(row: dict[str, float], title: str) -> str:
    lines = [title, '', '| arch | forward ms: reference path | PyTorch fast path | fused kernel | fused speed-up over '
             'PyTorch fast | max output diff to reference: PyTorch fast / fused | training step ms: reference / fast |',
             '|---|---|---|---|---|---|---|']
    for name in ('HDRNet', 'DeformableHDRNet'):
        ref, fast, fused = (row[f'{name}_{path}'] for path in PATHS)
        lines.append(f'| {name} | {ref * 1e3:.0f} | {fast * 1e3:.0f} | {fused * 1e3:.0f} | {fast / fused:.2f}x | '
                     f'{row[f"{name}_pytorch_max_diff"]:.1e} / {row[f"{name}_fused_max_diff"]:.1e} | '
                     f'{row[f"{name}_reference_step"] * 1e3:.0f} / {row[f"{name}_pytorch_step"] * 1e3:.0f} |')
    lines.append(f'| SRVGGNetCompact | {row["SRVGGNetCompact"] * 1e3:.0f} | | | | | |')
    peer = row['SRVGGNetCompact']
    for path in PATHS[1:]:
        student, teacher = row[f'DeformableHDRNet_{path}'], row[f'HDRNet_{path}']
        lines.append(f'{path}: DeformableHDRNet / SRVGGNetCompact latency = '
                     f'{student / peer:.2f} (target <= 0.7); HDRNet / DeformableHDRNet = {teacher / student:.2f}x '
                     '(target >= 3.5)')
    lines.insert(len(lines) - 2, '')
    return '\n'.join(lines)
