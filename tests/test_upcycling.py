"""Data upcycling and adaptive output distillation: the ops, their gradients, one step per iteration,
option errors, and a resumable run."""
import copy
import os

import numpy as np
import pytest
import torch
from basicsr.models import build_model

from kd_plugin.data.matlab_bicubic import downscale_tensor, imresize_uint8
from kd_plugin.distill.upcycling import AUGMENTATIONS, augment, iteration_rng, undo, zoom_in_tiles
from kd_plugin.losses.output_distill_loss import OutputDistillLoss, teacher_better_weights
from kd_plugin.preflight import check_kd_model
from tests.helpers import experiment, train, train_log, write_options
from tests.kd_fixtures import all_losses, kd_model_options, kd_options, save_teacher

UPCYCLE = {'zoom_in': {'prob': 1.0, 'weight': 0.5}, 'zoom_out': {'prob': 1.0, 'weight': 0.5, 'gt_weight': 0.25},
           'consistency': {'prob': 1.0, 'weight': 0.5}}


@pytest.fixture(scope='module')
def teacher_path(tmp_path_factory):
    return save_teacher(str(tmp_path_factory.mktemp('teacher')))


def upcycling_model(teacher_path, tmp_path, parts, losses=None, **train_extra):
    opt = kd_model_options(teacher_path, losses if losses is not None else {'pixel_opt': all_losses()['pixel_opt']},
                           str(tmp_path))
    opt['train']['upcycle'] = parts
    opt['train'].update(train_extra)
    opt['manual_seed'] = 0
    torch.manual_seed(0)
    model = build_model(opt)
    torch.manual_seed(1)
    model.feed_data({'lq': torch.randint(0, 256, (2, 3, 16, 16)).float() / 255,
                     'gt': torch.randint(0, 256, (2, 3, 32, 32)).float() / 255})
    return model


def test_zoom_in_tiles_are_lr_sized_crops_of_the_hr_patches():
    gt = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    tiles = zoom_in_tiles(gt, (4, 4), iteration_rng(0, 7))
    assert tiles.shape == (2, 3, 4, 4)
    rng = iteration_rng(0, 7)  # the same draws again
    for b in range(2):
        top, left = rng.randint(0, 4), rng.randint(0, 4)
        assert torch.equal(tiles[b], gt[b, :, top:top + 4, left:left + 4])
    assert iteration_rng(0, 7).random() == iteration_rng(0, 7).random() != iteration_rng(0, 8).random()


def test_zoom_out_is_the_bit_exact_matlab_bicubic():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 3, 16, 24), dtype=np.uint8)
    small = downscale_tensor(torch.from_numpy(images).float() / 255, 4)
    expected = np.stack([imresize_uint8(im.transpose(1, 2, 0), 0.25).transpose(2, 0, 1) for im in images])
    assert small.shape == (2, 3, 4, 6)
    assert np.array_equal(np.round(small.numpy() * 255).astype(np.uint8), expected)


@pytest.mark.parametrize('name', AUGMENTATIONS)
def test_each_augmentation_is_undone_exactly(name):
    x = torch.rand(2, 3, 5, 5)
    assert not torch.equal(augment(x, name), x)
    assert torch.equal(undo(augment(x, name), name), x)


def test_teacher_better_weights_by_hand():
    gt = torch.zeros(1, 1, 1, 3)
    student = torch.tensor([[[[0.5, 0.1, 0.2]]]])
    teacher = torch.tensor([[[[0.1, 0.3, 0.2]]]])
    # e_S = (0.5, 0.1, 0.2), e_T = (0.1, 0.3, 0.2): teacher better only at pixel 0
    weights = teacher_better_weights(student, teacher, gt)
    torch.testing.assert_close(weights, torch.tensor([[[[0.4 / 0.501, 0.0, 0.0]]]]))
    loss = OutputDistillLoss(loss_weight=2.0, weighting='teacher_better')
    assert loss(student, teacher, gt).item() == pytest.approx(2.0 * 0.4 / 0.501 * 0.4 / 3, rel=1e-5)
    with pytest.raises(ValueError, match='needs the ground truth'):
        loss(student, teacher)


@pytest.mark.parametrize('part', ['zoom_in', 'zoom_out', 'consistency'])
def test_each_upcycling_term_trains_the_student_and_never_the_teacher(teacher_path, tmp_path, part):
    no_pixel = {'pixel_opt': dict(all_losses()['pixel_opt'], loss_weight=0.0)}  # the term alone moves the student
    model = upcycling_model(teacher_path, tmp_path, {part: UPCYCLE[part]}, losses=no_pixel)
    teacher_before = {n: p.clone() for n, p in model.net_t.named_parameters()}
    student_before = {n: p.detach().clone() for n, p in model.net_g.named_parameters()}
    model.optimize_parameters(1)
    key = {'zoom_in': 'l_up_in', 'zoom_out': 'l_up_out', 'consistency': 'l_up_cons'}[part]
    assert list(model.log_dict) == ['l_pix', key] and model.log_dict['l_pix'] == 0 and model.log_dict[key] > 0
    assert any(not torch.equal(p, student_before[n]) for n, p in model.net_g.named_parameters())
    for name, p in model.net_t.named_parameters():
        assert p.grad is None and torch.equal(p, teacher_before[name])


