"""Run a network with one layer's output replaced: the forward-adaptation pass."""
from collections.abc import Callable
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def replaced_output(layer: nn.Module, replacement: Callable[[torch.Tensor], torch.Tensor]):
    """Within the block, ``layer``'s output ``o`` is replaced by ``replacement(o)``.

    The forward pass up to and including ``layer`` runs without autograd (it only produces
    constants for the rest of the pass); autograd is switched on at the replacement, so the
    network's tail is differentiable with respect to whatever ``replacement`` returns, while
    parameters with ``requires_grad=False`` still receive no gradient.
    """
    def hook(module: nn.Module, args, output):
        torch.set_grad_enabled(True)
        return replacement(output)

    previous = torch.is_grad_enabled()
    handle = layer.register_forward_hook(hook)
    torch.set_grad_enabled(False)
    try:
        yield
    finally:
        handle.remove()
        torch.set_grad_enabled(previous)
