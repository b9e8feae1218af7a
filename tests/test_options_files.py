"""Every shipped options file parses, names registered archs whose scale agrees, and keeps its layout."""
import glob
from os import path as osp

import pytest
import torch
import yaml
from basicsr.archs import build_network

from tests.conftest import ROOT

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
            out = net(torch.rand(1, 3, 12, 10))
        assert out.shape[-2:] == (12 * opt['scale'], 10 * opt['scale']), key
    for metric in opt.get('val', {}).get('metrics', {}).values():
        assert metric['crop_border'] == opt['scale'] and metric['test_y_channel'] is True
