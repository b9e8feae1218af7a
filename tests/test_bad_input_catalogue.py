"""The bad-input catalogue of KD runs: each row fails before training with a message naming the option
or file and the fix, and leaves the existing experiment as it was (``test_preflight`` has the dataset rows)."""
import shutil
import sys
from os import path as osp

import cv2
import numpy as np
import pytest
import torch

from tests.helpers import experiment, fails_cleanly, run, sr_options, train, train_log, write_options
from tests.kd_fixtures import kd_options, save_teacher


@pytest.mark.parametrize('mutate,needles', [
    (lambda o, t: o['train']['distill_opt'].update(criterio='l2'),
     ['train.distill_opt.criterio: unknown key; did you mean `criterion`?', 'Fix:']),
    (lambda o, t: o['train'].update(distil_opt=o['train'].pop('distill_opt')),
     ['train.distil_opt: unknown key; did you mean `distill_opt`?']),
    (lambda o, t: o['train'].update(teacher={'autocats': 'bf16'}),
     ['train.teacher.autocats: unknown key; did you mean `autocast`?']),
    (lambda o, t: o['train']['feature_opt']['pairs'][1].update(student='trunk.9'),
     ["train.feature_opt.pairs[1].student: DeformableHDRNet has no layer 'trunk.9'", 'Closest valid names']),
    (lambda o, t: o['network_t'].update(upscale=4),
     ['the teacher upscales x4, but scale: 2', "Fix: set the teacher arch's upscale to 2"]),
    (lambda o, t: o['path'].update(pretrain_network_t=str(t / 'missing.pth')),
     ['path.pretrain_network_t:', 'missing.pth', 'does not exist', 'Fix:']),
])
def test_kd_option_rows(teacher, tiny_pairs, exp_name, tmp_path, mutate, needles):
    opt = kd_options(exp_name, tiny_pairs, teacher)
    mutate(opt, tmp_path)
    fails_cleanly(opt, tmp_path, *needles)


def test_corrupt_teacher_checkpoint(teacher, tiny_pairs, exp_name, tmp_path):
    broken = tmp_path / 'broken.pth'
    broken.write_bytes(open(teacher, 'rb').read()[:500])
    opt = kd_options(exp_name, tiny_pairs, str(broken))
    fails_cleanly(opt, tmp_path, 'path.pretrain_network_t: cannot read', 'broken.pth', 'truncated', 'Fix:')


def test_teacher_checkpoint_of_another_arch(tiny_pairs, exp_name, tmp_path):
    other = save_teacher(str(tmp_path), {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8,
                                         'num_block': 1, 'upscale': 2})
    opt = kd_options(exp_name, tiny_pairs, other)
    fails_cleanly(opt, tmp_path, 'path.pretrain_network_t does not fit network_t (HDRNet)',
                   "missing keys ['head.weight'", "unexpected keys ['conv_first.weight'", 'Fix:')


def test_image_truncated_after_its_header_is_named(teacher, tiny_pairs, exp_name, tmp_path):
    hr = tmp_path / 'HR'
    shutil.copytree(osp.join(tiny_pairs, 'HR'), hr)
    data = (hr / 'img1.png').read_bytes()
    (hr / 'img1.png').write_bytes(data[:len(data) // 2])  # size still readable, pixels are not
    opt = kd_options(exp_name, tiny_pairs, teacher)
    opt['datasets']['train']['dataroot_gt'] = str(hr)
    stderr = fails_cleanly(opt, tmp_path, 'datasets.train.dataroot_gt: cannot read image', 'Fix: replace or remove')
    assert 'img1.png' in stderr


def test_grey_and_16bit_training_images_are_read_as_8bit_rgb(teacher, tiny_pairs, exp_name, tmp_path):
    data = tmp_path / 'mixed'
    shutil.copytree(tiny_pairs, data, ignore=shutil.ignore_patterns('*.lmdb'))
    for folder in ('HR', 'LR'):
        img = cv2.imread(str(data / folder / 'img0.png'))
        cv2.imwrite(str(data / folder / 'img0.png'), cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
        img = cv2.imread(str(data / folder / 'img1.png'))
        cv2.imwrite(str(data / folder / 'img1.png'), img.astype(np.uint16) * 257)
    result = train(write_options(str(tmp_path), kd_options(exp_name, str(data), teacher)))
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'End of training' in train_log(exp_name)


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint_or_skips_when_asked(teacher, tiny_pairs, exp_name,
                                                                                    tmp_path):
    opt = kd_options(exp_name, tiny_pairs, teacher)
    assert train(write_options(str(tmp_path), opt)).returncode == 0
    saved = torch.load(experiment(exp_name, 'models', 'net_g_4.pth'), weights_only=True)
    opt['train']['distill_opt']['loss_weight'] = float('nan')
    opt['train']['total_iter'] = 8
    path = write_options(str(tmp_path), opt)
    stopped = train(path, '--auto_resume')
    assert stopped.returncode == 1
    assert 'error: iteration 5: non-finite loss on a rank (here: ' in stopped.stderr and 'l_dist=nan' in stopped.stderr
    assert 'train.nan_policy: skip' in stopped.stderr and 'Traceback' not in stopped.stderr
    assert not osp.exists(experiment(exp_name, 'models', 'net_g_6.pth'))
    after = torch.load(experiment(exp_name, 'models', 'net_g_4.pth'), weights_only=True)
    assert all(torch.equal(saved['params'][k], after['params'][k]) for k in saved['params'])

    opt['train']['nan_policy'] = 'skip'
    skipped = train(write_options(str(tmp_path), opt), '--auto_resume')
    assert skipped.returncode == 0, skipped.stderr[-2000:]
    log = train_log(exp_name)
    assert log.count('non-finite loss') >= 4 and 'step skipped on every rank (train.nan_policy: skip)' in log
    final = torch.load(experiment(exp_name, 'models', 'net_g_8.pth'), weights_only=True)['params']
    assert all(torch.equal(saved['params'][k], final[k]) for k in final)  # every step was dropped


def test_output_folder_that_cannot_be_created(tiny_pairs, tmp_path):
    """The project's experiments/ is in the way (a file here: tests run as root, which ignores permissions)."""
    root = tmp_path / 'project'
    root.mkdir()
    (root / 'experiments').write_text('not a folder')
    opt_path = write_options(str(tmp_path), sr_options('blocked', tiny_pairs))
    code = ('import sys; from kd_plugin.pipeline import run_pipeline; '
            f'sys.argv = ["train.py", "-opt", {opt_path!r}]; sys.exit(run_pipeline("train", {str(root)!r}))')
    result = run([sys.executable, '-c', code])
    assert result.returncode == 2, result.stderr[-2000:]
    expected = (f"error: cannot create the output folder '{root}/experiments/blocked': '{root}/experiments' is "
                'not a folder. Fix: move or remove')
    assert expected in result.stderr, result.stderr[-2000:]
    assert (root / 'experiments').read_text() == 'not a folder'
    assert sorted(p.name for p in root.iterdir()) == ['experiments']  # nothing else was written
