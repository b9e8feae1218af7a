"""The fused CPU slice + apply kernel: the reference's result at odd sizes, scales, thread counts and batches; the
PyTorch path where the kernel cannot be built (said once); training keeps the autograd ops."""
import os
import shutil
import subprocess
import sys

import pytest
import torch

from kd_plugin.archs import fused_slice
from kd_plugin.archs.bilateral_grid import apply_affine, slice_and_apply, slice_grid
from kd_plugin.archs.build import build_network
from tests.helpers import run

needs_compiler = pytest.mark.skipif(shutil.which(os.environ.get('CXX', 'c++')) is None,
                                    reason='no C++ compiler on this machine: the kernel cannot be built here')


@needs_compiler
def test_the_kernel_builds_where_a_compiler_is():
    assert fused_slice.kernel() is not None, fused_slice.failure()


@needs_compiler
@pytest.mark.parametrize('threads', [1, 2, 4])
@pytest.mark.parametrize('batch,size,grid_size,n_in', [(1, (37, 53), (3, 4), 8), (2, (64, 64), (4, 4), 8),
                                                       (3, (17, 9), (2, 1), 8), (2, (31, 29), (5, 3), 4)])
def test_the_kernel_equals_the_reference(threads, batch, size, grid_size, n_in):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        grid = torch.rand(batch, 3 * (n_in + 1), 8, *grid_size)
        guide, feats = torch.rand(batch, 1, *size), torch.rand(batch, n_in, *size)
        guide[0, 0, 0, :3] = torch.tensor([0.0, 1.0, 0.5])  # the guide's ends and a bin centre
        reference = apply_affine(slice_grid(grid, guide), feats)
        out = fused_slice.kernel().slice_apply(grid, guide, feats)
        torch.testing.assert_close(out, reference, rtol=0, atol=1e-5)
    finally:
        torch.set_num_threads(previous)


def _spying(calls: list[str]):
    """The kernel module with each function recording its name in ``calls``."""
    kernel = fused_slice.kernel()
    spy = type('Spy', (), {name: staticmethod(lambda *a, name=name: calls.append(name) or getattr(kernel, name)(*a))
                           for name in ('slice_apply', 'bilateral_output')})
    return kernel, spy


@needs_compiler
@pytest.mark.parametrize('name', ['HDRNet', 'DeformableHDRNet'])
@pytest.mark.parametrize('scale', [2, 3, 4])
@pytest.mark.parametrize('threads', [1, 2, 4])
def test_the_archs_give_the_reference_output_with_the_kernel(name, scale, threads):
    """CPU inference runs the whole full-resolution part (pixel shuffle, guide, slice, apply, bicubic base) in the
    kernel's one pass, with the output of the PyTorch modules."""
    torch.manual_seed(scale)
    net = build_network({'type': name, 'upscale': scale}).eval()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    calls = []
    kernel, spy = _spying(calls)
    try:
        with torch.no_grad():
            net.coeffs.grid.conv.weight.mul_(300)  # a grid far from zero: the slice matters
            x = torch.rand(2, 3, 23, 37)
            fused_slice._state['module'] = spy
            fast = net(x)
            fused_slice._state['module'] = kernel
            with fused_slice.disabled():
                reference = net(x)
    finally:
        fused_slice._state['module'] = kernel
        torch.set_num_threads(previous)
    assert calls == ['bilateral_output']  # inference took the kernel, once
    assert fast.shape == (2, 3, 23 * scale, 37 * scale)
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-5)


@needs_compiler
def test_hooks_on_the_full_resolution_modules_keep_them_running():
    """Feature matching and the teacher's tail hook ``upsample`` and ``guide``: with a hook there, the modules run
    (and the slice still takes the kernel)."""
    torch.manual_seed(0)
    net = build_network({'type': 'DeformableHDRNet', 'upscale': 2}).eval()
    seen, calls = [], []
    handle = net.guide.register_forward_hook(lambda module, args, out: seen.append(tuple(out.shape)))
    kernel, spy = _spying(calls)
    try:
        fused_slice._state['module'] = spy
        with torch.no_grad():
            net(torch.rand(1, 3, 9, 11))
    finally:
        fused_slice._state['module'] = kernel
        handle.remove()
    assert seen == [(1, 1, 18, 22)] and calls == ['slice_apply']


def test_training_and_other_dtypes_keep_the_pytorch_ops(monkeypatch):
    monkeypatch.setattr(fused_slice, 'kernel', lambda: pytest.fail('the kernel was asked for'))
    grid = torch.rand(1, 27, 8, 2, 2, requires_grad=True)
    guide, feats = torch.rand(1, 1, 8, 8), torch.rand(1, 8, 8, 8)
    out = slice_and_apply(grid, guide, feats)  # autograd recording
    out.sum().backward()
    assert grid.grad is not None and grid.grad.abs().sum() > 0
    with torch.no_grad():
        slice_and_apply(grid.double(), guide.double(), feats.double())
    with fused_slice.disabled():
        monkeypatch.undo()
        with torch.no_grad():
            slice_and_apply(grid, guide, feats)  # switched off: no kernel either


