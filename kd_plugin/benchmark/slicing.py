"""Fast slicing, before and after (the library behind ``python -m kd_plugin.cli.slicing``).

Times, round-robin in one run and on the same weights, the bilateral-grid archs' forward pass (and a
training step) with the reference full-resolution path (``slice_grid`` + ``apply_affine`` and the
guide as 1x1 convolutions, what the archs ran before) and with the fast path they run now
(:func:`~kd_plugin.archs.bilateral_grid.slice_and_apply`, :class:`~kd_plugin.archs.bilateral_sr.PointwiseGuide`),
prints the largest output difference, and puts SRVGGNetCompact beside them, the peer the student's
CPU latency is compared with.
"""
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from kd_plugin.archs import bilateral_sr
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
        yield
    finally:
        bilateral_sr.slice_and_apply, bilateral_sr.PointwiseGuide.forward = fast_slice, fast_guide


def _switched(fn, reference: bool):
    def run():
        if reference:
            with reference_path():
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
    for name, net in nets.items():
        with torch.no_grad():
            fast = net.eval()(x)
            with reference_path():
                row[f'{name}_max_diff'] = (net(x) - fast).abs().max().item()
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)

        def step(net=net, optimizer=optimizer):
            optimizer.zero_grad()
            torch.nn.functional.l1_loss(net.train()(lq), gt).backward()
            optimizer.step()

        for path in ('reference', 'fast'):
            forwards[f'{name}_{path}'] = _switched(lambda net=net: net.eval()(x), path == 'reference')
            steps[f'{name}_{path}_step'] = _switched(step, path == 'reference')
    device = torch.device('cpu')
    row.update(interleaved_medians(forwards, device, warmup=1, runs=runs))
    row.update(interleaved_medians(steps, device, warmup=1, runs=runs, grad=True))
    return row


def report(row: dict[str, float], title: str) -> str:
    lines = [title, '', '| arch | forward, reference path ms | forward, fast path ms | speed-up | max output diff | '
             'training step, reference ms | training step, fast ms |', '|---|---|---|---|---|---|---|']
    for name in ('HDRNet', 'DeformableHDRNet'):
        ref, fast = row[f'{name}_reference'], row[f'{name}_fast']
        lines.append(f'| {name} | {ref * 1e3:.0f} | {fast * 1e3:.0f} | {ref / fast:.2f}x | '
                     f'{row[f"{name}_max_diff"]:.1e} | {row[f"{name}_reference_step"] * 1e3:.0f} | '
                     f'{row[f"{name}_fast_step"] * 1e3:.0f} |')
    lines.append(f'| SRVGGNetCompact | {row["SRVGGNetCompact"] * 1e3:.0f} | | | | | |')
    student, teacher, peer = row['DeformableHDRNet_fast'], row['HDRNet_fast'], row['SRVGGNetCompact']
    lines += ['', f'fast path: DeformableHDRNet / SRVGGNetCompact latency = {student / peer:.2f} (target <= 1); '
                  f'HDRNet / DeformableHDRNet = {teacher / student:.2f}x (target >= 3.5)']
    return '\n'.join(lines)
