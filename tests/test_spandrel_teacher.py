"""SpandrelNet: checkpoints that spandrel recognises, as KD teachers, benchmark models and label makers.

No download: spandrel's own arch classes with random weights, saved as ``.safetensors`` and ``.pth``."""
import logging
from contextlib import contextmanager
from os import path as osp

import pytest
import safetensors.torch
import torch
import yaml
from basicsr.models import build_model
from spandrel import MaskedImageModelDescriptor, ModelLoader
from spandrel.architectures.Compact import Compact
from spandrel.architectures.LaMa import LaMaArch
from spandrel.architectures.SAFMN import SAFMN
from spandrel.architectures.SPAN import SPAN

from kd_plugin.archs.build import build_network
from kd_plugin.archs.self_loading import load_weights, loads_own_weights, with_checkpoint
from kd_plugin.checkpoint_io import sha256
from kd_plugin.data.label_cache import load_teachers
from kd_plugin.distill.layer_names import resolve_layer
from kd_plugin.model_loading import TOP_LEVEL, ModelSpec, load_model, parse_model
from kd_plugin.models.kd_config import KDConfig
from kd_plugin.preflight import OptionError, check_kd_model, check_network_init
from tests.helpers import experiment, fails_cleanly, train, train_log, write_options
from tests.kd_fixtures import all_losses, kd_model_options, kd_options


def tame(net: torch.nn.Module, last: torch.nn.Conv2d, factor: float) -> torch.nn.Module:
    """``net`` in eval mode, its random output brought mostly inside [0, 1] (``last``, the conv before the pixel
    shuffle, scaled by ``factor`` around mid-grey), so that the clamp of spandrel's call hides no difference."""
    with torch.no_grad():
        last.weight.mul_(factor)
        last.bias.fill_(0.5)
    return net.eval()


def span(scale: int, seed: int = 0) -> SPAN:
    torch.manual_seed(seed)
    net = SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=scale)
    return tame(net, net.upsampler[0], 0.01)


@pytest.fixture(scope='module')
def files(tmp_path_factory) -> dict[str, tuple[str, torch.nn.Module]]:
    """name -> (checkpoint file, the module it was saved from, in eval mode)."""
    folder = tmp_path_factory.mktemp('spandrel')
    out = {}
    for name, scale in (('span_x2', 2), ('span_x4', 4)):
        net = span(scale)
        path = str(folder / f'{name}.safetensors')
        safetensors.torch.save_file(net.state_dict(), path)  # published files are plain state dicts
        out[name] = path, net
    torch.manual_seed(1)
    grey = Compact(num_in_ch=1, num_out_ch=1, num_feat=8, num_conv=2, upscale=2).eval()
    torch.save({'params': grey.state_dict()}, str(folder / 'compact_grey_x2.pth'))  # BasicSR's layout
    out['compact_grey_x2'] = str(folder / 'compact_grey_x2.pth'), grey
    torch.manual_seed(2)
    safmn = SAFMN(dim=8, n_blocks=1, upscaling_factor=2)
    safmn = tame(safmn, safmn.to_img[0], 0.2)
    torch.save(safmn.state_dict(), str(folder / 'safmn_x2.pth'))
    out['safmn_x2'] = str(folder / 'safmn_x2.pth'), safmn
    return out


@contextmanager
def basicsr_log():
    """The lines logged to BasicSR's logger meanwhile (whether or not a run configured it)."""
    lines: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger('basicsr')
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.mark.parametrize('name, arch, scale, channels', [('span_x2', 'SPAN', 2, 3),
                                                          ('compact_grey_x2', 'RealESRGAN Compact', 2, 1),
                                                          ('safmn_x2', 'SAFMN', 2, 3)])
def test_each_file_loads_into_the_module_it_was_saved_from(files, name, arch, scale, channels):
    path, original = files[name]
    with basicsr_log() as lines:
        net = build_network({'type': 'SpandrelNet', 'checkpoint': path, 'upscale': scale, 'num_in_ch': channels,
                             'num_out_ch': channels})
    assert [line for line in lines if line.startswith('SpandrelNet:')] == [
        f'SpandrelNet: {path} is a x{scale} {arch} (spandrel 0.4.2, id {net.descriptor.architecture.id}), '
        f'{channels} -> {channels} channels, {sum(p.numel() for p in original.parameters()):,} parameters']
    x = torch.rand(2, channels, 16, 24)
    with torch.no_grad():
        expected = original(x).clamp(0, 1)
        out = net(x)
    assert out.shape == (2, channels, 16 * scale, 24 * scale)
    assert ((expected > 0) & (expected < 1)).float().mean() > 0.5  # mostly not clamped: the comparison means something
    torch.testing.assert_close(out, expected)
    assert (net.architecture, net.scale, net.num_in_ch, net.num_out_ch) == (arch, scale, channels, channels)