def test_without_a_compiler_the_pytorch_path_runs_and_one_line_says_why(tmp_path):
    code = ('import torch, kd_plugin\n'
            'from kd_plugin.archs import fused_slice\n'
            'from kd_plugin.archs.bilateral_grid import slice_and_apply, slice_grid, apply_affine\n'
            'torch.manual_seed(0)\n'
            'g, gd, f = torch.rand(1, 27, 8, 3, 3), torch.rand(1, 1, 9, 11), torch.rand(1, 8, 9, 11)\n'
            'with torch.no_grad():\n'
            '    a = slice_and_apply(g, gd, f)\n'
            '    b = slice_and_apply(g, gd, f)\n'
            'print("same", torch.allclose(a, apply_affine(slice_grid(g, gd), f), atol=1e-5))\n'
            'print("built", fused_slice.kernel() is not None)\n')
    result = run([sys.executable, '-c', code], env={'CXX': str(tmp_path / 'no-compiler'),
                                                    'TORCH_EXTENSIONS_DIR': str(tmp_path / 'ext')})
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'same True' in result.stdout and 'built False' in result.stdout
    lines = [line for line in result.stderr.splitlines() if 'fused CPU slice kernel could not be built' in line]
    assert len(lines) == 1 and 'the bilateral-grid archs use the PyTorch path' in lines[0]  # once, for two calls


@needs_compiler
def test_the_slicing_benchmark_times_every_path_and_reports_the_targets():
    from kd_plugin.benchmark import slicing

    row = slicing.measure(4, (12, 20), batch=2, patch=32, runs=1)
    for name in ('HDRNet', 'DeformableHDRNet'):
        assert all(row[f'{name}_{path}'] > 0 for path in slicing.PATHS)
        assert row[f'{name}_fused_max_diff'] < 1e-5 and row[f'{name}_pytorch_max_diff'] < 1e-5
    text = slicing.report(row, 'title')
    assert '| DeformableHDRNet |' in text and '| SRVGGNetCompact |' in text
    assert f'fused: DeformableHDRNet / SRVGGNetCompact latency = ' \
           f'{row["DeformableHDRNet_fused"] / row["SRVGGNetCompact"]:.2f} (target <= 0.7)' in text


@needs_compiler
def test_a_traced_student_equals_the_module_on_another_input():
    """A trace records only what PyTorch ops do: the kernel inside it would leave the traced module returning its
    uninitialised output buffer (7e28 off), so tracing takes the module path."""
    torch.manual_seed(0)
    net = build_network({'type': 'DeformableHDRNet', 'upscale': 4}).eval().requires_grad_(False)
    with torch.no_grad():
        net.coeffs.grid.conv.weight.mul_(300)
    first, second = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    traced = torch.jit.trace(net, first, check_trace=False)
    torch.testing.assert_close(traced(second), net(second), rtol=0, atol=1e-5)


@needs_compiler
def test_torchscript_scripting_never_gives_a_silently_different_student():
    """``torch.jit.script`` (deprecated in torch 2.x) does not compile the student: it raises. Should it ever compile,
    the scripted module must equal the module."""
    torch.manual_seed(0)
    net = build_network({'type': 'DeformableHDRNet', 'upscale': 2}).eval().requires_grad_(False)
    x = torch.rand(1, 3, 12, 10)
    try:
        scripted = torch.jit.script(net)
    except RuntimeError:
        return
    torch.testing.assert_close(scripted(x), net(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize('trainable', [('upsample', 'guide'), ('guide',), ('upsample',)])
def test_fine_tuning_only_the_full_resolution_layers_trains_them(trainable):
    """With everything frozen but the full-resolution layers, the kernel (which has no backward) must not run:
    each trainable layer gets a gradient, and it equals the module path's."""
    torch.manual_seed(0)
    net = build_network({'type': 'DeformableHDRNet', 'upscale': 2})
    for name, p in net.named_parameters():
        p.requires_grad_(name.split('.')[0] in trainable)
    x = torch.rand(1, 3, 9, 11)
    net(x).square().mean().backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.requires_grad}
    assert grads and all(g.abs().sum() > 0 for g in grads.values())
    net.zero_grad()
    with fused_slice.disabled():
        net(x).square().mean().backward()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, dict(net.named_parameters())[name].grad)


@needs_compiler
def test_a_nan_guide_is_sliced_as_grid_sample_slices_it():
    """``grid_sample`` puts a NaN guide on the grid's last bin; the kernel did a NaN-to-integer cast (undefined) and
    the ONNX gather slice indexed out of bounds."""
    from kd_plugin.archs.bilateral_grid import slice_grid_gathered

    torch.manual_seed(0)
    grid, guide, feats = torch.rand(2, 27, 8, 3, 3), torch.rand(2, 1, 5, 6), torch.rand(2, 8, 5, 6)
    guide[1, 0, 1, 2], guide[0, 0, 3, 4], guide[0, 0, 4, 0] = float('nan'), float('inf'), -float('inf')
    reference = apply_affine(slice_grid(grid, guide), feats)
    assert torch.isfinite(reference).all()
    torch.testing.assert_close(fused_slice.kernel().slice_apply(grid, guide, feats), reference, rtol=0, atol=1e-5)
    torch.testing.assert_close(apply_affine(slice_grid_gathered(grid, guide), feats), reference, rtol=0, atol=1e-5)


def test_the_build_is_named_for_what_the_compiler_targets(monkeypatch):
    """Two CPUs with one model name and the same common flags, whose ``-march=native`` differs (bmi2, vaes, an SVE
    level): different builds, so a shared extensions folder never serves one's build to the other."""
    seen = []
    monkeypatch.setattr(fused_slice, 'speed_facts', lambda device: {'cpu': 'AMD EPYC', 'cpu_flags': ['avx2', 'fma']})

    def fake_run(command, **kwargs):
        seen.append(command)
        return subprocess.CompletedProcess(command, 0, '', target)

    monkeypatch.setattr(fused_slice.subprocess, 'run', fake_run)
    target = 'cc1plus -march=znver3 -mbmi2 -mvaes'
    one = fused_slice._build_name()
    target = 'cc1plus -march=znver2 -mno-bmi2 -mno-vaes'
    assert fused_slice._build_name() != one
    target = 'cc1plus -march=znver3 -mbmi2 -mvaes'
    assert fused_slice._build_name() == one
    assert all('-march=native' in command and '-###' in command for command in seen)
