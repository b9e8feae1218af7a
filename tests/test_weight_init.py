"""``init_weights`` in a network section (kd_plugin.archs.build): statistics, where it applies in
BasicSR's pipeline, and the errors a user sees."""
import math
import os
from os import path as osp

import pytest
import torch
import torch.nn.functional as F

from kd_plugin.archs.build import build_network
from kd_plugin.model_loading import load_model, parse_model
from tests.helpers import ROOT, experiment, sr_options, train, train_in_process, train_log, write_options

SRVGG = {'type': 'SRVGGNetCompact', 'num_feat': 64, 'num_conv': 16, 'upscale': 4}
SRVGG_INIT = [{'a': 0.25}, {'modules': ['body.34'], 'a': 0.25, 'scale': 0.1}]


def test_kaiming_statistics_per_entry_and_named_modules_scaled():
    torch.manual_seed(0)
    init = [{'a': 0.25}, {'modules': ['body.6'], 'a': 0.25, 'scale': 0.1}, {'modules': 'body.0', 'bias_fill': 0.5}]
    net = build_network({**SRVGG, 'num_conv': 2, 'init_weights': init})
    gain = math.sqrt(2 / (1 + 0.25 ** 2))  # kaiming, leaky_relu with slope a = PReLU's initial 0.25
    middle, last = net.body[2], net.body[6]
    assert middle.weight.std().item() == pytest.approx(gain / math.sqrt(64 * 9), rel=0.03)
    assert last.weight.std().item() == pytest.approx(0.1 * gain / math.sqrt(64 * 9), rel=0.03)
    assert torch.all(middle.bias == 0) and torch.all(last.bias == 0)
    assert torch.all(net.body[0].bias == 0.5)  # the later entry wins for its modules
    assert net.body[1].weight.eq(0.25).all()  # PReLU slopes are not conv weights: untouched


def test_default_init_starves_srvggnetcompact_and_init_weights_feeds_its_first_layer():
    """Why the option exists: with PyTorch's default init, the first conv of SRVGGNetCompact gets
    gradients ~1e-10 (it never trains on a short schedule); with kaiming init ~1e-4."""
    x, y = torch.rand(2, 3, 24, 24), torch.rand(2, 3, 96, 96)
    grads = {}
    for label, spec in (('default', SRVGG), ('init', {**SRVGG, 'init_weights': SRVGG_INIT})):
        torch.manual_seed(0)
        net = build_network(spec)
        F.l1_loss(net(x), y).backward()
        grads[label] = net.body[0].weight.grad.abs().mean().item()
    assert grads['default'] < 1e-8
    assert grads['init'] > 1e-5


def test_pipeline_initialises_before_training_and_a_pretrained_checkpoint_replaces_it(tiny_pairs, exp_name, tmp_path):
    init = [{'scale': 0.0, 'bias_fill': 0.25}]  # recognisable: every conv weight 0, every bias 0.25
    opt = sr_options(exp_name, tiny_pairs, total_iter=2)
    opt['network_g']['init_weights'] = init
    opt['train']['optim_g']['lr'] = 0.0  # weights stay as initialised, so the saved model shows the init
    first = train(write_options(str(tmp_path), opt))
    assert first.returncode == 0, first.stderr[-3000:]
    assert 'Network [EDSR] re-initialised' in train_log(exp_name)
    saved = torch.load(experiment(exp_name, 'models', 'net_g_2.pth'), weights_only=True)['params']
    assert saved['conv_first.weight'].abs().max() == 0 and torch.all(saved['conv_first.bias'] == 0.25)

    # the benchmark loads the options file (init key and all) with its checkpoint
    spec = parse_model(f'{write_options(str(tmp_path), opt)}@{experiment(exp_name, "models", "net_g_2.pth")}', ROOT)
    assert torch.equal(load_model(spec).conv_first.bias, saved['conv_first.bias'])

    # a pretrained checkpoint is loaded after the initialisation and wins
    pretrained = {k: torch.full_like(v, 0.01) for k, v in saved.items()}
    torch.save({'params': pretrained}, tmp_path / 'pre.pth')
    second = dict(opt, name=f'{exp_name}_pre')
    second['path'] = dict(opt['path'], pretrain_network_g=str(tmp_path / 'pre.pth'))
    done = train(write_options(str(tmp_path), second))
    assert done.returncode == 0, done.stderr[-3000:]
    again = torch.load(experiment(f'{exp_name}_pre', 'models', 'net_g_2.pth'), weights_only=True)['params']
    assert all(torch.equal(again[k], pretrained[k]) for k in pretrained)


@pytest.mark.parametrize('init, message', [
    ({'scale': 1.0, 'gain': 2}, 'network_g.init_weights.gain: unknown key; known keys: modules, scale, bias_fill'),
    ([{'a': 0.25}, {'mode': 'fan_avg'}], "network_g.init_weights[1].mode: 'fan_avg'. Fix: use fan_in or fan_out"),
    ({'modules': ['conv_frist']}, "network_g.init_weights.modules: EDSR has no layer 'conv_frist'. Closest valid "
                                  'names: conv_first'),
])
def test_bad_init_weights_stops_before_anything_is_written(tiny_pairs, exp_name, tmp_path, init, message):
    opt = sr_options(exp_name, tiny_pairs)
    opt['network_g']['init_weights'] = init
    status, stderr = train_in_process(write_options(str(tmp_path), opt))
    assert status == 2 and message in stderr and 'Traceback' not in stderr
    assert not osp.exists(experiment(exp_name))
    assert not [d for d in os.listdir(osp.join(ROOT, 'experiments')) if d.startswith(exp_name)]


def test_options_file_of_srvggnetcompact_carries_the_initialisation():
    import yaml

    with open(osp.join(ROOT, 'options/train/SRVGGNetCompact/train_SRVGGNetCompact_T91_x4.yml')) as f:
        net = yaml.safe_load(f)['network_g']
    torch.manual_seed(0)
    built = build_network(net)
    last = built.body[-1]  # the entry names body.34: it must be the last conv, the one that feeds PixelShuffle
    assert built.body[34] is last and last.out_channels == 3 * 4 ** 2
    assert last.weight.std().item() == pytest.approx(0.1 * built.body[2].weight.std().item(), rel=0.05)
