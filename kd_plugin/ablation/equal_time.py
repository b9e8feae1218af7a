"""Equal time: how many iterations the student alone trains in the time the recipe takes.

The cost of an iteration is measured as BasicSR's training loop runs it: the next batch from the run's
own data loader (its dataset, workers, augmentation), ``update_learning_rate``, ``feed_data`` and
``optimize_parameters``. Timing the optimizer step alone on a preloaded batch leaves out data loading,
a fixed part of every iteration, and overstated a KD step's relative cost (the equal-time baseline got
about 1.8x the recipe's time).

The recipe and the student alone are timed block by block in turn, in one process, so that a machine
that is busier during one block than another does not bias the ratio; the first iterations of each
block, which read batches the loader prefetched while the other run was timed, are not counted.
Blocks are 40 iterations long: with 10, a loading-bound cached-label recipe (EDSR pair on T91 + BSD400,
one loader worker) was timed at 1.04-1.14x the student where its training runs took 1.02x; with 40, 1.03x.
A recipe of fewer than 40 iterations (a trial run) is timed in blocks of its own length, so that a trial
run is not held up by minutes of timing.

The ablation and the demo train the recipe first and give the student alone the recipe run's *measured*
training time (BasicSR's log timestamps, validation left out) at the student's timed cost per iteration
(:func:`iterations_in`), so only the student's side is predicted. The ablation predicts it from the same seed's
finished ``no_kd`` run where it has one (a whole run, measured as the recipe's is), and trains a baseline that
still lands outside ±5 % of the recipe's time once more, resized (:mod:`kd_plugin.ablation.runner`): the timing
here had sized an IMDN recipe's baseline 23 % short. Sizing the baseline by the timed ratio
instead (the recipe's iterations times it; the ratio stays in the record) had left the student alone
11-12 % short of the online HDRNet recipe's time in two seeds of three: that recipe was timed at
1.23-1.37 s per iteration in blocks and ran at 1.40-1.50 s in training, and timings of the same runs
minutes apart varied by up to 10 % on the 2-core development machine.
"""
import copy
import hashlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from os import path as osp
from typing import Any

import torch
from basicsr.data import build_dataloader, build_dataset
from basicsr.data.data_sampler import EnlargedSampler
from basicsr.models import build_model

from kd_plugin.ablation.variants import variant_options
from kd_plugin.device import pick_device, speed_facts
from kd_plugin.heap import steady_heap
from kd_plugin.runs import dataset_from_project_root, from_project_root, with_total_iter

#: timed iterations per block of a recipe of at least this many iterations
BLOCK = 40


def recipe_digest(recipe: dict[str, Any]) -> str:
    """SHA-256 of the recipe's options (canonical JSON): an edited recipe is timed again."""
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()


def in_process(opt: dict[str, Any], models_dir: str) -> dict[str, Any]:
    """``opt`` completed as BasicSR's ``parse_options`` would for a single-process training run on this
    machine, checkpoints under ``models_dir`` and every path read from the project root (where runs start)."""
    opt = copy.deepcopy(opt)
    opt.update(is_train=True, dist=False, rank=0, world_size=1, num_gpu=int(pick_device('auto').type == 'cuda'))
    opt.setdefault('manual_seed', 0)
    for key, value in list(opt['path'].items()):
        if key.startswith('pretrain_network'):
            opt['path'][key] = from_project_root(value)
    opt['path'].update(models=models_dir, training_states=models_dir, resume_state=None)
    opt['datasets']['train'] = dict(dataset_from_project_root(opt['datasets']['train']), phase='train',
                                    scale=opt['scale'])
    return opt


def _batches(opt: dict[str, Any]) -> Iterator[dict[str, torch.Tensor]]:
    """The run's training batches, epoch after epoch, from BasicSR's own dataset, sampler and loader."""
    dataset_opt = opt['datasets']['train']
    dataset = build_dataset(dataset_opt)
    sampler = EnlargedSampler(dataset, 1, 0, dataset_opt.get('dataset_enlarge_ratio', 1))
    loader = build_dataloader(dataset, dataset_opt, num_gpu=opt['num_gpu'], dist=False, sampler=sampler,
                              seed=opt['manual_seed'])
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


class _Run:
    """One run's model and data, stepped exactly as ``basicsr/train.py``'s loop steps it."""

    def __init__(self, opt: dict[str, Any]) -> None:
        torch.manual_seed(opt['manual_seed'])
        self.model = build_model(opt)
        self.batches = _batches(opt)
        self.warmup = opt['train'].get('warmup_iter', -1)
        self.iteration = 0

    def step(self) -> None:
        batch = next(self.batches)
        self.iteration += 1
        self.model.update_learning_rate(self.iteration, warmup_iter=self.warmup)
        self.model.feed_data(batch)
        self.model.optimize_parameters(self.iteration)


