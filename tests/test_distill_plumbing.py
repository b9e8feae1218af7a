"""Capture and substitution on toy models and real BasicSR archs: the recorded feature is the layer's
real output, error paths name the layer, and the forward-adaptation tail reuses the head exactly."""
import pytest
import torch
from basicsr.archs.edsr_arch import EDSR
from basicsr.archs.srresnet_arch import MSRResNet
from torch import nn

from kd_plugin.distill.recorder import FeatureRecorder
from kd_plugin.distill.substitution import TailRunner
from kd_plugin.distill.wiring import probe


class Toy(nn.Module):
    """head -> in-place ReLU on its output -> shared `act` -> mid (replaced) -> tail, with a long skip."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(2, 4, 3, padding=1)
        self.act = nn.LeakyReLU(0.1, inplace=True)  # one module used twice, like MSRResNet's lrelu
        self.pre = nn.Sequential(nn.Conv2d(4, 4, 1))
        self.mid = nn.Conv2d(4, 4, 3, padding=1)
        self.tail = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(4, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.act(self.head(x))       # head's output is modified in place by act
        feat = self.pre(skip)
        res = self.mid(feat)
        res += skip                         # mid's output is modified in place too
        return self.tail(self.act(res))


def counting(model: nn.Module) -> dict[str, int]:
    """Forward-hook calls per layer. A short-circuited module's own hooks still fire (they wrap the
    call), but the layers inside it do not run: count those to see what was computed."""
    counts: dict[str, int] = {}
    for name, module in model.named_modules():
        if name:
            module.register_forward_hook(lambda m, a, o, name=name: counts.__setitem__(name, counts.get(name, 0) + 1))
    return counts


def reference_hook(layer: nn.Module) -> list[torch.Tensor]:
    """Clones of ``layer``'s output taken inside a hook registered after the recorder's."""
    taken = []
    layer.register_forward_hook(lambda m, a, out: taken.append(out.detach().clone()))
    return taken


@pytest.mark.parametrize('make,layer,grad', [
    (lambda: MSRResNet(num_feat=8, num_block=1, upscale=2), 'conv_first', True),      # then lrelu(inplace)
    (lambda: EDSR(3, 3, num_feat=8, num_block=1, upscale=2), 'conv_after_body', False),  # then res += x
])
def test_recorded_feature_is_the_layers_real_output_despite_later_inplace_ops(make, layer, grad):
    torch.manual_seed(0)
    net = make()
    x = torch.rand(2, 3, 12, 12)
    _, _, changed = probe(net, {layer: 'opt'}, x)
    assert changed == {layer}  # the probe sees the in-place change ...
    recorder = FeatureRecorder(net, [layer], 'opt', clone=changed)  # ... and the recorder copies that layer
    taken = reference_hook(dict(net.named_modules())[layer])
    with torch.set_grad_enabled(grad), recorder.recording():
        net(x)
    torch.testing.assert_close(recorder.get(layer), taken[-1], rtol=0, atol=0)
    if grad:  # the copy is differentiable: gradients reach the layer
        recorder.get(layer).sum().backward()
        assert net.conv_first.weight.grad.abs().sum() > 0

    plain = FeatureRecorder(net, [layer], 'opt')  # without the copy, the tensor changed after the hook ...
    with torch.no_grad(), plain.recording():
        net(x)
    with pytest.raises(RuntimeError, match=rf"layer '{layer}': its output was modified in place after the layer ran"):
        plain.get(layer)  # ... and the recorder refuses to hand it out as the layer's output


def test_recorder_error_paths_name_the_layer():
    net = Toy()
    recorder = FeatureRecorder(net, ['act', 'pre', 'tail'], 'opt')
    x = torch.rand(1, 2, 5, 5)
    with torch.no_grad():
        with recorder.recording():
            net(x)
        expected = net.pre(torch.nn.functional.leaky_relu(net.head(x), 0.1))
    with pytest.raises(RuntimeError, match=r"layer 'act' ran 2 times in one forward pass"):
        recorder.get('act')
    torch.testing.assert_close(recorder.get('pre'), expected)
    recorder.clear()
    with pytest.raises(RuntimeError, match=r"layer 'tail' ran 0 times"):
        recorder.get('tail')
    with pytest.raises(ValueError, match=r"opt: Toy has no layer 'tial'. Closest valid names: tail"):
        FeatureRecorder(net, ['tial'], 'opt')

    class Pair(nn.Module):
        def forward(self, x):
            return x, x

    wrapper = nn.Sequential()
    wrapper.add_module('pair', Pair())
    recorder = FeatureRecorder(wrapper, ['pair'], 'opt')
    with recorder.recording():
        wrapper(torch.rand(1))
    with pytest.raises(TypeError, match=r"layer 'pair' returns tuple, not a tensor"):
        recorder.get('pair')


def test_tail_runner_equals_a_full_pass_with_the_layer_replaced_and_reuses_the_head():
    torch.manual_seed(0)
    net = Toy().eval().requires_grad_(False)
    x = torch.rand(2, 2, 6, 7)
    substitute = torch.rand(2, 4, 6, 7, requires_grad=True)

    # reference: the whole network rerun with mid's output replaced
    handle = net.mid.register_forward_hook(lambda m, a, out: substitute.clone())
    expected = net(x)
    handle.remove()

    counts = counting(net)
    runner = TailRunner(net, 'mid', 'opt')
    with torch.no_grad(), runner.recording():
        net(x)
    reused = [module for module, _ in runner.cache]
    assert net.pre in reused and net.pre[0] in reused
    assert net.head not in reused  # its output was changed in place by act: recomputed
    assert net.act not in reused   # shared: runs again
    counts.clear()
    out = runner.run(lambda: net(x), lambda feat: substitute.expand_as(feat))
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    assert counts.get('pre.0', 0) == 0  # inside the reused module: not run again
    assert counts['head'] == 1 and counts['tail.0'] == 1 and counts['act'] == 2
    out.sum().backward()
    assert substitute.grad is not None and substitute.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())
    assert 'forward' not in net.pre.__dict__ and 'forward' not in net.mid.__dict__  # patches undone


def test_tail_runner_needs_a_layer_that_ran_once():
    net = Toy().eval()
    runner = TailRunner(net, 'act', 'opt')
    with torch.no_grad(), runner.recording():
        net(torch.rand(1, 2, 4, 4))
    with pytest.raises(RuntimeError, match=r"layer 'act' ran 2 times"):
        runner.run(lambda: net(torch.rand(1, 2, 4, 4)), lambda feat: feat)
