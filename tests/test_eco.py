"""ECO (``train.eco``): alpha, the mixed target and input equal their formulas, in KDModel's step too."""
import pytest
import torch
from basicsr.models import build_model

from kd_plugin.data.matlab_bicubic import downscale_tensor
from kd_plugin.distill.eco import EcoConfig, eco_input, eco_target, parse_eco
from tests.helpers import fails_cleanly
from tests.kd_fixtures import kd_model_options, kd_options


def test_alpha_rises_linearly_to_one_at_end_ratio_of_training():
    eco = EcoConfig(end_ratio=0.75, mode='hr_only')
    # end_iter = 0.75 * 400 = 300
    assert [eco.alpha(i, 400) for i in (0, 75, 150, 299, 300, 400)] == [0.0, 0.25, 0.5, 299 / 300, 1.0, 1.0]
    assert EcoConfig(1.0, 'full').alpha(50, 200) == 0.25


def test_the_target_and_the_input_are_the_lerps_of_the_definition():
    torch.manual_seed(0)
    teacher = torch.randint(0, 256, (2, 3, 16, 16)).float() / 255  # an 8-bit label
    gt, lq = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 4, 4)
    assert torch.allclose(eco_target(teacher, gt, 0.3), 0.7 * teacher + 0.3 * gt, atol=1e-6)
    assert torch.equal(eco_target(teacher, gt, 0.0), teacher) and torch.equal(eco_target(teacher, gt, 1.0), gt)
    down = downscale_tensor(teacher, 4)  # MATLAB bicubic 1/4, both passes rounded to 8 bits
    assert torch.allclose(eco_input(teacher, lq, 4, 0.25), 0.75 * down + 0.25 * lq, atol=1e-6)
    assert torch.equal(eco_input(teacher, lq, 4, 0.0), down)  # the empirical centroid: (down(T), T)
    assert torch.equal(eco_input(teacher, lq, 4, 1.0), lq)
    live = teacher + 0.3 / 255  # a live teacher's float output is rounded to 8 bits before the downscale
    assert torch.equal(eco_input(live, lq, 4, 0.0), down)


@pytest.mark.parametrize('section, needle', [
    ({'end_ratio': 0}, 'train.eco.end_ratio: 0. Fix: the share of training'),
    ({'end_ratio': 1.5}, 'train.eco.end_ratio: 1.5'),
    ({'mode': 'input_only'}, "train.eco.mode: 'input_only'. Fix: hr_only"),
    ({'end_ratios': 0.5}, 'train.eco.end_ratios: unknown key; did you mean `end_ratio`'),
])
def test_bad_eco_options_are_refused(section, needle):
    with pytest.raises(ValueError, match=needle.replace('(', r'\(').replace('.', r'\.')):
        parse_eco(section, True)
    with pytest.raises(ValueError, match='and the run has no train.pixel_opt'):
        parse_eco({'end_ratio': 0.5}, False)
    assert parse_eco(None, False) is None
    assert parse_eco({}, True) == EcoConfig(0.75, 'hr_only')


def _eco_model(teacher, tmp_path, mode, total_iter=100):
    losses = {'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0}}
    opt = kd_model_options(teacher, losses, str(tmp_path))
    opt['train'].update(eco={'end_ratio': 0.5, 'mode': mode}, total_iter=total_iter)
    return build_model(opt)


@pytest.mark.parametrize('mode', ['hr_only', 'full'])
def test_an_eco_step_trains_on_the_mixed_target_and_input(teacher, tmp_path, mode):
    """Iteration 20 of 100 with end_ratio 0.5: alpha = 0.4. The step's pixel loss is L1(S(x'), 0.6 T + 0.4 y),
    with x' = x (hr_only) or 0.6 down(T) + 0.4 x (full); it logs eco_alpha."""
    model = _eco_model(teacher, tmp_path, mode)
    torch.manual_seed(1)
    lq, gt = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 16, 16)
    label = torch.randint(0, 256, (2, 3, 16, 16)).float() / 255
    inputs, calls = [], []
    model.net_g.register_forward_hook(lambda module, args, out: inputs.append(args[0].clone()))
    model.net_t.register_forward_hook(lambda *a: calls.append(1))
    student_in = lq if mode == 'hr_only' else 0.6 * downscale_tensor(label, 2) + 0.4 * lq
    with torch.no_grad():
        expected = (model.net_g(student_in) - (0.6 * label + 0.4 * gt)).abs().mean().item()
    inputs.clear()
    model.feed_data({'lq': lq, 'gt': gt, 'teacher': label})
    model.optimize_parameters(20)
    assert model.log_dict['eco_alpha'] == pytest.approx(0.4)
    assert model.log_dict['l_pix'] == pytest.approx(expected, rel=1e-5)
    assert torch.allclose(inputs[0], student_in, atol=1e-6) and calls == []  # cached label: no teacher pass


def test_without_labels_the_teacher_runs_until_alpha_reaches_one(teacher, tmp_path):
    model = _eco_model(teacher, tmp_path, 'hr_only')
    calls = []
    model.net_t.register_forward_hook(lambda *a: calls.append(1))
    lq, gt = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 16, 16)
    model.feed_data({'lq': lq, 'gt': gt})
    model.optimize_parameters(49)  # alpha 0.98: the teacher's output is still in the target
    assert len(calls) == 1
    with torch.no_grad():
        expected = (model.net_g(lq) - gt).abs().mean().item()
    model.optimize_parameters(50)  # alpha 1: the ground truth alone, and no teacher pass
    assert len(calls) == 1 and model.log_dict['eco_alpha'] == 1.0
    assert model.log_dict['l_pix'] == pytest.approx(expected, rel=1e-5)


def test_a_bad_eco_section_stops_the_run_before_anything_is_written(tiny_pairs, teacher, exp_name, tmp_path):
    opt = kd_options(exp_name, tiny_pairs, teacher)
    opt['train']['eco'] = {'end_ratio': 2}
    fails_cleanly(opt, tmp_path, 'train.eco.end_ratio: 2', 'a number in (0, 1]')


@pytest.mark.parametrize('terms', [('feature_opt',), ('forward_opt',), ('feature_opt', 'forward_opt')])
def test_eco_full_beside_feature_or_forward_terms_is_refused_before_training(tiny_pairs, teacher, exp_name, tmp_path,
                                                                             terms):
    """In mode full the student's input is mixed and the teacher's is x: their features would be of two images."""
    opt = kd_options(exp_name, tiny_pairs, teacher)  # pixel, output, feature and forward terms
    for key in {'feature_opt', 'forward_opt'} - set(terms):
        opt['train'].pop(key)
    opt['train']['eco'] = {'end_ratio': 0.5, 'mode': 'full'}
    fails_cleanly(opt, tmp_path, f'train.eco.mode full with train.{" and train.".join(terms)}',
                  'two different images', 'Fix: mode: hr_only')
    opt['train']['eco']['mode'] = 'hr_only'  # the input stays x: accepted
    from kd_plugin.models.kd_config import KDConfig

    assert KDConfig.from_options(opt).eco == EcoConfig(0.5, 'hr_only')
