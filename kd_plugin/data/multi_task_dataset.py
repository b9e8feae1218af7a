"""``MultiTaskKDDataset``: several paired training sets (tasks) in one, each with its own teacher's labels.

For multi-task distillation: one blind student learns several degradations (e.g. RDN's BI, BD and DN), each
task taught by a teacher of its own through that teacher's cached labels. Options::

    datasets:
      train:
        type: MultiTaskKDDataset
        tasks:
          BI: {dataroot_gt: ..., dataroot_lq: ..., dataroot_teacher: ...labels.npy,
               pretrain_network_t: checkpoints/HDRNet_T91_BSD400_x4_6k.pth, weight: 1}
          BD: {...}
        io_backend: {type: lmdb}   # and every other PairedImageDataset key, shared by the tasks
        gt_size: 64 ...

Each task is BasicSR's ``PairedImageDataset`` (``KDPairedImageDataset`` with its ``dataroot_teacher``) built
from the shared keys and its own; a task may override a shared key (its ``io_backend``, say). The tasks are
mixed in the proportions of their ``weight`` (default 1): of every ``len(self)`` samples, task ``t`` gives
``round(w_t / sum(w) * K)`` with ``K = max(len_t * sum(w) / w_t)``, cycling through its own images, so no
task's images are left out and a small task is repeated. A sample is the task's sample plus ``'task'`` (its
name); a batch mixes tasks, each sample's label coming from its own task's teacher. ``pretrain_network_t``
(and ``param_key_t``) of a task name the teacher its labels must come from: the pre-run check refuses labels of
another teacher, naming the task. Either every task has labels or none does (a batch cannot mix the two).
"""
from copy import deepcopy
from typing import Any

from basicsr.data.paired_image_dataset import PairedImageDataset
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from kd_plugin.data.kd_paired_dataset import LABEL_ROOT, KDPairedImageDataset

#: Keys of a task that are not dataset options of its own set.
TASK_ONLY_KEYS = ('weight', 'pretrain_network_t', 'param_key_t')


def task_options(opt: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{task: the options of its own paired set}``: the shared keys with the task's own on top (without
    ``tasks`` and the task-only keys), in the options' order; ``ValueError`` naming the key for bad ones."""
    tasks = opt.get('tasks')
    if not isinstance(tasks, dict) or not tasks:
        raise ValueError('datasets.train.tasks: MultiTaskKDDataset needs a mapping of tasks, e.g. {BI: {dataroot_gt: '
                         '..., dataroot_lq: ..., dataroot_teacher: ...}, BD: {...}}')
    shared = {k: v for k, v in opt.items() if k not in ('tasks', 'type', 'name')}
    out = {}
    for name, task in tasks.items():
        if not isinstance(task, dict) or not task.get('dataroot_gt') or not task.get('dataroot_lq'):
            raise ValueError(f'datasets.train.tasks.{name}: give its dataroot_gt and dataroot_lq')
        weight = task.get('weight', 1)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
            raise ValueError(f'datasets.train.tasks.{name}.weight: {weight!r}. Fix: a positive number (its share of '
                             'the samples, relative to the other tasks\' weights)')
        # each set its own copies: BasicSR's datasets change their options (io_backend's type is popped)
        out[str(name)] = deepcopy({**shared, **{k: v for k, v in task.items() if k not in TASK_ONLY_KEYS},
                                   'name': f'{opt.get("name", "train")}_{name}'})
    with_labels = [name for name, task in out.items() if task.get(LABEL_ROOT)]
    if with_labels and len(with_labels) != len(out):
        without = [name for name in out if name not in with_labels]
        raise ValueError(f'datasets.train.tasks: {", ".join(with_labels)} have a {LABEL_ROOT} and '
                         f'{", ".join(without)} not; a batch cannot mix samples with and without labels. Fix: give '
                         f'every task its {LABEL_ROOT}, or none')
    return out


def task_weights(opt: dict[str, Any]) -> dict[str, float]:
    return {str(name): float(task.get('weight', 1)) for name, task in opt['tasks'].items()}


def task_counts(sizes: dict[str, int], weights: dict[str, float]) -> dict[str, int]:
    """Samples each task gives per pass over the mixture: ``round(w_t / sum(w) * K)``, ``K`` the smallest total
    in which every task shows each of its images at least once."""
    total = sum(weights.values())
    k = max(sizes[t] * total / weights[t] for t in sizes)
    return {t: max(round(weights[t] / total * k), 1) for t in sizes}


@DATASET_REGISTRY.register()
class MultiTaskKDDataset(data.Dataset):
    """The mixture of the tasks' paired sets (see the module docstring)."""

    def __init__(self, opt: dict[str, Any]) -> None:
        super().__init__()
        self.opt = opt
        options = task_options(opt)
        self.tasks = {name: (KDPairedImageDataset if task.get(LABEL_ROOT) else PairedImageDataset)(task)
                      for name, task in options.items()}
        self.counts = task_counts({name: len(ds) for name, ds in self.tasks.items()}, task_weights(opt))
        self._blocks = []
        start = 0
        for name, count in self.counts.items():
            self._blocks.append((start, start + count, name))
            start += count
        self._length = start

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> dict[str, Any]:
        for start, end, name in self._blocks:
            if start <= index < end:
                dataset = self.tasks[name]
                return {**dataset[(index - start) % len(dataset)], 'task': name}
        raise IndexError(f'MultiTaskKDDataset: index {index} out of range ({self._length} samples)')
