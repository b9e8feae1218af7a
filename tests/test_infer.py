"""``python -m kd_plugin.cli.infer``: tiles without seams, bit depths and channel layouts kept, inputs never
overwritten."""
import sys
from os import path as osp

import cv2
import numpy as np
import torch
import yaml
from basicsr.archs import build_network

from kd_plugin.cli import infer
from kd_plugin.inference import upscale_tensor
from tests.helpers import run, tool_in_process

EDSR = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 2, 'upscale': 2}


def model_file(folder) -> str:
    torch.manual_seed(0)
    ckpt = osp.join(str(folder), 'edsr.pth')
    torch.save({'params': build_network(dict(EDSR)).state_dict()}, ckpt)
    path = osp.join(str(folder), 'edsr.yml')
    with open(path, 'w') as f:
        yaml.safe_dump({'name': 'edsr', 'scale': 2, 'network_g': EDSR, 'path': {'pretrain_network_g': ckpt}}, f)
    return path


def test_tiled_equals_untiled_when_the_receptive_field_fits_the_overlap():
    torch.manual_seed(0)
    net = build_network(dict(EDSR)).eval()  # 2 blocks: receptive field radius 6 LR px < overlap 8
    x = torch.rand(1, 3, 45, 61)
    with torch.no_grad():
        whole = net(x)
        tiled = upscale_tensor(net, x, 2, tile=16, overlap=8)
        no_context = upscale_tensor(net, x, 2, tile=16, overlap=0)
    assert tiled.shape == whole.shape == (1, 3, 90, 122)
    assert (tiled - whole).abs().max() < 1 / 255
    assert (no_context - whole).abs().max() > 1 / 255  # without context the seams would show


def test_infer_keeps_depth_and_layout_and_never_overwrites_inputs(tmp_path):
    opt = model_file(tmp_path)
    images = tmp_path / 'in'
    images.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(images / 'rgb8.png'), rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))
    cv2.imwrite(str(images / 'grey16.png'), rng.integers(0, 65536, (20, 24), dtype=np.uint16))
    cv2.imwrite(str(images / 'rgba.png'), rng.integers(0, 256, (20, 24, 4), dtype=np.uint8))
    (images / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\nnot really')
    (images / 'rgb8_x2.png').write_bytes(cv2.imencode('.png', np.zeros((4, 4, 3), np.uint8))[1].tobytes())
    before = {p.name: p.read_bytes() for p in images.iterdir()}
    result = tool_in_process(infer.main, '--model', opt, '--input', str(images), '--output', str(images), '--tile', '8',
                             '--tile-overlap', '6')
    assert result.returncode == 1
    assert "cannot read" in result.stderr and 'broken.png' in result.stderr
    assert 'rgb8_x2.png is one of the inputs; not overwritten' in result.stderr
    for name, data in before.items():
        assert (images / name).read_bytes() == data, name  # no input changed
    grey = cv2.imread(str(images / 'grey16_x2.png'), cv2.IMREAD_UNCHANGED)
    assert grey.dtype == np.uint16 and grey.shape == (40, 48)
    rgba = cv2.imread(str(images / 'rgba_x2.png'), cv2.IMREAD_UNCHANGED)
    assert rgba.dtype == np.uint8 and rgba.shape == (40, 48, 4)

    out = tmp_path / 'out'
    ok = tool_in_process(infer.main, '--model', opt, '--input', str(images / 'rgb8.png'), '--output', str(out))
    assert ok.returncode == 0, ok.stderr
    assert cv2.imread(str(out / 'rgb8_x2.png')).shape == (40, 48, 3)
    missing = run([sys.executable, '-m', 'kd_plugin.cli.infer', '--model', opt + '@nope.pth', '--input',
                   str(images), '--output', str(out)])  # as the command: its real exit status
    assert missing.returncode == 2 and "error: infer: --model: model edsr checkpoint: 'nope.pth' does not exist" in \
        missing.stderr
