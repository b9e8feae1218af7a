"""KDModel in-process: gradient flow, frozen teacher, hooks, errors that name the option."""
import copy

import pytest
import torch
from basicsr.models import build_model

from tests.kd_fixtures import all_losses, kd_model_options, save_teacher


@pytest.fixture(scope='module')
def teacher_path(tmp_path_factory):
    return save_teacher(str(tmp_path_factory.mktemp('teacher')))


def make_model(teacher_path, tmp_path, losses, **top):
    torch.manual_seed(0)
    model = build_model(kd_model_options(teacher_path, losses, str(tmp_path), **top))
    torch.manual_seed(1)
    model.feed_data({'lq': torch.rand(2, 3, 16, 16), 'gt': torch.rand(2, 3, 32, 32)})
    return model


def params(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


@pytest.mark.parametrize('term', ['distill_opt', 'feature_opt', 'forward_opt'])
def test_each_term_alone_trains_the_student_and_never_the_teacher(teacher_path, tmp_path, term):
    model = make_model(teacher_path, tmp_path, {term: all_losses()[term]})
    teacher_before, student_before = params(model.net_t), params(model.net_g)
    model.optimize_parameters(1)
    assert list(model.log_dict) == [{'distill_opt': 'l_dist', 'feature_opt': 'l_feat', 'forward_opt': 'l_fwd'}[term]]
    for name, p in model.net_t.named_parameters():
        assert p.grad is None and not p.requires_grad and torch.equal(p, teacher_before[name]), name
    grads = [p.grad.abs().sum().item() for p in model.net_g.parameters() if p.grad is not None]
    assert grads and sum(grads) > 0
    changed = [n for n, p in model.net_g.named_parameters() if not torch.equal(p, student_before[n])]
    assert changed, f'{term} did not change the student'
    if term == 'forward_opt':
        assert 'trunk.0.0.conv1.weight' in changed  # gradients flow back through the teacher's tail
    assert not model.net_t.training


def test_adapters_are_trained_by_their_own_optimizer_once_per_step(teacher_path, tmp_path):
    opt = kd_model_options(teacher_path, all_losses(), str(tmp_path))
    opt['train']['optim_adapters'] = {'type': 'Adam', 'lr': 0.5}  # optim_g: Adam at 1e-2
    torch.manual_seed(0)
    model = build_model(opt)
    model.feed_data({'lq': torch.rand(2, 3, 16, 16), 'gt': torch.rand(2, 3, 32, 32)})
    feature_adapters, forward_adapter = model.net_adapters['features'], model.net_adapters['forward_adaptation']
    assert feature_adapters[0].conv is None  # coeffs.grid shapes agree
    assert feature_adapters[1].conv.in_channels == 6 and feature_adapters[1].conv.out_channels == 12
    assert forward_adapter.conv is not None
    before = params(model.net_adapters)
    model.optimize_parameters(1)
    for name, p in model.net_adapters.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
        # exactly one Adam step at the adapter learning rate (the first: lr * g / (|g| + eps)), not also
        # one of optim_g's
        torch.testing.assert_close(p.detach(), before[name] - 0.5 * p.grad / (p.grad.abs() + 1e-8), rtol=0,
                                   atol=1e-6)
    assert {id(p) for g in model.optimizer_g.param_groups for p in g['params']}.isdisjoint(
        id(p) for p in model.net_adapters.parameters())


def test_forward_adaptation_runs_the_teacher_head_once_and_matches_a_full_rerun(teacher_path, tmp_path):
    model = make_model(teacher_path, tmp_path, {'forward_opt': all_losses()['forward_opt']})
    counts = {}
    for name in ('head', 'trunk.0.0.conv1', 'trunk.1.0.conv1', 'trunk_tail', 'coeffs.splat.0'):
        layer = dict(model.net_t.named_modules())[name]
        layer.register_forward_hook(lambda m, a, o, name=name: counts.__setitem__(name, counts.get(name, 0) + 1))
    # the reference: the whole teacher rerun with trunk.1's output replaced by the adapted student feature
    with torch.no_grad():
        target = model.teacher_forward(model.lq)
    feat = model.net_g.trunk[1](model.net_g.trunk[0](model.net_g.head(model.lq)))
    adapter = model.net_adapters['forward_adaptation']
    handle = model.net_t.trunk[1].register_forward_hook(lambda m, a, out: adapter(feat, out.shape[-2:]))
    expected = model.cri_fwd(model.teacher_forward(model.lq), target).item()
    handle.remove()
    counts.clear()

    model.optimize_parameters(1)
    assert model.log_dict['l_fwd'] == pytest.approx(expected, rel=1e-5)
    # inside the reused head nothing runs twice; trunk.1 onwards runs in both passes
    assert counts['trunk.0.0.conv1'] == 1
    assert counts['trunk.1.0.conv1'] == 1  # the replaced layer's inside does not run again either
    assert counts['trunk_tail'] == 2 and counts['coeffs.splat.0'] == 2


def test_forward_adaptation_with_an_identity_adapter_survives_inplace_ops_in_the_teacher(tmp_path):
    """MSRResNet's conv_first is followed by LeakyReLU(inplace=True): the tail must not modify the
    student's own feature, which autograd still needs."""
    arch = {'type': 'MSRResNet', 'num_feat': 8, 'num_block': 1, 'upscale': 2}
    path = save_teacher(str(tmp_path), arch)
    losses = {'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0},
              'forward_opt': {'type': 'ForwardAdaptationLoss', 'student': 'conv_first', 'teacher': 'conv_first'},
              'feature_opt': {'type': 'FeatureMatchingLoss', 'pairs': [{'student': 'conv_first',
                                                                         'teacher': 'conv_first'}]}}
    model = make_model(path, tmp_path, losses, network_g=dict(arch), network_t=dict(arch))
    assert model.net_adapters['forward_adaptation'].conv is None
    assert model.student_recorder.clone == {'conv_first'} and model.teacher_recorder.clone == {'conv_first'}
    before = params(model.net_g)
    model.optimize_parameters(1)  # raised "modified by an inplace operation" before
    assert all(torch.isfinite(torch.tensor(v)) for v in model.log_dict.values())
    assert not torch.equal(model.net_g.conv_first.weight, before['conv_first.weight'])


def test_hooks_record_one_step_and_release_it(teacher_path, tmp_path):
    model = make_model(teacher_path, tmp_path, all_losses())
    model.optimize_parameters(1)
    assert model.student_recorder.outputs == {} and model.teacher_recorder.outputs == {}
    with torch.no_grad():
        model.net_g(torch.rand(1, 3, 8, 8))  # validation-style forward: not recorded
    assert model.student_recorder.outputs == {}


def test_loss_decreases_over_steps(teacher_path, tmp_path):
    model = make_model(teacher_path, tmp_path, {'distill_opt': all_losses()['distill_opt']})
    for group in model.optimizer_g.param_groups:
        group['lr'] = 3e-3
    first = None
    for it in range(1, 31):
        model.optimize_parameters(it)
        first = first if first is not None else model.log_dict['l_dist']
    assert model.log_dict['l_dist'] < 0.7 * first


@pytest.mark.parametrize('mutate,needle', [
    (lambda o: o['train']['feature_opt']['pairs'][1].update(student='trunk.l'),
     r"train.feature_opt.pairs\[1\].student: DeformableHDRNet has no layer 'trunk.l'. Closest valid names: trunk.1"),
    (lambda o: o['train']['forward_opt'].update(teacher='coefs.grid'),
     r"train.forward_opt.teacher: HDRNet has no layer 'coefs.grid'. Closest valid names: coeffs.grid"),
    (lambda o: o['network_g'].update(upscale=3), r'network_g: the student upscales x3, but scale: 2'),
    (lambda o: o['path'].update(pretrain_network_t='/nowhere/t.pth'), r"path.pretrain_network_t: '/nowhere/t.pth' "
                                                                      'does not exist'),
    (lambda o: o['train'].update(forward_opt={'type': 'ForwardAdaptationLoss', 'student': 'coeffs.grid',
                                              'teacher': 'trunk.1'}),
     r'train.forward_opt \(coeffs.grid -> trunk.1\): student feature \[1, 27, 8, 8, 8\] and teacher '
     r'feature \[1, 12, 32, 32\]'),
    (lambda o: [o['train'].pop(k) for k in list(o['train']) if k.endswith('_opt') and k != 'optim_g'],
     'KDModel: no loss configured'),
])
def test_bad_kd_options_name_the_option(teacher_path, tmp_path, mutate, needle):
    from kd_plugin.preflight import check_kd_model as check_kd_options

    opt = kd_model_options(teacher_path, all_losses(), str(tmp_path))
    mutate(opt)
    with pytest.raises(ValueError, match=needle):
        check_kd_options(copy.deepcopy(opt))  # the pre-run check
    with pytest.raises(ValueError, match=needle):
        build_model(opt)  # and the model itself


def test_teacher_checkpoint_of_another_arch_names_the_keys(tmp_path):
    other = save_teacher(str(tmp_path), {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8,
                                         'num_block': 1, 'upscale': 2})
    from kd_plugin.preflight import check_kd_model as check_kd_options

    with pytest.raises(ValueError, match=r"does not fit network_t \(HDRNet\): missing keys \['head.weight'"):
        check_kd_options(kd_model_options(other, all_losses(), str(tmp_path)))


def test_bf16_channels_last_teacher_path_runs_the_teacher_fast_and_trains(teacher_path, tmp_path):
    fast_opt = kd_model_options(teacher_path, all_losses(), str(tmp_path))
    fast_opt['train']['teacher'] = {'autocast': 'bf16', 'channels_last': True}
    torch.manual_seed(0)
    fast = build_model(fast_opt)
    ref = make_model(teacher_path, tmp_path, all_losses())
    assert fast.kd.teacher.dtype is torch.bfloat16 and fast.kd.teacher.channels_last
    assert fast.net_t.head.weight.is_contiguous(memory_format=torch.channels_last)
    lq = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        out_fast, out_ref = fast.teacher_forward(lq), ref.teacher_forward(lq)
    err = (out_fast.float() - out_ref).abs().max().item()
    assert 0 < err < 0.05  # bf16 has 8 bits of mantissa: different, but close to the fp32 teacher

    fast.feed_data({'lq': lq, 'gt': torch.rand(2, 3, 32, 32)})
    student_before = params(fast.net_g)
    fast.optimize_parameters(1)
    assert all(torch.isfinite(torch.tensor(v)) for v in fast.log_dict.values())
    assert any(not torch.equal(p, student_before[n]) for n, p in fast.net_g.named_parameters())
    assert all(p.dtype is torch.float32 for p in fast.net_g.parameters())


def test_auto_autocast_is_bf16_only_where_the_hardware_computes_it(teacher_path, tmp_path, monkeypatch):
    """bf16 autocast on a CPU without AVX-512 BF16 or AMX is emulated (the EDSR 64x16 teacher ran at 0.14x its
    fp32 speed on an AVX2 CPU), so ``auto`` takes bf16 only where the hardware has it."""
    from kd_plugin.models import kd_config, kd_model

    cpu, cuda = torch.device('cpu'), torch.device('cuda')
    for avx512_bf16, amx, native in ((True, False, True), (False, True, True), (False, False, False)):
        monkeypatch.setattr(torch.cpu, '_is_avx512_bf16_supported', lambda v=avx512_bf16: v, raising=False)
        monkeypatch.setattr(torch.cpu, '_is_amx_tile_supported', lambda v=amx: v, raising=False)
        assert kd_config.native_bf16(cpu) is native
        assert kd_config.teacher_dtype({'autocast': 'auto'}, cpu) is (torch.bfloat16 if native else None)
        assert kd_config.teacher_dtype({'autocast': 'bf16'}, cpu) is torch.bfloat16  # asked for: kept, with a warning
    # torch's own rule on a V100 or T4: bf16 only emulated, which is_bf16_supported() counts unless told not to
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda including_emulation=True: including_emulation)
    assert kd_config.teacher_dtype({'autocast': 'auto'}, cuda) is torch.float16
    assert not kd_config.native_bf16(cuda)
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda including_emulation=True: True)  # A100, H100
    assert kd_config.teacher_dtype({'autocast': 'auto'}, cuda) is torch.bfloat16
    with pytest.raises(ValueError, match=r"train.teacher.autocast: 'int8' is not one of auto, bf16, fp16 or fp32"):
        kd_config.teacher_dtype({'autocast': 'int8'}, cpu)

    lines = []

    class Logger:
        def info(self, msg):
            lines.append(('info', msg))

        def warning(self, msg):
            lines.append(('warning', msg))

    monkeypatch.setattr(kd_model, 'get_root_logger', lambda: Logger())
    opt = kd_model_options(teacher_path, all_losses(), str(tmp_path))
    opt['train']['teacher'] = {'autocast': 'auto', 'channels_last': True}
    model = kd_model.KDModel(opt)  # the probes above left the CPU without native bf16
    assert model.kd.teacher.dtype is None
    assert ('info', 'Teacher forward in fp32 (train.teacher.autocast: auto) on cpu.') in lines
    assert not [msg for level, msg in lines if level == 'warning']
    lines.clear()
    kd_model.log_teacher_precision({'autocast': 'bf16'}, torch.bfloat16, cpu)
    assert lines[1][0] == 'warning' and 'Fix: autocast: auto' in lines[1][1]