def test_inputs_are_padded_to_the_size_requirements_as_spandrel_pads_them(files):
    path, original = files['safmn_x2']  # SAFMN takes multiples of 8
    net = build_network({'type': 'SpandrelNet', 'checkpoint': path})
    x = torch.rand(1, 3, 13, 11)
    with torch.no_grad():
        out, unpadded = net(x), original(x).clamp(0, 1)
    assert out.shape == unpadded.shape == (1, 3, 26, 22)
    torch.testing.assert_close(out, ModelLoader().load_from_file(path)(x))
    assert not torch.allclose(out, unpadded)  # the padding reached the model


def test_outputs_and_features_are_ordinary_tensors_gradients_flow(files):
    """spandrel's own call runs in inference mode, whose tensors an MSE target or forward adaptation cannot use."""
    net = build_network({'type': 'SpandrelNet', 'checkpoint': files['span_x2'][0]})
    x = torch.rand(1, 3, 8, 8, requires_grad=True)
    out = net(x)
    assert not out.is_inference()
    torch.nn.functional.mse_loss(out, torch.rand_like(out)).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize('option, value, needles', [
    ('upscale', 4, ['is a x2 SPAN (detected by spandrel), and upscale is 4',
                    'Fix: use a x4 checkpoint, or upscale: 2']),
    ('num_in_ch', 1, ['is a SPAN taking 3-channel images (detected by spandrel), and num_in_ch is 1']),
    ('num_out_ch', 1, ['is a SPAN giving 3-channel images (detected by spandrel), and num_out_ch is 1'])])
def test_a_scale_or_channel_count_that_disagrees_is_refused_naming_both(files, option, value, needles):
    path = files['span_x2'][0]
    with pytest.raises(ValueError) as err:
        build_network({'type': 'SpandrelNet', 'checkpoint': path, option: value})
    assert str(err.value).startswith(f'SpandrelNet: {path} ')
    for needle in needles:
        assert needle in str(err.value)


def test_an_unrecognised_or_missing_file_is_refused_naming_it(tmp_path):
    path = str(tmp_path / 'mystery.safetensors')
    safetensors.torch.save_file({'head.weight': torch.zeros(4, 3, 3, 3), 'tail.bias': torch.zeros(3)}, path)
    with pytest.raises(ValueError, match=f'does not recognise the architecture of {path} .*Fix: '):
        build_network({'type': 'SpandrelNet', 'checkpoint': path})
    with pytest.raises(ValueError, match="'nowhere.pth' does not exist. Fix: correct the path"):
        build_network({'type': 'SpandrelNet', 'checkpoint': 'nowhere.pth'})
    with pytest.raises(ValueError, match='SpandrelNet: no checkpoint. Fix: set path.pretrain_network_t'):
        build_network({'type': 'SpandrelNet'})


def test_a_model_that_is_not_image_to_image_is_refused(files, monkeypatch):
    """An inpainting model (spandrel's MaskedImageModelDescriptor) takes a mask too; a tiny stand-in for LaMa."""
    conv = torch.nn.Conv2d(3, 3, 3, padding=1)
    masked = MaskedImageModelDescriptor(conv, conv.state_dict(), LaMaArch(), purpose='Inpainting', tags=[],
                                        supports_half=False, supports_bfloat16=False, input_channels=3,
                                        output_channels=3)
    monkeypatch.setattr(ModelLoader, 'load_from_state_dict', lambda self, state_dict: masked)
    path = files['span_x2'][0]
    with pytest.raises(ValueError, match=f'SpandrelNet: {path} is a LaMa Inpainting model, which takes an image and '
                                         'a mask.*Fix: use an image-to-image'):
        build_network({'type': 'SpandrelNet', 'checkpoint': path})


def test_the_wrapped_layers_are_hookable_by_name(files):
    net = build_network({'type': 'SpandrelNet', 'checkpoint': files['span_x2'][0]})
    names = dict(net.named_modules())
    assert names['model'] is net.model and 'model.conv_cat' in names and 'model.block_1.c1_r.eval_conv' in names
    assert resolve_layer(net, 'model.conv_cat', 'train.feature_opt.pairs[0].teacher') is net.model.conv_cat
    assert all(key.startswith('model.') for key in net.state_dict())


