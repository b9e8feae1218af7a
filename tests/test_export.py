"""``python -m kd_plugin.cli.export``: ONNX files that onnxruntime runs with PyTorch's results, and clear refusals."""
import os
import sys

import numpy as np
import pytest
import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from kd_plugin import onnx_export
from kd_plugin.cli import export
from kd_plugin.model_loading import OnnxNet, load_model, parse_model
from tests.helpers import run, shared_data, tiny_model

pytest.importorskip('onnxruntime', reason='the [export] extra (onnx, onnxruntime) is not installed')

ARCHS = {
    'DeformableHDRNet': {'type': 'DeformableHDRNet', 'upscale': 4, 'num_feat': 8, 'coeff_feat': 8},
    'HDRNet': {'type': 'HDRNet', 'upscale': 4, 'num_feat': 8, 'num_block': 2, 'coeff_feat': 8},
    'EDSR': {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 4},
}


def deform_for_real(spec: str) -> None:
    """Give every DCN layer of ``spec``'s checkpoint non-zero offset/mask weights, as training does.

    A freshly initialised DCN has offsets exactly 0 and masks exactly 1: it is a plain conv, and a parity
    check on it says nothing about ``DeformConv``'s sampling."""
    import yaml

    ckpt = yaml.safe_load(open(spec))['path']['pretrain_network_g']
    state = torch.load(ckpt)['params']
    g = torch.Generator().manual_seed(0)
    for key in [k for k in state if '.offset_mask.' in k]:
        state[key] = torch.randn(state[key].shape, generator=g) * (0.5 if key.endswith('weight') else 1.0)
    torch.save({'params': state}, ckpt)


def dcn_offsets(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The offsets/mask logits every DCN layer of ``net`` predicts for ``x``."""
    seen = []
    hooks = [m.register_forward_hook(lambda m, a, out: seen.append(out)) for name, m in net.named_modules()
             if name.endswith('offset_mask')]
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize('arch', list(ARCHS))
def test_export_runs_in_onnxruntime_with_pytorchs_result_at_any_size(arch, tmp_path):
    spec = tiny_model(str(tmp_path), arch, ARCHS[arch], scale=4)
    if arch == 'DeformableHDRNet':
        deform_for_real(spec)
        offsets = dcn_offsets(load_model(parse_model(spec)), torch.rand(1, 3, 23, 31))
        assert offsets and all(o.abs().max() > 1 and (o - o.round()).abs().mean() > 0.1 for o in offsets)
    out = tmp_path / f'{arch}.onnx'
    assert export.main(['--model', spec, '--output', str(out)]) == 0
    onnx_net, torch_net = OnnxNet(str(out)), load_model(parse_model(spec))
    assert onnx_net.scale == 4
    x = torch.rand(1, 3, 23, 31)  # a third size, not one the command checked
    with torch.no_grad():
        expected = torch_net(x)
    got = onnx_net(x)
    assert got.shape == (1, 3, 92, 124)
    assert (got - expected).abs().max() < 1e-4
    import onnx

    ops = {node.op_type for node in onnx.load(str(out)).graph.node}
    if arch == 'DeformableHDRNet':  # the DCNv2 layer is ONNX's DeformConv, not a rewrite
        assert 'DeformConv' in ops
    if arch in ('HDRNet', 'DeformableHDRNet'):  # the slice as gathers, which onnxruntime runs faster
        assert 'GridSample' not in ops and 'Gather' in ops


def test_fp16_export_and_infer_with_the_onnx_file(tmp_path, capsys):
    spec = tiny_model(str(tmp_path), 'student', ARCHS['DeformableHDRNet'], scale=4)
    out = tmp_path / 'student_fp16.onnx'
    assert export.main(['--model', spec, '--output', str(out), '--fp16']) == 0
    steps = [line for line in capsys.readouterr().out.splitlines() if line.startswith('[export] student: ')]
    check = 'checking onnxruntime against PyTorch'
    assert [s.split(': ', 1)[1].split(' (')[0].split(' on ')[0] for s in steps] == [
        'exporting', 'converting to fp16', check, check]
    result = run([sys.executable, '-m', 'kd_plugin.cli.infer', '--model', str(out), '--input',
                  shared_data('Set5', 'LR_bicubic', 'X4', 'head.png'), '--output', str(tmp_path / 'sr')])
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / 'sr' / 'head_x4.png').is_file()


def test_existing_output_is_kept_without_overwrite(tmp_path, capsys):
    spec = tiny_model(str(tmp_path), 'edsr', ARCHS['EDSR'], scale=4)
    out = tmp_path / 'model.onnx'
    out.write_bytes(b'precious')
    assert export.main(['--model', spec, '--output', str(out)]) == 2
    assert 'error: export: --output' in capsys.readouterr().err and out.read_bytes() == b'precious'


def test_a_model_that_differs_beyond_tolerance_fails_naming_the_difference(tmp_path, capsys, monkeypatch):
    spec = tiny_model(str(tmp_path), 'hdrnet', ARCHS['HDRNet'], scale=4)
    monkeypatch.setitem(export.TOLERANCE, 'fp32', 0.0)  # any float difference now counts as a mismatch
    out = tmp_path / 'model.onnx'
    assert export.main(['--model', spec, '--output', str(out)]) == 2
    err = capsys.readouterr().err
    assert 'the ONNX model differs from PyTorch by up to ' in err and '(tolerance 0 for fp32)' in err
    assert not out.exists() and [p for p in os.listdir(tmp_path) if p.endswith('.onnx')] == []


class _Cumulative(nn.Module):
    """A toy SR arch whose ``body`` calls ``torch.cummax``, which has no ONNX translation."""

    def __init__(self, upscale: int = 2) -> None:
        super().__init__()
        self.body = _CumMax()
        self.up = nn.Upsample(scale_factor=upscale)

    def forward(self, x):
        return self.up(self.body(x))


class _CumMax(nn.Module):
    def forward(self, x):
        return torch.cummax(x, dim=-1).values


def test_an_op_without_onnx_translation_is_named_with_its_layer(tmp_path, capsys):
    if '_ExportTestCumulative' not in ARCH_REGISTRY:
        ARCH_REGISTRY._do_register('_ExportTestCumulative', _Cumulative)
    spec = tiny_model(str(tmp_path), 'cummax', {'type': '_ExportTestCumulative', 'upscale': 2})
    assert export.main(['--model', spec, '--output', str(tmp_path / 'm.onnx')]) == 2
    err = capsys.readouterr().err
    assert "op aten.cummax (called by layer 'body', a _CumMax) has no ONNX translation" in err
    assert not (tmp_path / 'm.onnx').exists()


def test_check_images_are_a_real_photograph_at_two_sizes():
    images = onnx_export.check_images()
    assert [im.shape for im in images] == [(1, 3, 40, 56), (1, 3, 29, 37)]
    assert all(im.std() > 0.05 and 0 <= im.min() and im.max() <= 1 for im in images)
    assert not np.array_equal(images[0][..., :29, :37], images[1])  # different crops, not only sizes
