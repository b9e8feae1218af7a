"""DIV2K the BasicSR way: ``prepare div2k`` on a miniature tree with the real folder names, and every DIV2K
options file through the pre-run checks on its output."""
import glob
import os
from copy import deepcopy
from os import path as osp

import cv2
import numpy as np
import pytest
import torch
import yaml

from kd_plugin.archs.build import build_network
from kd_plugin.cli import prepare
from kd_plugin.data.matlab_bicubic import bicubic_downscale
from kd_plugin.preflight import check_options
from tests.helpers import ROOT, shared_data, tool_in_process

DIV2K_OPTIONS = sorted(glob.glob(osp.join(ROOT, 'options', 'train', '*', '*_DIV2K_x*.yml')))


@pytest.fixture(scope='module')
def mini_div2k(tmp_path_factory) -> str:
    """Two 504x600 'DIV2K' photographs (480-px crops: 2 x 2 each) with their x2 and x4 bicubic LR images,
    named as downloaded, then ``prepare div2k --lmdb``."""
    from kd_plugin.data.bundled_photos import load_photo

    root = tmp_path_factory.mktemp('DIV2K')
    photo = cv2.cvtColor(load_photo('astronaut'), cv2.COLOR_RGB2BGR)
    big = np.concatenate([photo, photo[::-1]], axis=0)[:504, :].repeat(2, axis=1)[:, :600]
    (root / 'DIV2K_train_HR').mkdir()
    for i, img in enumerate((big, big[::-1, ::-1]), start=1):
        cv2.imwrite(str(root / 'DIV2K_train_HR' / f'{i:04d}.png'), img)
        for s in (2, 4):
            (root / 'DIV2K_train_LR_bicubic' / f'X{s}').mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / 'DIV2K_train_LR_bicubic' / f'X{s}' / f'{i:04d}x{s}.png'), bicubic_downscale(img, s))
    result = tool_in_process(prepare.main, 'div2k', '--root', str(root), '--scales', '2', '4', '--lmdb')
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'x2: 8 sub-image pairs, x4: 8 sub-image pairs' in result.stdout
    return str(root)


