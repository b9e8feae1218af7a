"""Capture: forward hooks that record the outputs of named layers, one call per forward pass."""
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from kd_plugin.distill.layer_names import resolve_layer


class FeatureRecorder:
    """Capture the output of each layer in ``names`` of ``model`` during ``model(x)``.

    Hooks record only inside :meth:`recording`, which starts from an empty record; each layer must
    run exactly once per forward pass (a layer reused inside one pass has no single feature to
    match). The KD model clears the record after every step, so no activation outlives its step.

    A hook sees the tensor the layer returned, and a later in-place op of the network
    (``LeakyReLU(inplace=True)`` after MSRResNet's ``conv_first``, ``res += x`` after EDSR's
    ``conv_after_body``) would change that tensor after the fact. Layers named in ``clone`` are
    therefore recorded as a copy taken inside the hook (differentiable: gradients still reach the
    layer); :func:`~kd_plugin.distill.wiring.probe` finds them by running the network once. For every
    other layer, :meth:`get` checks the tensor's version counter and raises rather than return a
    value the layer never produced.
    """

    def __init__(self, model: nn.Module, names: Iterable[str], option: str, clone: Iterable[str] = ()) -> None:
        self.names = list(dict.fromkeys(names))
        self.clone = set(clone)
        self.outputs: dict[str, torch.Tensor] = {}
        self.versions: dict[str, int] = {}
        self.calls: dict[str, int] = {}
        self.active = False
        self._handles = [resolve_layer(model, name, option).register_forward_hook(self._hook(name))
                         for name in self.names]

    def _hook(self, name: str):
        def hook(module: nn.Module, args, output) -> None:
            if not self.active:
                return
            self.calls[name] = self.calls.get(name, 0) + 1
            if torch.is_tensor(output):
                if name in self.clone:
                    output = output.clone()
                self.versions[name] = output._version
            self.outputs[name] = output
        return hook

    def get(self, name: str, allow_modified: bool = False) -> torch.Tensor:
        """The output captured for ``name`` in the last forward pass.

        Raises ``RuntimeError`` when the layer did not run exactly once, or (unless ``allow_modified``,
        for a caller that only needs the shape) when its output was changed in place after it
        returned; ``TypeError`` when it is not a tensor."""
        calls = self.calls.get(name, 0)
        if calls != 1:
            raise RuntimeError(f'layer {name!r} ran {calls} times in one forward pass; distillation needs a layer '
                               'that runs exactly once (choose its parent or a specific child)')
        out = self.outputs[name]
        if not torch.is_tensor(out):
            raise TypeError(f'layer {name!r} returns {type(out).__name__}, not a tensor; choose a layer that '
                            'outputs a feature map')
        if not allow_modified and out._version != self.versions[name]:
            raise RuntimeError(f'layer {name!r}: its output was modified in place after the layer ran (by a later '
                               'in-place op such as ReLU(inplace=True) or `+=`), so the recorded tensor is no longer '
                               'the layer\'s output. Fix: record it as a copy (FeatureRecorder clone=[...]; KDModel '
                               'does this for layers its shape probe sees modified), or choose the layer after the op')
        return out

    def modified_in_place(self) -> list[str]:
        """Layers whose recorded output changed after the layer returned (call after the forward pass)."""
        return [name for name, out in self.outputs.items()
                if torch.is_tensor(out) and out._version != self.versions[name]]

    @contextmanager
    def recording(self) -> Iterator['FeatureRecorder']:
        """Record the layers' outputs during the block (the previous record is dropped first)."""
        self.clear()
        self.active = True
        try:
            yield self
        finally:
            self.active = False

    def clear(self) -> None:
        self.outputs.clear()
        self.versions.clear()
        self.calls.clear()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.clear()