def test_window_teacher_is_padded_to_its_window_and_cropped_back(tmp_path):
    """A SwinIR teacher only takes multiples of window_size; validation images are any size."""
    swin = {'type': 'SwinIR', 'upscale': 2, 'img_size': 16, 'window_size': 4, 'embed_dim': 12, 'depths': [1],
            'num_heads': [2], 'mlp_ratio': 1, 'upsampler': 'pixelshuffledirect', 'img_range': 1.0}
    path = save_teacher(str(tmp_path), swin)
    opt = kd_model_options(path, {'distill_opt': all_losses()['distill_opt']}, str(tmp_path), network_t=swin)
    model = build_model(opt)
    assert model.kd.teacher.pad_to == 4
    lq = torch.rand(1, 3, 10, 14)
    with torch.no_grad():
        out = model.teacher_forward(lq)
        padded = model.net_t(torch.nn.functional.pad(lq, (0, 2, 0, 2), mode='reflect'))
    assert out.shape == (1, 3, 20, 28)
    assert torch.equal(out, padded[..., :20, :28])
    with pytest.raises(RuntimeError):
        model.net_t(lq)  # what the padding avoids


def test_a_resumed_state_wins_over_pretrain_network_adapters(teacher_path, tmp_path):
    """With ``path.pretrain_network_adapters`` set, a resumed run restarted its adapters from that file while
    keeping the resumed student, optimizer moments and iteration count; the resumed adapters must win."""
    losses = {'feature_opt': all_losses()['feature_opt']}
    (tmp_path / 'training_states').mkdir()
    first = make_model(teacher_path, tmp_path, losses, path={'pretrain_network_t': teacher_path, 'resume_state': None,
                                                             'models': str(tmp_path),
                                                             'training_states': str(tmp_path / 'training_states')})
    initial = tmp_path / 'initial_adapters.pth'
    torch.save({'params': first.net_adapters.state_dict()}, initial)
    for it in range(1, 4):
        first.optimize_parameters(it)
    first.save(0, 3)  # models/net_adapters_3.pth (and net_g_3.pth), as a run writes them
    trained = params(first.net_adapters)
    assert any(not torch.equal(p, torch.load(initial)['params'][n]) for n, p in trained.items())

    path = {'pretrain_network_t': teacher_path, 'models': str(tmp_path), 'pretrain_network_adapters': str(initial)}
    fresh = make_model(teacher_path, tmp_path, losses, path=dict(path, resume_state=None))
    for name, p in fresh.net_adapters.named_parameters():  # a new run starts from the pretrain file
        assert torch.equal(p, torch.load(initial)['params'][name]), name
    resumed = make_model(teacher_path, tmp_path, losses,
                         path=dict(path, resume_state=str(tmp_path / 'training_states' / '3.state')))
    for name, p in resumed.net_adapters.named_parameters():
        assert torch.equal(p, trained[name]), name