def test_prepare_div2k_writes_basicsr_names_sizes_and_lmdbs(mini_div2k):
    hr = sorted(os.listdir(osp.join(mini_div2k, 'DIV2K_train_HR_sub')))
    assert hr == [f'{i:04d}_s{j:03d}.png' for i in (1, 2) for j in range(1, 5)]
    for s in (2, 4):
        lr_dir = osp.join(mini_div2k, 'DIV2K_train_LR_bicubic', f'X{s}_sub')
        assert sorted(os.listdir(lr_dir)) == hr  # the x{s} of the LR names is dropped, as BasicSR does
        lr = cv2.imread(osp.join(lr_dir, '0001_s004.png'))
        assert lr.shape == (480 // s, 480 // s, 3)
        # the last crop is flush with the bottom-right corner, in HR and LR alike
        full = cv2.imread(osp.join(mini_div2k, 'DIV2K_train_LR_bicubic', f'X{s}', f'0001x{s}.png'))
        assert np.array_equal(lr, full[-480 // s:, -480 // s:])
        meta = open(osp.join(mini_div2k, f'DIV2K_train_LR_bicubic_X{s}_sub.lmdb', 'meta_info.txt')).read()
        assert f'0001_s001.png ({480 // s},{480 // s},3)' in meta
    assert osp.isfile(osp.join(mini_div2k, 'DIV2K_train_HR_sub.lmdb', 'data.mdb'))


def test_prepare_div2k_resumes_and_never_overwrites(mini_div2k, tmp_path):
    hr_sub = osp.join(mini_div2k, 'DIV2K_train_HR_sub')
    stamp = {n: os.path.getmtime(osp.join(hr_sub, n)) for n in os.listdir(hr_sub)}
    again = tool_in_process(prepare.main, 'div2k', '--root', mini_div2k, '--scales', '2', '4', '--lmdb')
    assert again.returncode == 0
    assert {n: os.path.getmtime(osp.join(hr_sub, n)) for n in os.listdir(hr_sub)} == stamp

    # an interrupted run: a folder without its completion mark and with crops missing is finished, not redone
    import shutil

    copy = tmp_path / 'DIV2K'
    shutil.copytree(mini_div2k, copy)
    x4 = copy / 'DIV2K_train_LR_bicubic' / 'X4_sub'
    (x4.parent / '.X4_sub.complete').unlink()
    (x4 / '0002_s003.png').unlink()
    kept = os.path.getmtime(x4 / '0001_s001.png')
    result = tool_in_process(prepare.main, 'div2k', '--root', str(copy), '--scales', '4')
    assert result.returncode == 0, result.stderr[-2000:]
    assert (x4 / '0002_s003.png').is_file() and os.path.getmtime(x4 / '0001_s001.png') == kept


def test_missing_or_unpaired_div2k_folders_are_named(mini_div2k, tmp_path):
    result = tool_in_process(prepare.main, 'div2k', '--root', str(tmp_path), '--scales', '4')
    assert result.returncode == 2 and f'{tmp_path}/DIV2K_train_HR does not exist' in result.stderr
    import shutil

    copy = tmp_path / 'DIV2K'
    shutil.copytree(osp.join(mini_div2k, 'DIV2K_train_HR'), copy / 'DIV2K_train_HR')
    (copy / 'DIV2K_train_LR_bicubic' / 'X4').mkdir(parents=True)
    shutil.copy(osp.join(mini_div2k, 'DIV2K_train_LR_bicubic', 'X4', '0001x4.png'), copy / 'DIV2K_train_LR_bicubic' /
                'X4')
    result = tool_in_process(prepare.main, 'div2k', '--root', str(copy), '--scales', '4')
    assert result.returncode == 2 and 'do not pair up (only in HR: [\'0002_s001.png\'' in result.stderr


def test_there_is_a_div2k_file_for_every_t91_file_at_x2_and_x4():
    t91 = glob.glob(osp.join(ROOT, 'options', 'train', '*', 'train_*_T91_x4.yml'))
    stems = {osp.basename(p)[len('train_'):-len('_T91_x4.yml')] for p in t91 if not p.endswith('_12k.yml')}
    for stem in stems:
        for s in (2, 4):
            assert any(osp.basename(p) == f'train_{stem}_DIV2K_x{s}.yml' for p in DIV2K_OPTIONS), (stem, s)


@pytest.mark.parametrize('path', DIV2K_OPTIONS, ids=[osp.basename(p) for p in DIV2K_OPTIONS])
def test_div2k_options_pass_the_pre_run_checks_on_a_prepared_tree(path, mini_div2k, tmp_path):
    with open(path) as f:
        opt = yaml.safe_load(f)
    assert opt['datasets']['train']['dataroot_gt'] == 'datasets/DIV2K/DIV2K_train_HR_sub.lmdb'
    opt = deepcopy(opt)
    opt['is_train'] = True
    for phase, dataset in opt['datasets'].items():
        dataset['phase'] = 'train' if phase == 'train' else 'val'
        for key in ('dataroot_gt', 'dataroot_lq'):
            dataset[key] = dataset[key].replace('datasets/DIV2K', mini_div2k)
            dataset[key] = dataset[key].replace('datasets/Set14', shared_data('Set5')).replace(
                'datasets/Set5', shared_data('Set5'))
    if 'network_t' in opt:  # the teacher of a KD file: an untrained one of the right arch
        teacher = str(tmp_path / 'teacher.pth')
        torch.save({'params': build_network(dict(opt['network_t'])).state_dict()}, teacher)
        opt['path']['pretrain_network_t'] = teacher
    check_options(opt)