def test_param_key_picks_the_checkpoint_entry_like_every_teacher(files, tmp_path):
    """``params_ema`` by default (BasicSR's rule, spandrel's too), ``params`` when asked (path.param_key_t)."""
    _, ema = files['compact_grey_x2']
    torch.manual_seed(5)
    plain = Compact(num_in_ch=1, num_out_ch=1, num_feat=8, num_conv=2, upscale=2).eval()
    path = str(tmp_path / 'two_entries.pth')
    torch.save({'params': plain.state_dict(), 'params_ema': ema.state_dict()}, path)
    x = torch.rand(1, 1, 8, 8)
    with torch.no_grad():
        for key, original in ((None, ema), ('params', plain)):
            net = build_network({'type': 'SpandrelNet', 'checkpoint': path, 'param_key': key})
            torch.testing.assert_close(net(x), original(x).clamp(0, 1))


def test_the_helpers_fill_in_the_checkpoint_and_load_nothing_into_a_self_loading_net(files):
    path = files['span_x2'][0]
    assert loads_own_weights({'type': 'SpandrelNet'}) and not loads_own_weights({'type': 'EDSR'})
    assert not loads_own_weights({'type': 'NoSuchArch'})
    assert with_checkpoint({'type': 'SpandrelNet'}, path, 'network_t', 'path.pretrain_network_t', param_key='params',
                           scale=2) == {'type': 'SpandrelNet', 'checkpoint': path, 'param_key': 'params', 'upscale': 2}
    assert with_checkpoint({'type': 'SpandrelNet', 'upscale': 4}, path, 'network_t', 'x', scale=2)['upscale'] == 4
    edsr = {'type': 'EDSR', 'upscale': 2}
    assert with_checkpoint(edsr, path, 'network_g', 'path.pretrain_network_g', scale=2) == edsr
    with pytest.raises(ValueError, match="network_t.checkpoint: 'other.pth', and path.pretrain_network_t is .*Fix: "
                                         'remove network_t.checkpoint'):
        with_checkpoint({'type': 'SpandrelNet', 'checkpoint': 'other.pth'}, path, 'network_t',
                        'path.pretrain_network_t')
    net = build_network({'type': 'SpandrelNet', 'checkpoint': path})
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert load_weights(net, {'garbage': torch.zeros(1)}, strict=True) is False
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_benchmark_specs_and_label_teachers_load_through_load_model(files, tmp_path):
    path, original = files['span_x2']
    opts = str(tmp_path / 'span.yml')
    with open(opts, 'w') as f:
        yaml.safe_dump({'name': 'span', 'network_g': {'type': 'SpandrelNet'}}, f)  # no scale: detected
    spec = parse_model(f'SPAN={opts}@{path}')
    net = load_model(spec)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(net(x), original(x).clamp(0, 1))
    assert (spec.upscale, spec.loaded_key, spec.notes) == (2, TOP_LEVEL, [f'weights: {TOP_LEVEL}'])
    with pytest.raises(ValueError, match='is a x4 SPAN .*upscale is 2'):  # the spec's scale is checked
        load_model(ModelSpec('SPAN', {'type': 'SpandrelNet'}, files['span_x4'][0], scale=2))

    # prepare teacher-labels builds the KD file's teacher through load_model as well
    opt = kd_model_options(path, {'distill_opt': all_losses()['distill_opt']}, str(tmp_path),
                           network_t={'type': 'SpandrelNet'})
    (teacher,), precision = load_teachers(opt, None, torch.device('cpu'), fp32=True)
    assert (teacher.checkpoint, teacher.param_key, precision) == (path, TOP_LEVEL, 'fp32')
    torch.testing.assert_close(teacher.forward(x), original(x).clamp(0, 1))


def test_kd_config_hashes_a_safetensors_teacher_and_the_pre_run_check_builds_it(files, tmp_path):
    path = files['span_x2'][0]
    opt = kd_model_options(path, {'distill_opt': all_losses()['distill_opt']}, str(tmp_path),
                           network_t={'type': 'SpandrelNet'})
    teacher = KDConfig.from_options(opt).teacher
    assert teacher.sha256 == sha256(path) and teacher.param_key is None  # a plain state dict: the top level
    assert teacher.arch == {'type': 'SpandrelNet', 'checkpoint': path, 'upscale': 2}
    # the pre-run check builds it from that section, and compares no state dict with it (strict_load_t: true)
    assert opt['path'].get('strict_load_t', True) and check_kd_model(opt).teacher.arch == teacher.arch


