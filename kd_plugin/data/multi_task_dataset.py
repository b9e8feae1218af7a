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
from typing import Any

from basicsr.data.paired_image_dataset import PairedImageDataset
from basicsr.utils.registry import DATASET_REGISTRY

from kd_plugin.data.kd_paired_dataset import LABEL_ROOT, KDPairedImageDataset
from kd_plugin.data.mixture import WeightedMixture, labels_all_or_none, mixture_counts, part_options, part_weight

#: Keys of a task that are not dataset options of its own set.
TASK_ONLY_KEYS = ('weight', 'pretrain_network_t', 'param_key_t')


def task_options(opt: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{task: the options of its own paired set}``: the shared keys with the task's own on top (without
    ``tasks`` and the task-only keys), in the options' order; ``ValueError`` naming the key for bad ones."""
    tasks = opt.get('tasks')
    if not isinstance(tasks, dict) or not tasks:
        raise ValueError('datasets.train.tasks: MultiTaskKDDataset needs a mapping of tasks, e.g. {BI: {dataroot_gt: '
                         '..., dataroot_lq: ..., dataroot_teacher: ...}, BD: {...}}')
    for name, task in tasks.items():
        if not isinstance(task, dict) or not task.get('dataroot_gt') or not task.get('dataroot_lq'):
            raise ValueError(f'datasets.train.tasks.{name}: give its dataroot_gt and dataroot_lq')
        part_weight(task, f'datasets.train.tasks.{name}', 'task')
    out = part_options(opt, 'tasks', TASK_ONLY_KEYS)
    labels_all_or_none(out, 'datasets.train.tasks', f'give every task its {LABEL_ROOT}, or none')
    return out


def task_weights(opt: dict[str, Any]) -> dict[str, float]:
    return {str(name): part_weight(task, f'datasets.train.tasks.{name}', 'task') for name, task in opt['tasks'].items()}


#: The samples each task gives per pass (:func:`kd_plugin.data.mixture.mixture_counts`), under its multi-task name.
task_counts = mixture_counts


@DATASET_REGISTRY.register()
class MultiTaskKDDataset(WeightedMixture):
    """The mixture of the tasks' paired sets (see the module docstring)."""

    def __init__(self, opt: dict[str, Any]) -> None:
        self.opt = opt
        self.tasks = {name: (KDPairedImageDataset if task.get(LABEL_ROOT) else PairedImageDataset)(task)
                      for name, task in task_options(opt).items()}
        super().__init__(self.tasks, task_weights(opt))

    def __getitem__(self, index: int) -> dict[str, Any]:
        name, inner = self.locate(index)
        return {**self.tasks[name][inner], 'task': name}