def test_teacher_better_weighting_trains_the_student(teacher_path, tmp_path):
    losses = {'pixel_opt': all_losses()['pixel_opt'],
              'distill_opt': dict(all_losses()['distill_opt'], weighting='teacher_better')}
    model = upcycling_model(teacher_path, tmp_path, None, losses=losses)
    model.optimize_parameters(1)
    assert model.log_dict['l_dist'] > 0
    assert all(p.grad is None for p in model.net_t.parameters())
    assert sum(p.grad.abs().sum() for p in model.net_g.parameters() if p.grad is not None) > 0


def test_one_optimizer_step_per_iteration_whatever_the_terms(teacher_path, tmp_path):
    model = upcycling_model(teacher_path, tmp_path, UPCYCLE, losses=all_losses())
    calls = []
    for optimizer in model.optimizers:
        optimizer.step = (lambda real: lambda *a, **k: calls.append(1) or real(*a, **k))(optimizer.step)
    for it in (1, 2, 3):
        model.optimize_parameters(it)
    assert len(calls) == 3 * len(model.optimizers) == 6  # student and adapters, once per iteration each
    assert {state['step'].item() for state in model.optimizer_g.state.values()} == {3.0}
    assert set(model.log_dict) == {'l_pix', 'l_dist', 'l_feat', 'l_fwd', 'l_up_in', 'l_up_out', 'l_up_cons'}


def test_a_part_not_drawn_logs_zero_and_costs_no_forward(teacher_path, tmp_path):
    model = upcycling_model(teacher_path, tmp_path, {'zoom_in': {'prob': 0.0}, 'consistency': {'prob': 1.0}})
    runs = []
    model.net_t.head.register_forward_hook(lambda *a: runs.append(1))
    model.optimize_parameters(1)
    assert model.log_dict['l_up_in'] == 0 and model.log_dict['l_up_cons'] > 0
    assert len(runs) == 1  # only the step's own teacher pass: consistency reuses its output


@pytest.mark.parametrize('mutate,needle', [
    (lambda o: o['train'].update(upcycle={'zoom_inn': {}}),
     'train.upcycle.zoom_inn: unknown key; did you mean `zoom_in`?'),
    (lambda o: o['train'].update(upcycle={'zoom_in': {'prob': 1.5}}),
     'train.upcycle.zoom_in.prob: 1.5 is not a probability. Fix: a number in [0, 1]'),
    (lambda o: o['train'].update(upcycle={'consistency': {'augmentations': ['rot90']}}),
     "train.upcycle.consistency.augmentations: ['rot90']. Fix: a non-empty list of hflip"),
    (lambda o: (o['train'].update(upcycle={'zoom_out': {}}), o['datasets']['train'].update(gt_size=34)),
     'train.upcycle.zoom_out: the LR training patches are 17 px, not divisible by scale 2'),
    (lambda o: (o['train'].pop('pixel_opt'), o['train']['distill_opt'].update(weighting='teacher_better')),
     'train.distill_opt.weighting: teacher_better weights each pixel by how much better the teacher is'),
])
def test_bad_upcycling_and_weighting_options_name_the_key(teacher_path, tmp_path, mutate, needle):
    opt = kd_model_options(teacher_path, all_losses(), str(tmp_path))
    opt['train']['pixel_opt'] = all_losses()['pixel_opt']
    opt['datasets'] = {'train': {'gt_size': 32}}
    mutate(opt)
    with pytest.raises(ValueError) as err:
        check_kd_model(copy.deepcopy(opt))
    assert needle in str(err.value)
    with pytest.raises(ValueError) as err:
        build_model(opt)
    assert needle in str(err.value)


def test_upcycling_kd_run_resumes_and_a_bad_option_writes_nothing(tiny_pairs, teacher, exp_name, tmp_path):
    opt = kd_options(exp_name, tiny_pairs, teacher, total_iter=4)
    opt['train']['upcycle'] = UPCYCLE
    path = write_options(str(tmp_path), opt)
    assert train(path).returncode == 0
    resumed = train(path, '--auto_resume', '--force_yml', 'train:total_iter=6')
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = train_log(exp_name)
    assert 'Resuming training from epoch' in log and 'l_up_in:' in log and 'l_up_cons:' in log
    assert torch.load(experiment(exp_name, 'models', 'net_g_6.pth'), weights_only=True)['params']

    bad = dict(opt, name=f'{exp_name}_bad')
    bad['train'] = dict(opt['train'], upcycle={'zoom_in': {'prob': -0.1}})
    result = train(write_options(str(tmp_path), bad))
    assert result.returncode == 2 and 'error: train.upcycle.zoom_in.prob: -0.1 is not a probability' in result.stderr
    assert 'Traceback' not in result.stderr
    assert not os.path.exists(experiment(f'{exp_name}_bad'))
