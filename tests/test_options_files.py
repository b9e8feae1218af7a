"""Every shipped options file parses, names registered archs whose scale agrees, and keeps its layout."""
import glob
from os import path as osp

import pytest
import torch
import yaml
from basicsr.archs import build_network

from tests.helpers import ROOT

OPTION_FILES = sorted(glob.glob(osp.join(ROOT, 'options', '**', '*.yml'), recursive=True))


def test_there_are_options_files():
    names = {osp.basename(p) for p in OPTION_FILES}
    assert {'train_HDRNet_T91_x4.yml', 'train_DeformableHDRNet_T91_x4.yml', 'train_HDRNet_T91_x2.yml',
            'train_DeformableHDRNet_T91_x2.yml'} <= names


@pytest.mark.parametrize('path', OPTION_FILES, ids=lambda p: osp.relpath(p, ROOT))
def test_options_file_builds_its_networks_at_its_scale(path):
    with open(path) as f:
        opt = yaml.safe_load(f)
    assert opt['name'] and opt['model_type']
    for key in (k for k in opt if k.startswith('network_')):
        net = build_network(dict(opt[key])).eval()
        with torch.no_grad():
            out = net(torch.rand(1, 3, 16, 24))  # multiples of 8: BasicSR's SwinIR does not pad
        assert out.shape[-2:] == (16 * opt['scale'], 24 * opt['scale']), key
    for metric in opt.get('val', {}).get('metrics', {}).values():
        assert metric['crop_border'] == opt['scale'] and metric['test_y_channel'] is True


KD_FILES = [p for p in OPTION_FILES if 'model_type: KDModel' in open(p).read()]


def test_kd_files_cover_the_required_pairs():
    pairs = set()
    for path in KD_FILES:
        with open(path) as f:
            opt = yaml.safe_load(f)
        pairs.add((opt['network_t']['type'], opt['network_g']['type'], opt['scale']))
    assert {('HDRNet', 'DeformableHDRNet', 4), ('HDRNet', 'DeformableHDRNet', 2), ('EDSR', 'EDSR', 4),
            ('SwinIR', 'DeformableHDRNet', 4)} <= pairs


@pytest.mark.parametrize('path', KD_FILES, ids=lambda p: osp.relpath(p, ROOT))
def test_kd_file_layers_and_adapters_check_out(path, tmp_path):
    """The pre-run KD check (layer names, probed shapes, adapters, teacher keys) passes with a teacher
    checkpoint of the file's network_t, and every layer it names exists in the nets."""
    from kd_plugin.preflight import check_kd_model as check_kd_options

    with open(path) as f:
        opt = yaml.safe_load(f)
    torch.manual_seed(0)
    teacher = tmp_path / 'teacher.pth'
    torch.save({'params': build_network(dict(opt['network_t'])).state_dict()}, teacher)
    opt['path']['pretrain_network_t'] = str(teacher)
    opt['num_gpu'] = 0
    check_kd_options(opt)