def test_kd_model_distils_matches_features_and_adapts_forward_through_a_spandrel_teacher(files, tmp_path):
    """In process, one step each of feature matching and forward adaptation on a SPAN layer name."""
    path, original = files['span_x2']
    losses = {'feature_opt': {'type': 'FeatureMatchingLoss', 'loss_weight': 1.0, 'criterion': 'l2',
                              'pairs': [{'student': 'trunk.1', 'teacher': 'model.conv_cat'}]},
              'forward_opt': {'type': 'ForwardAdaptationLoss', 'loss_weight': 1.0, 'student': 'trunk.1',
                              'teacher': 'model.conv_cat'},
              'distill_opt': {'type': 'OutputDistillLoss', 'loss_weight': 1.0, 'criterion': 'l2'}}
    torch.manual_seed(0)
    model = build_model(kd_model_options(path, losses, str(tmp_path), network_t={'type': 'SpandrelNet'},
                                         path={'pretrain_network_t': path, 'param_key_t': None, 'strict_load_t': True,
                                               'models': str(tmp_path), 'resume_state': None}))
    teacher = {k: v.clone() for k, v in model.net_t.state_dict().items()}
    student = {k: v.clone() for k, v in model.net_g.state_dict().items()}
    model.feed_data({'lq': torch.rand(2, 3, 16, 16), 'gt': torch.rand(2, 3, 32, 32)})
    model.optimize_parameters(1)
    assert set(model.log_dict) == {'l_feat', 'l_fwd', 'l_dist'} and all(v > 0 for v in model.log_dict.values())
    assert all(torch.equal(v, teacher[k]) for k, v in model.net_t.state_dict().items())
    assert not torch.equal(model.net_g.state_dict()['trunk.0.0.conv1.weight'], student['trunk.0.0.conv1.weight'])
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model.teacher_forward(x), original(x).clamp(0, 1))


def kd_run(name: str, data: str, teacher: str) -> dict:
    """A 2-iteration x2 KD run distilling the output of ``network_t: {type: SpandrelNet}`` (the file:
    ``path.pretrain_network_t``) into the tiny student."""
    opt = kd_options(name, data, teacher, total_iter=2)
    opt['network_t'] = {'type': 'SpandrelNet'}
    for key in ('feature_opt', 'forward_opt'):
        opt['train'].pop(key)
    return opt


def test_a_kd_run_distils_a_safetensors_spandrel_teacher(files, tiny_pairs, exp_name, tmp_path):
    path = files['span_x2'][0]
    result = train(write_options(str(tmp_path), kd_run(exp_name, tiny_pairs, path)))
    assert result.returncode == 0, result.stderr[-3000:]
    log = train_log(exp_name)
    assert f'SpandrelNet: {path} is a x2 SPAN (spandrel 0.4.2, id SPAN), 3 -> 3 channels' in log
    assert f'Loading SpandrelNet model from {path}, with param key: [None].' in log
    assert 'l_dist:' in log and 'Teacher on tiny_val (computed once): psnr:' in log
    student = torch.load(experiment(exp_name, 'models', 'net_g_2.pth'), weights_only=True)['params']
    assert not any(k.startswith('model.') for k in student)  # the student alone is saved


def test_the_pre_run_check_refuses_a_x4_spandrel_teacher_for_a_x2_run(files, tiny_pairs, exp_name, tmp_path):
    opt = kd_run(exp_name, tiny_pairs, files['span_x4'][0])
    fails_cleanly(opt, tmp_path, f'SpandrelNet: {files["span_x4"][0]} is a x4 SPAN (detected by spandrel), and '
                                 'upscale is 2. Fix: use a x2 checkpoint, or upscale: 4 and the options\' scale: 4')


def test_a_spandrel_student_takes_its_file_from_its_section_not_pretrain_network_g(files):
    path = files['span_x2'][0]
    opt = {'network_g': {'type': 'SpandrelNet'}, 'path': {'pretrain_network_g': path}}
    with pytest.raises(OptionError, match=f'path.pretrain_network_g: network_g is SpandrelNet.*Fix: network_g: '
                                          f'{{type: SpandrelNet, checkpoint: {path}}} and no path.pretrain_network_g'):
        check_network_init(opt)
    opt = {'network_t': {'type': 'SpandrelNet', 'init_weights': {'a': 0.2}}, 'path': {}}
    with pytest.raises(OptionError, match='network_t.init_weights: SpandrelNet reads its trained weights'):
        check_network_init(opt)
    check_network_init({'network_g': {'type': 'SpandrelNet', 'checkpoint': path}, 'path': {}})
    assert osp.isfile(path)