def iteration_seconds(opts: dict[str, dict[str, Any]], blocks: int = 5, block: int = BLOCK,
                      skip: int | None = None) -> dict[str, float]:
    """Seconds per whole training iteration of each run in ``opts`` (``{label: run options}``), the median
    over ``blocks`` rounds; each round times ``block`` consecutive iterations of every run in turn after
    ``skip`` uncounted ones (default: the loader's prefetched batches plus one). The process gets the heap
    policy training processes run with (:func:`kd_plugin.heap.steady_heap`)."""
    steady_heap()
    if skip is None:
        workers = max(opt['datasets']['train'].get('num_worker_per_gpu', 0) for opt in opts.values())
        skip = 2 * workers + 1  # DataLoader's default prefetch_factor is 2 batches per worker
    # a schedule shorter than the timed iterations is stretched (a step costs the same at any learning rate)
    steps = blocks * (skip + block)
    opts = {label: opt if opt['train']['total_iter'] >= steps else with_total_iter(opt, steps)
            for label, opt in opts.items()}
    with tempfile.TemporaryDirectory() as tmp:
        runs = {label: _Run(in_process(opt, tmp)) for label, opt in opts.items()}
        times: dict[str, list[float]] = {label: [] for label in runs}
        for _ in range(blocks):
            for label, run in runs.items():
                for _ in range(skip):
                    run.step()
                start = time.perf_counter()
                for _ in range(block):
                    run.step()
                times[label].append((time.perf_counter() - start) / block)
    return {label: statistics.median(values) for label, values in times.items()}


def measure_ratio(recipe: dict[str, Any], block: int = BLOCK) -> dict[str, Any]:
    """The record :func:`equal_time_record` keeps: both runs' seconds per iteration (timed in blocks of
    ``block`` iterations) and their ratio."""
    seconds = iteration_seconds({'recipe': variant_options(recipe, 'recipe', recipe.get('manual_seed') or 0),
                                 'student': variant_options(recipe, 'no_kd', recipe.get('manual_seed') or 0)},
                                block=block)
    return {'recipe_sha256': recipe_digest(recipe), 'block': block, 'recipe_iteration_s': seconds['recipe'],
            'student_iteration_s': seconds['student'], 'ratio': seconds['recipe'] / seconds['student'],
            'measured': 'whole training iterations (data loading, feed_data, scheduler, optimizer step), '
                        'timed block by block in turn in one process', 'threads': torch.get_num_threads(),
            'machine': speed_facts(pick_device('auto'))}


def retime_reason(saved: dict[str, Any] | None, recipe: dict[str, Any]) -> str | None:
    """Why a recorded timing cannot size runs of ``recipe`` on this machine (None when it can): there is none,
    the recipe changed, or it was timed on another device, CPU, thread count or torch version."""
    if not saved:
        return 'no timing recorded yet'
    if saved.get('recipe_sha256') != recipe_digest(recipe):
        return 'the recipe changed since it was timed'
    here, there = speed_facts(pick_device('auto')), saved.get('machine') or {}
    differ = [f'{key} {there.get(key)!r} -> {value!r}' for key, value in here.items() if there.get(key) != value]
    return f'timed on another machine ({"; ".join(differ)})' if differ else None


def equal_time_record(recipe: dict[str, Any], total_iter: int, record: str) -> dict[str, Any]:
    """Both runs' seconds per whole iteration, measured once and kept in ``record`` (JSON) with the recipe's
    digest and the machine's speed facts (:func:`kd_plugin.device.speed_facts`): later invocations with the
    same recipe on the same machine read it (so the equal-time baseline's finished runs stay valid); an
    edited recipe, or another device, CPU, thread count or torch version, is timed again, with one printed
    line saying why. A recipe of ``total_iter`` < 40 iterations is timed in blocks of its own length."""
    saved = None
    if osp.isfile(record):
        with open(record) as f:
            saved = json.load(f)
    reason = retime_reason(saved, recipe)
    if reason:
        if saved:
            print(f'equal time: timing again ({record}): {reason}', flush=True)
        print(f'equal time: timing whole training iterations of the recipe and the student alone, 5 blocks of '
              f'{min(BLOCK, total_iter)} each (a few minutes; recorded in {record})', flush=True)
        saved = measure_ratio(recipe, block=min(BLOCK, total_iter))
        os.makedirs(osp.dirname(osp.abspath(record)), exist_ok=True)
        with open(record, 'w') as f:
            json.dump(saved, f, indent=1)
    return saved


def iterations_in(seconds: float, record: dict[str, Any]) -> int:
    """Iterations the student alone runs in ``seconds`` (the recipe run's measured training time, plus
    any time of the recipe's that is not training, e.g. building its labels), at the student's
    whole-iteration cost in ``record`` (:func:`equal_time_record`); at least one."""
    return max(round(seconds / record['student_iteration_s']), 1)
