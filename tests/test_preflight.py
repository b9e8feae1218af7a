"""Bad options fail before training with a message naming the option and the fix; nothing on disk changes."""
import glob
import os
import shutil
from os import path as osp

import cv2
import pytest
import torch

from tests.helpers import TINY_SWINIR, experiment, fails_cleanly, sr_options, train, write_options


def test_missing_dataset_folder(tiny_pairs, exp_name, tmp_path):
    opt = sr_options(exp_name, tiny_pairs)
    opt['datasets']['train']['dataroot_gt'] = str(tmp_path / 'no_such_dir')
    # through the script itself: the exit status and stderr a user sees (the other rows run in this process)
    fails_cleanly(opt, tmp_path, 'datasets.train.dataroot_gt', 'does not exist', 'Fix:', as_script=True)


def test_lmdb_with_different_lr_and_hr_keys(tiny_pairs, exp_name, tmp_path):
    bad_lr = tmp_path / 'LR.lmdb'
    shutil.copytree(osp.join(tiny_pairs, 'LR.lmdb'), bad_lr)
    meta = (bad_lr / 'meta_info.txt').read_text().splitlines()
    (bad_lr / 'meta_info.txt').write_text('\n'.join(meta[:-1] + [meta[-1].replace('img3', 'other')]) + '\n')
    opt = sr_options(exp_name, tiny_pairs, backend='lmdb')
    opt['datasets']['train']['dataroot_lq'] = str(bad_lr)
    fails_cleanly(opt, tmp_path, 'datasets.train', "only in LR: ['other']", "only in HR: ['img3']",
                   'kd_plugin.cli.prepare lmdb')


def test_lr_hr_sizes_disagree_with_scale(tiny_pairs, exp_name, tmp_path):
    opt = sr_options(exp_name, tiny_pairs, scale=4)
    opt['network_g']['upscale'] = 4
    fails_cleanly(opt, tmp_path, 'datasets.train', 'does not match scale: 4', 'HR should be 128x128')


def test_unpaired_file_names(tiny_pairs, exp_name, tmp_path):
    lr = tmp_path / 'LR'
    shutil.copytree(osp.join(tiny_pairs, 'LR'), lr)
    os.rename(lr / 'img1.png', lr / 'renamed.png')
    opt = sr_options(exp_name, tiny_pairs)
    opt['datasets']['val']['dataroot_lq'] = str(lr)
    fails_cleanly(opt, tmp_path, 'datasets.val', "only in LR: ['renamed']", "only in HR: ['img1']")


def test_unreadable_image_is_named(tiny_pairs, exp_name, tmp_path):
    hr = tmp_path / 'HR'
    shutil.copytree(osp.join(tiny_pairs, 'HR'), hr)
    (hr / 'img2.png').write_bytes((hr / 'img2.png').read_bytes()[:40])  # truncated file
    opt = sr_options(exp_name, tiny_pairs)
    opt['datasets']['train']['dataroot_gt'] = str(hr)
    stderr = fails_cleanly(opt, tmp_path, 'datasets.train.dataroot_gt')
    assert 'img2.png' in stderr


def test_patch_larger_than_images(tiny_pairs, exp_name, tmp_path):
    opt = sr_options(exp_name, tiny_pairs)
    opt['datasets']['train']['gt_size'] = 96
    fails_cleanly(opt, tmp_path, 'datasets.train.gt_size: 96', 'smallest HR image side (64 px)', "'img1'",
                  'prepare merge --min-size 96')


def test_num_gpu_1_without_cuda(tiny_pairs, exp_name, tmp_path):
    opt = sr_options(exp_name, tiny_pairs, num_gpu=1)
    fails_cleanly(opt, tmp_path, 'num_gpu: 1', 'no CUDA device', '`num_gpu: auto`',
                  env={'CUDA_VISIBLE_DEVICES': ''})  # a machine without CUDA, also where there is one


def test_grey_validation_images_with_modcrop_slack_are_accepted(tmp_path):
    """Validation HR one pixel larger than scale x LR is fine (BasicSR crops it, like modcrop)."""
    from kd_plugin.preflight import check_paired_dataset

    (tmp_path / 'HR').mkdir()
    (tmp_path / 'LR').mkdir()
    cv2.imwrite(str(tmp_path / 'HR' / 'a.png'), (torch.rand(33, 65) * 255).byte().numpy())
    cv2.imwrite(str(tmp_path / 'LR' / 'a.png'), (torch.rand(16, 32) * 255).byte().numpy())
    val = {'phase': 'val', 'io_backend': {'type': 'disk'}, 'dataroot_gt': str(tmp_path / 'HR'),
           'dataroot_lq': str(tmp_path / 'LR')}
    check_paired_dataset('val', val, 2)
    with pytest.raises(ValueError, match='does not match scale: 2'):
        check_paired_dataset('train', dict(val, phase='train'), 2)



def _swinir_options(exp_name: str, tiny_pairs: str, tmp_path, model_type: str) -> dict:
    """A tiny SwinIR (window 8) validated on one 30x30 LR image, like Set5's 70x70 `head` at x4."""
    for kind, side in (('HR', 60), ('LR', 30)):
        os.makedirs(tmp_path / f'val_{kind}')
        img = cv2.imread(osp.join(tiny_pairs, kind, 'img0.png'))
        cv2.imwrite(str(tmp_path / f'val_{kind}' / 'img0.png'), img[:side, :side])
    opt = sr_options(exp_name, tiny_pairs, total_iter=2, model_type=model_type, network_g=dict(TINY_SWINIR))
    opt['datasets']['val'].update(dataroot_gt=str(tmp_path / 'val_HR'), dataroot_lq=str(tmp_path / 'val_LR'))
    return opt


def test_window_arch_validated_without_padding_fails_before_training(tiny_pairs, exp_name, tmp_path):
    opt = _swinir_options(exp_name, tiny_pairs, tmp_path, 'SRModel')
    fails_cleanly(opt, tmp_path, "datasets.val: 'img0' is 30x30 in LR", 'network_g.window_size: 8',
                   'model_type: SRModel does not pad', 'Fix: model_type: SwinIRModel')


def test_window_arch_training_patch_must_be_a_window_multiple(tiny_pairs, exp_name, tmp_path):
    opt = _swinir_options(exp_name, tiny_pairs, tmp_path, 'SwinIRModel')
    opt['datasets']['train']['gt_size'] = 36
    fails_cleanly(opt, tmp_path, 'datasets.train.gt_size: 36 gives 18 px LR patches', 'multiple of 16')


def test_window_arch_with_swinir_model_validates_any_size(tiny_pairs, exp_name, tmp_path):
    """The fix the message names works: SwinIRModel pads the 30x30 image and validation runs."""
    result = train(write_options(str(tmp_path), _swinir_options(exp_name, tiny_pairs, tmp_path, 'SwinIRModel')))
    assert result.returncode == 0, result.stderr[-2000:]
    log = open(next(f for f in glob.glob(osp.join(experiment(exp_name), 'train_*.log')))).read()
    assert 'Validation tiny_val' in log and '# psnr:' in log
