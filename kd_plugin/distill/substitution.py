"""Run a network's tail on a substitute for one layer's output: the forward-adaptation pass.

Forward adaptation needs ``T_{>l}(A(F_S))``: the teacher from layer ``l`` on, run on the adapted
student feature. Any arch must work, so there is no "tail" function to call; instead
:class:`TailRunner` records one ordinary forward pass (the teacher's pass of the step) and keeps the
output of every sub-module that finished before ``l`` started. The second pass then calls the same
network with those sub-modules and ``l`` itself short-circuited to their recorded outputs: the head
is not recomputed, and only the tail (and the glue code between modules) runs.

A recorded output is reused only when it is safe: the module ran exactly once in the recorded pass
(a shared module such as MSRResNet's single ``lrelu`` runs again), it returned a tensor, and nothing
modified that tensor in place later in the pass (its version counter is unchanged). Anything else
is recomputed, which costs time but never changes the result.
"""
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from kd_plugin.distill.layer_names import resolve_layer

_MISSING = object()


def _returning(value: torch.Tensor) -> Callable[..., torch.Tensor]:
    def forward(*args, **kwargs) -> torch.Tensor:
        return value
    return forward


class TailRunner:
    """Reuse the head of a recorded pass of ``model`` and rerun only what follows layer ``layer``.

    Usage, once per step::

        with runner.recording():
            target = model(x)                     # the ordinary (no-grad) pass
        tail_out = runner.run(lambda: model(x), lambda feat: substitute_like(feat))
        runner.clear()

    ``run`` calls the network again with ``layer``'s output replaced by ``replacement(o)`` (``o`` is
    the layer's output in the recorded pass, for its shape and dtype), under ``torch.enable_grad``:
    the tail is differentiable with respect to the substitute, while frozen parameters get no
    gradient. The tail receives a copy of the substitute, so its in-place ops (``LeakyReLU(inplace=
    True)``, ``res += x``) never modify a tensor the caller still needs for backward.
    """

    def __init__(self, model: nn.Module, layer: str, option: str) -> None:
        self.layer = resolve_layer(model, layer, option)
        self.layer_name = layer
        outer = {name for name, _ in model.named_modules() if name == '' or layer.startswith(name + '.')}
        # the modules whose outputs may be reused: everything but the layer and the modules around it
        self._watched = [m for name, m in model.named_modules() if name not in outer and m is not self.layer]
        self.cache: list[tuple[nn.Module, torch.Tensor]] = []
        self.layer_output: torch.Tensor | None = None
        self.layer_calls = 0

    @contextmanager
    def recording(self) -> Iterator['TailRunner']:
        """Record the head of the forward pass run inside the block."""
        self.clear()
        started = False
        seen: dict[int, tuple[nn.Module, object, int]] = {}
        calls: dict[int, int] = {}

        def before_layer(module, args):
            nonlocal started
            started = True

        def after_layer(module, args, output):
            self.layer_calls += 1
            if self.layer_output is None:
                self.layer_output = output

        def after(module, args, output):
            calls[id(module)] = calls.get(id(module), 0) + 1
            if not started and torch.is_tensor(output):
                seen[id(module)] = (module, output, output._version)

        handles = [self.layer.register_forward_pre_hook(before_layer), self.layer.register_forward_hook(after_layer)]
        handles += [m.register_forward_hook(after) for m in self._watched]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()
            self.cache = [(module, out) for key, (module, out, version) in seen.items()
                          if calls[key] == 1 and out._version == version]

    def run(self, forward: Callable[[], torch.Tensor],
            replacement: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``forward()`` (the same call as the recorded pass) with the head reused and ``layer``'s output
        replaced by ``replacement(recorded output)``."""
        if self.layer_calls != 1 or not torch.is_tensor(self.layer_output):
            raise RuntimeError(f'layer {self.layer_name!r} ran {self.layer_calls} times and returned '
                               f'{type(self.layer_output).__name__} in the recorded pass; forward adaptation needs a '
                               'layer that runs exactly once and returns a tensor')
        with torch.enable_grad():
            substitute = replacement(self.layer_output).clone()
            patched = [(module, module.__dict__.get('forward', _MISSING)) for module, _ in self.cache]
            patched.append((self.layer, self.layer.__dict__.get('forward', _MISSING)))
            try:
                for module, out in self.cache:
                    module.forward = _returning(out)
                self.layer.forward = _returning(substitute)
                return forward()
            finally:
                for module, saved in reversed(patched):
                    if saved is _MISSING:
                        del module.forward
                    else:
                        module.forward = saved

    def clear(self) -> None:
        self.cache = []
        self.layer_output = None
        self.layer_calls = 0
