"""HDRNet / DeformableHDRNet and their shared parts: slicing, affine apply, DCNv2, shapes, budget."""
import math
import sys

import pytest
import torch
import torch.nn.functional as F
from basicsr.archs import build_network
from basicsr.utils.registry import ARCH_REGISTRY
from torchvision.ops import deform_conv2d

from kd_plugin.archs.bilateral_grid import apply_affine, slice_and_apply, slice_grid, slice_grid_gathered
from kd_plugin.archs.modulated_deform_conv import ModulatedDeformConv2d
from kd_plugin.benchmark.flops import count_flops, count_params
from tests.helpers import run

ARCHS = ['HDRNet', 'DeformableHDRNet']
HOOKABLE = ['head', 'trunk.0', 'trunk.1', 'trunk_tail', 'upsample', 'coeffs.splat', 'coeffs.local',
            'coeffs.global_path', 'coeffs.grid', 'guide']


def reference_slice(grid: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    """Loop-based trilinear lookup at pixel centres with clamped indices (the HDRNet definition)."""
    b, c, d, gh, gw = grid.shape
    h, w = guide.shape[-2:]
    out = torch.zeros(b, c, h, w, dtype=grid.dtype)
    for n in range(b):
        for i in range(h):
            for j in range(w):
                gx = (j + 0.5) * gw / w - 0.5
                gy = (i + 0.5) * gh / h - 0.5
                gz = float(guide[n, 0, i, j]) * d - 0.5
                x0, y0, z0 = math.floor(gx), math.floor(gy), math.floor(gz)
                for dx in (0, 1):
                    for dy in (0, 1):
                        for dz in (0, 1):
                            weight = ((1 - abs(gx - (x0 + dx))) * (1 - abs(gy - (y0 + dy))) *
                                      (1 - abs(gz - (z0 + dz))))
                            xi = min(max(x0 + dx, 0), gw - 1)
                            yi = min(max(y0 + dy, 0), gh - 1)
                            zi = min(max(z0 + dz, 0), d - 1)
                            out[n, :, i, j] += weight * grid[n, :, zi, yi, xi]
    return out


@pytest.mark.parametrize('slicer', [slice_grid, slice_grid_gathered], ids=['grid_sample', 'gathered_for_onnx'])
@pytest.mark.parametrize('grid_size,image_size,bins', [((3, 4), (7, 9), 5), ((2, 2), (5, 3), 8), ((4, 4), (4, 4), 2),
                                                       ((5, 3), (3, 2), 3)])  # last: a grid larger than the image
def test_slice_matches_loop_reference(grid_size, image_size, bins, slicer):
    gen = torch.Generator().manual_seed(0)
    grid = torch.randn(2, 3, bins, *grid_size, generator=gen, dtype=torch.float64)
    guide = torch.rand(2, 1, *image_size, generator=gen, dtype=torch.float64)
    guide[0, 0, 0, 0], guide[0, 0, -1, -1], guide[1, 0, 0, -1] = 0.0, 1.0, 1.0  # guide at the ends of the range
    torch.testing.assert_close(slicer(grid, guide), reference_slice(grid, guide), atol=1e-5, rtol=0)


def test_slice_of_constant_grid_and_guide_independence_across_bins():
    grid = torch.full((1, 2, 4, 3, 3), 0.25, dtype=torch.float64)
    assert torch.allclose(slice_grid(grid, torch.rand(1, 1, 6, 6, dtype=torch.float64)), torch.tensor(0.25).double())
    # a grid that grows linearly with the bin index is read back linearly in the guide (inside the bins)
    ramp = torch.arange(4, dtype=torch.float64).view(1, 1, 4, 1, 1).expand(1, 1, 4, 2, 2).contiguous()
    guide = torch.tensor([[[[0.125 + 0.25 * k for k in range(4)]]]], dtype=torch.float64)
    torch.testing.assert_close(slice_grid(ramp, guide)[0, 0, 0], torch.arange(4, dtype=torch.float64))


@pytest.mark.parametrize('threads', [1, 2, 3])
@pytest.mark.parametrize('batch,size,grid_size', [(1, (37, 53), (3, 4)), (2, (64, 64), (4, 4)), (3, (17, 9), (2, 1))])
def test_fast_slice_and_apply_equals_the_reference(threads, batch, size, grid_size):
    """Row bands folded into the batch (one per thread) and the accumulated apply give the reference's
    result, including bands that do not divide the height."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        grid, guide = torch.rand(batch, 27, 8, *grid_size), torch.rand(batch, 1, *size)
        feats = torch.rand(batch, 8, *size)
        reference = apply_affine(slice_grid(grid, guide), feats)
        with torch.no_grad():
            fast = slice_and_apply(grid, guide, feats)
        torch.testing.assert_close(fast, reference, rtol=0, atol=1e-5)
        grid.requires_grad_(True)
        torch.testing.assert_close(slice_and_apply(grid, guide, feats), reference, rtol=0, atol=1e-5)
    finally:
        torch.set_num_threads(previous)


def test_pointwise_guide_is_its_convolutions_and_keeps_checkpoint_keys():
    torch.manual_seed(0)
    net = build_network({'type': 'DeformableHDRNet', 'upscale': 2})
    assert {'guide.0.weight', 'guide.0.bias', 'guide.2.weight', 'guide.2.bias'} <= set(net.state_dict())
    x = torch.rand(2, 8, 9, 11)
    convs = torch.nn.Sequential.forward(net.guide, x)
    with torch.no_grad():
        torch.testing.assert_close(net.guide(x), convs, rtol=0, atol=1e-6)  # matrix products
    torch.testing.assert_close(net.guide(x), convs)  # with autograd: the convolutions themselves


def test_apply_affine_matches_hand_computation():
    coeffs = torch.randn(2, 3 * 5, 4, 6)
    inputs = torch.randn(2, 4, 4, 6)
    a = coeffs.view(2, 3, 5, 4, 6)
    expected = torch.einsum('bcihw,bihw->bchw', a[:, :, :4], inputs) + a[:, :, 4]
    torch.testing.assert_close(apply_affine(coeffs, inputs), expected)
    # one pixel by hand
    out = apply_affine(coeffs, inputs)[1, 2, 3, 5]
    hand = sum(a[1, 2, i, 3, 5] * inputs[1, i, 3, 5] for i in range(4)) + a[1, 2, 4, 3, 5]
    torch.testing.assert_close(out, hand)


def test_zero_offsets_and_unit_mask_equal_plain_conv():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 9, 11)
    dcn = ModulatedDeformConv2d(5, 7)
    torch.testing.assert_close(dcn(x), F.conv2d(x, dcn.weight, dcn.bias, padding=1), atol=1e-5, rtol=1e-5)
    offset = torch.zeros(2, 18, 9, 11)
    mask = torch.ones(2, 9, 9, 11)
    torch.testing.assert_close(deform_conv2d(x, offset, dcn.weight, dcn.bias, padding=1, mask=mask),
                               F.conv2d(x, dcn.weight, dcn.bias, padding=1), atol=1e-5, rtol=1e-5)


def test_gradients_reach_the_offset_and_mask_predictor():
    torch.manual_seed(0)
    dcn = ModulatedDeformConv2d(4, 4)
    dcn(torch.randn(1, 4, 8, 8)).square().mean().backward()
    grad = dcn.offset_mask.weight.grad
    taps = 9
    assert grad[:2 * taps].abs().sum() > 0  # offsets
    assert grad[2 * taps:].abs().sum() > 0  # mask logits


def test_nan_input_gives_nan_output_instead_of_crashing_the_process():
    """torchvision's CPU deform_conv2d segfaults on NaN offsets; a NaN batch must reach the loss as NaN
    (train.nan_policy handles it), forward and backward, so this runs in a child process."""
    code = ('import kd_plugin, torch\nfrom basicsr.archs import build_network\n'
            'net = build_network({"type": "DeformableHDRNet", "upscale": 2, "num_feat": 6, "coeff_feat": 6})\n'
            'out = net(torch.full((1, 3, 8, 8), float("nan")))\nout.sum().backward()\n'
            'print("nan output:", bool(out.isnan().any()))\n')
    result = run([sys.executable, '-c', code])
    assert result.returncode == 0, f'exit {result.returncode}: {result.stderr[-2000:]}'
    assert result.stdout.strip() == 'nan output: True'


@pytest.mark.parametrize('arch', ARCHS)
@pytest.mark.parametrize('scale', [2, 3, 4])
def test_any_lr_size_gives_exactly_scale_times(arch, scale):
    net = build_network({'type': arch, 'upscale': scale}).eval()
    with torch.no_grad():
        for h, w in ((37, 53), (1, 1), (16, 9)):
            assert net(torch.rand(2, 3, h, w)).shape == (2, 3, scale * h, scale * w)


@pytest.mark.parametrize('arch', ARCHS)
def test_starts_near_bicubic_and_is_deterministic_on_cpu(arch):
    torch.manual_seed(0)
    a = build_network({'type': arch})
    torch.manual_seed(0)
    b = build_network({'type': arch})
    x = torch.rand(1, 3, 20, 24)
    with torch.no_grad():
        out = a(x)
        assert torch.equal(out, a(x)) and torch.equal(out, b(x))
        bicubic = F.interpolate(x, scale_factor=4, mode='bicubic', align_corners=False)
        assert (out - bicubic).abs().max() < 0.05


@pytest.mark.parametrize('arch', ARCHS)
@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_autocast(arch, dtype):
    """Reduced precision stays close to fp32 relative to what the learned path contributes (an untrained
    network outputs almost the bicubic image, so its grid head is scaled up until that path matters)."""
    torch.manual_seed(0)
    net = build_network({'type': arch}).eval()
    with torch.no_grad():
        net.coeffs.grid.conv.weight.mul_(300)
    x = torch.rand(1, 3, 12, 14)
    with torch.no_grad():
        ref = net(x)
        learned = (ref - F.interpolate(x, scale_factor=4, mode='bicubic', align_corners=False)).abs().mean()
        with torch.autocast('cpu', dtype=dtype):
            low = net(x)
    assert low.shape == ref.shape and torch.isfinite(low).all()
    assert learned > 0.05
    assert (low.float() - ref).abs().mean() < 0.05 * learned


@pytest.mark.parametrize('arch', ARCHS)
def test_torch_compile_captures_the_whole_graph(arch):
    torch._dynamo.reset()
    net = build_network({'type': arch}).eval()
    x = torch.rand(1, 3, 10, 12)
    compiled = torch.compile(net, backend='aot_eager', fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), net(x), atol=1e-5, rtol=1e-5)


def test_registered_with_hookable_layers_and_matching_grids():
    teacher, student = (build_network({'type': a}) for a in ARCHS)
    assert ARCH_REGISTRY.get('HDRNet') is type(teacher)
    for net in (teacher, student):
        assert set(HOOKABLE) <= dict(net.named_modules()).keys()
    grids = []
    for net in (teacher, student):
        handle = net.coeffs.grid.register_forward_hook(lambda module, args, out: grids.append(out.shape))
        with torch.no_grad():
            net(torch.rand(1, 3, 24, 32))
        handle.remove()
    assert grids[0] == grids[1] == (1, 3 * (8 + 1), 8, 6, 8)  # [B, n_out*(hr_feat+1), D, Gh, Gw]


def test_deformable_convs_sit_in_the_low_resolution_paths():
    student = build_network({'type': 'DeformableHDRNet'})
    deformable = [n for n, m in student.named_modules() if isinstance(m, ModulatedDeformConv2d)]
    assert deformable == ['coeffs.local.0']
    deeper = build_network({'type': 'DeformableHDRNet', 'deform_per_stage': 1})
    deformable = [n for n, m in deeper.named_modules() if isinstance(m, ModulatedDeformConv2d)]
    assert deformable == ['trunk.0.1.conv1', 'trunk.1.1.conv1', 'coeffs.local.0']
    teacher = build_network({'type': 'HDRNet'})
    assert not any(isinstance(m, ModulatedDeformConv2d) for m in teacher.modules())


def test_student_budget_against_teacher():
    teacher, student = (build_network({'type': a}) for a in ARCHS)
    x = torch.rand(1, 3, 270, 480)
    assert 1_000_000 <= count_params(teacher) <= 2_000_000
    assert count_params(student) <= 0.20 * count_params(teacher)
    assert count_flops(student, x) <= 0.25 * count_flops(teacher, x)


def test_deformable_conv_flops_are_counted():
    dcn = ModulatedDeformConv2d(8, 8)
    x = torch.rand(1, 8, 10, 10)
    conv_flops = 2 * 8 * 8 * 9 * 100
    offset_conv_flops = 2 * 8 * 27 * 9 * 100
    sampling = 9 * 8 * 9 * 100
    mask = (4 + 1) * 9 * 100  # 2 * sigmoid(logits): a sigmoid (4) and a multiply (1) per tap and pixel
    assert count_flops(dcn, x) == conv_flops + offset_conv_flops + sampling + mask


def test_full_resolution_work_is_counted_by_hand():
    grid = torch.rand(1, 2, 2, 2, 2)
    coords = torch.rand(1, 1, 3, 4, 3)

    class Slice(torch.nn.Module):
        def forward(self, x):
            up = F.interpolate(x, scale_factor=2, mode='bicubic', align_corners=False)   # [1, 3, 4, 6]
            sliced = F.grid_sample(grid, coords, mode='bilinear', align_corners=False)   # [1, 2, 1, 3, 4]
            return torch.sigmoid(up) + up.mean(), sliced

    # bicubic 16 per output value; trilinear 16 per value + 30 per location; sigmoid 4; add 1; mean 1 per input
    expected = 16 * 72 + (16 * 2 * 12 + 30 * 12) + 4 * 72 + 72 + 72
    assert count_flops(Slice(), torch.rand(1, 3, 2, 3)) == expected


@pytest.mark.parametrize('opt,needle', [
    ({'upscale': 8}, 'upscale must be 2, 3 or 4'),
    ({'hr_feat': 0}, 'hr_feat must be an integer >= 1'),
    ({'n_in': 0}, 'hr_feat must be an integer >= 1'),  # the option's earlier name
    ({'num_block': 3}, 'num_block must be even'),
    ({'num_out_ch': 1}, 'num_out_ch (1) must equal num_in_ch (3)'),
    ({'deform_per_stage': 3, 'num_block': 4}, 'deform_per_stage (3) cannot exceed'),
])
def test_bad_options_name_the_option(opt, needle):
    for arch in ARCHS:
        if arch == 'HDRNet' and 'deform_per_stage' in opt:
            continue
        with pytest.raises(ValueError, match=re_escape(needle)):
            build_network({'type': arch, **opt})


def test_wrong_input_channels_name_num_in_ch():
    net = build_network({'type': 'HDRNet'})
    with pytest.raises(ValueError, match=r'num_in_ch: 3.*\[1, 1, 8, 8\]'):
        net(torch.rand(1, 1, 8, 8))


def re_escape(text: str) -> str:
    import re

    return re.escape(text)
