"""Forward hooks that capture the outputs of named layers, one call per forward pass."""
from contextlib import contextmanager

import torch
from torch import nn

from kd_plugin.distill.layer_names import resolve_layer


class FeatureRecorder:
    """Capture the output of each layer in ``names`` of ``model`` during ``model(x)``.

    Hooks record only inside :meth:`recording`, which starts from an empty record; each layer must
    run exactly once per forward pass (a layer reused inside one pass has no single feature to
    match). The KD model clears the record after every step, so no activation outlives its step.
    """

    def __init__(self, model: nn.Module, names: list[str], option: str) -> None:
        self.names = list(dict.fromkeys(names))
        self.outputs: dict[str, torch.Tensor] = {}
        self.calls: dict[str, int] = {}
        self.active = False
        self._handles = [resolve_layer(model, name, option).register_forward_hook(self._hook(name))
                         for name in self.names]

    def _hook(self, name: str):
        def hook(module: nn.Module, args, output) -> None:
            if not self.active:
                return
            self.calls[name] = self.calls.get(name, 0) + 1
            self.outputs[name] = output
        return hook

    def get(self, name: str) -> torch.Tensor:
        """The output captured for ``name`` in the last forward pass."""
        calls = self.calls.get(name, 0)
        if calls != 1:
            raise RuntimeError(f'layer {name!r} ran {calls} times in one forward pass; distillation needs a layer '
                               'that runs exactly once (choose its parent or a specific child)')
        out = self.outputs[name]
        if not torch.is_tensor(out):
            raise TypeError(f'layer {name!r} returns {type(out).__name__}, not a tensor; choose a layer that '
                            'outputs a feature map')
        return out

    @contextmanager
    def recording(self):
        """Record the layers' outputs during the block (the previous record is dropped first)."""
        self.clear()
        self.active = True
        try:
            yield self
        finally:
            self.active = False

    def clear(self) -> None:
        self.outputs.clear()
        self.calls.clear()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.clear()
