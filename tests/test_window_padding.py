"""Window-attention archs (SwinIR) on any input size: padded to the window, cropped back."""
import pytest
import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY

from kd_plugin.archs.window_padding import PaddedToWindow, pad_to_multiple, window_multiple
from kd_plugin.model_loading import load_model, parse_model
from tests.helpers import TINY_SWINIR, tiny_model


def tiny_swinir() -> torch.nn.Module:
    torch.manual_seed(0)
    arch = dict(TINY_SWINIR)
    return ARCH_REGISTRY.get(arch.pop('type'))(**arch).eval()


def test_window_multiple_reads_window_size():
    assert window_multiple(TINY_SWINIR) == 8
    assert window_multiple({'type': 'EDSR'}) == 1
    assert window_multiple({'window_size': True}) == 1


@torch.no_grad()
def test_padded_swinir_equals_basicsr_swinir_model_padding_on_odd_sizes():
    net = tiny_swinir()
    lq = torch.rand(1, 3, 13, 19)
    with pytest.raises(RuntimeError):
        net(lq)  # BasicSR's SwinIR does not pad
    # what BasicSR's SwinIRModel.test does: reflect-pad bottom/right to the window, crop scale x back
    reference = net(F.pad(lq, (0, 5, 0, 3), mode='reflect'))[..., :26, :38]
    assert torch.equal(PaddedToWindow(net, 8)(lq), reference)


def test_padding_replicates_when_a_side_is_too_small_to_reflect():
    x = torch.arange(6.).view(1, 1, 2, 3)
    padded = pad_to_multiple(x, 4)
    assert padded.shape == (1, 1, 4, 4)
    assert padded[0, 0, 3].tolist() == [3., 4., 5., 5.]  # last row repeated
    assert pad_to_multiple(padded, 4) is padded


@torch.no_grad()
def test_benchmark_loads_a_swinir_that_runs_on_any_lr_size(tmp_path):
    opt = tiny_model(str(tmp_path), 'tiny_swinir', dict(TINY_SWINIR))
    spec = parse_model(opt)
    net = load_model(spec)
    assert net(torch.rand(1, 3, 35, 29)).shape == (1, 3, 70, 58)  # Set5 `head` is 70x70 at x4
    assert 'input reflect-padded to multiples of 8' in spec.notes
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in tiny_swinir().parameters())
