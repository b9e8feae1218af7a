"""Naming only a model file as the teacher (``kd-demo --teacher FILE``): which network the file is, and the demo
run with such a file."""
import json
import os
import shutil
from os import path as osp

import pytest
import torch
from spandrel.architectures.SPAN import SPAN

from kd_plugin.archs.build import build_network
from kd_plugin.archs.published import network_for_file
from kd_plugin.cli import demo
from tests.helpers import ROOT, tool_in_process


def saved(tmp_path, name: str, net: torch.nn.Module, prefix: str = '') -> str:
    path = str(tmp_path / name)
    torch.save({prefix + k: v for k, v in net.state_dict().items()}, path)
    return path


@pytest.mark.parametrize('arch', ['IMDN', 'RLFN'])
def test_a_published_archs_file_is_that_arch_also_with_ddp_prefixes(tmp_path, arch):
    net = build_network({'type': arch, 'upscale': 4})
    assert network_for_file(saved(tmp_path, 'plain.pth', net), 4) == {'type': arch, 'upscale': 4}
    assert network_for_file(saved(tmp_path, 'ddp.pth', net, 'module.'), 4) == {'type': arch, 'upscale': 4}


def test_a_file_of_another_scale_is_refused_naming_both(tmp_path):
    path = saved(tmp_path, 'IMDN_x2.pth', build_network({'type': 'IMDN', 'upscale': 2}))
    with pytest.raises(ValueError, match=r'--teacher .*IMDN_x2.pth: a x2 IMDN, and this run is x4. Fix: give the x4 '
                                         r'IMDN file'):
        network_for_file(path, 4)


def test_any_other_architecture_goes_to_spandrel_and_an_unknown_one_is_refused(tmp_path):
    span = SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=4)
    assert network_for_file(saved(tmp_path, 'span_x4.pth', span), 4) == {'type': 'SpandrelNet'}
    with pytest.raises(ValueError, match=r'--teacher .*span_x4.pth: neither IMDN nor RLFN, and SpandrelNet: '
                                         r'.* is a x4 SPAN .*and upscale is 2'):
        network_for_file(saved(tmp_path, 'span_x4.pth', span), 2)
    torch.save({'head.weight': torch.zeros(4, 3, 3, 3)}, tmp_path / 'mystery.pth')
    with pytest.raises(ValueError, match=r'--teacher .*mystery.pth: neither IMDN nor RLFN, and SpandrelNet: '
                                         r'spandrel .* does not recognise'):
        network_for_file(str(tmp_path / 'mystery.pth'), 4)


def test_the_demo_with_a_published_teacher_file(exp_name, tmp_path):
    """``--teacher FILE``: the file's arch is the teacher of the labels, the KD run and the table; its labels have a
    folder of their own; a file that is no teacher is refused before anything is built or archived."""
    torch.manual_seed(0)
    teacher = saved(tmp_path, f'{exp_name}_imdn.pth', build_network({'type': 'IMDN', 'upscale': 4}))
    result = tool_in_process(demo.main, '--teacher', teacher, '--total-iter', '2', '--no-baseline', '--tag', exp_name)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f'teacher {teacher}: a x4 IMDN, SHA-256 ' in result.stdout
    run = json.load(open(osp.join(ROOT, 'results', exp_name, 'results.json')))['runs']['student (KD)']
    assert run['name'] == f'{exp_name}_KD_IMDN_to_DeformableHDRNet_photos_x4'
    labels = osp.join(ROOT, 'datasets', 'photos', 'train', 'X4', f'labels_{exp_name}_imdn_none.npy')
    try:
        assert json.load(open(osp.join(labels, 'manifest.json')))['complete']
        used = demo.load_options(osp.join(ROOT, 'experiments', run['name'], f'{run["name"]}.yml'))
        assert used['network_t'] == {'type': 'IMDN', 'upscale': 4} and used['path']['pretrain_network_t'] == teacher
        assert used['datasets']['train']['dataroot_teacher'].endswith(f'labels_{exp_name}_imdn_none.npy')
    finally:
        for name in os.listdir(osp.dirname(labels)):
            if name.startswith(f'labels_{exp_name}_'):
                target = osp.join(osp.dirname(labels), name)
                (os.remove if osp.isfile(target) else shutil.rmtree)(target)
    torch.save({'head.weight': torch.zeros(4, 3, 3, 3)}, tmp_path / 'mystery.pth')
    refused = tool_in_process(demo.main, '--teacher', str(tmp_path / 'mystery.pth'), '--tag', f'{exp_name}_refused')
    assert refused.returncode != 0 and 'neither IMDN nor RLFN' in refused.stderr
    assert not osp.exists(osp.join(ROOT, 'results', f'{exp_name}_refused'))
