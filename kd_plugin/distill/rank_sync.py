"""Keeping what DDP does not wrap in step across ranks (no-ops without ``torch.distributed``).

The student is trained through BasicSR's DDP wrapper, which broadcasts its initial weights and
averages its gradients. The KD adapters are called directly by the losses, not through a DDP
forward, so their initial weights (each rank seeds with ``manual_seed + rank``) and gradients are
synchronised here; so is the decision to skip a step with a non-finite loss, which every rank must
take together or DDP's collectives stop matching.
"""
import torch
import torch.distributed as dist
from torch import nn


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@torch.no_grad()
def broadcast_from_rank0(module: nn.Module) -> None:
    """Give every rank rank 0's parameters and buffers of ``module``."""
    if not distributed():
        return
    for tensor in [*module.parameters(), *module.buffers()]:
        dist.broadcast(tensor.data, src=0)


@torch.no_grad()
def average_gradients(module: nn.Module) -> None:
    """Average the gradients of ``module``'s parameters over ranks (parameters without a gradient are
    skipped; every rank runs the same losses, so they agree on which)."""
    if not distributed():
        return
    world = dist.get_world_size()
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world


def finite_on_all_ranks(value: torch.Tensor) -> bool:
    """Whether ``value`` is finite on every rank (one all-reduce of a flag under DDP)."""
    flag = torch.isfinite(value.detach()).all().to(torch.float32).reshape(1)
    if distributed():
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())
