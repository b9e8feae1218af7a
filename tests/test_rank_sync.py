"""``kd_plugin.distill.rank_sync`` under two real CPU processes (gloo): what DDP does not wrap stays in step."""
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from kd_plugin.distill.rank_sync import average_gradients, broadcast_from_rank0, distributed, finite_on_all_ranks
from kd_plugin.runs import free_port


def _worker(rank: int, port: int, results) -> None:
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=2)
    try:
        torch.manual_seed(rank)  # ranks seed differently, as BasicSR's manual_seed + rank
        adapter = nn.Conv2d(2, 3, 1)
        adapter.register_buffer('count', torch.tensor([float(rank)]))
        broadcast_from_rank0(adapter)
        adapter.weight.grad = torch.full_like(adapter.weight, float(rank + 1))  # rank 0: 1, rank 1: 2
        average_gradients(adapter)  # the bias has no gradient: skipped on both ranks
        value = torch.tensor(float('nan') if rank == 1 else 1.0)
        results[rank] = (adapter.weight.detach().clone(), adapter.count.clone(), adapter.weight.grad.clone(),
                         adapter.bias.grad, finite_on_all_ranks(value), finite_on_all_ranks(torch.tensor(2.0)),
                         distributed())
    finally:
        dist.destroy_process_group()


def test_adapters_start_equal_average_gradients_and_skip_steps_together():
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_worker, args=(free_port(), results), nprocs=2)
        (w0, c0, g0, b0, nan0, ok0, d0), (w1, c1, g1, b1, nan1, ok1, d1) = results[0], results[1]
    torch.manual_seed(0)
    assert torch.equal(w0, w1) and torch.equal(w0, nn.Conv2d(2, 3, 1).weight)  # rank 0's initial weights
    assert c0.item() == c1.item() == 0  # buffers too
    assert torch.equal(g0, torch.full_like(g0, 1.5)) and torch.equal(g0, g1)  # (1 + 2) / 2
    assert b0 is None and b1 is None
    assert nan0 is False and nan1 is False  # one rank's NaN: both ranks skip
    assert ok0 is True and ok1 is True and d0 and d1


def test_without_a_process_group_everything_is_a_no_op():
    adapter = nn.Linear(2, 2)
    before = adapter.weight.detach().clone()
    adapter.weight.grad = torch.ones_like(adapter.weight)
    broadcast_from_rank0(adapter)
    average_gradients(adapter)
    assert not distributed() and torch.equal(adapter.weight, before) and torch.equal(adapter.weight.grad,
                                                                                    torch.ones(2, 2))
    assert finite_on_all_ranks(torch.tensor(1.0)) and not finite_on_all_ranks(torch.tensor(float('inf')))


def test_the_training_entry_ends_the_process_group_it_ran_in(monkeypatch, tmp_path, capsys):
    """BasicSR leaves the launcher's process group to interpreter exit, where gloo's threads can abort a
    finished rank; ``run_pipeline`` destroys it, whatever the run's outcome (here: a missing options file)."""
    import sys

    from kd_plugin import pipeline
    from tests.helpers import ROOT

    dist.init_process_group('gloo', init_method=f'file://{tmp_path}/group', rank=0, world_size=1)
    try:
        monkeypatch.setattr(sys, 'argv', ['train.py', '-opt', '/nonexistent.yml'])
        assert pipeline.run_pipeline('train', ROOT) == 2
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
