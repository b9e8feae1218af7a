"""Several training sets in one, mixed in stated shares: what ``MultiTaskKDDataset`` (tasks) and
``MixedKDDataset`` (sources) share.

A mixture's options name its parts under one key (``tasks``, ``sources``); every other key of the set is shared
and a part may override one. Each part has a ``weight`` (default 1): per pass over the mixture, part ``p`` gives
``round(w_p / sum(w) * K)`` samples, ``K`` the smallest total in which every part shows each of its images at
least once (a small part repeats). The samples of a pass are laid out in one block per part, in the options'
order; a sampler (BasicSR's ``EnlargedSampler`` under DDP, or the loader's shuffle) draws from the whole range.
"""
from copy import deepcopy
from typing import Any

from torch.utils import data

from kd_plugin.data.kd_paired_dataset import LABEL_ROOT


def part_weight(part: dict[str, Any], option: str, noun: str) -> float:
    """The part's ``weight`` (default 1); ``ValueError`` naming ``option`` (``datasets.train.tasks.BI``, say) for
    anything but a positive number."""
    weight = part.get('weight', 1)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
        raise ValueError(f'{option}.weight: {weight!r}. Fix: a positive number (its share of the samples, relative '
                         f'to the other {noun}s\' weights)')
    return float(weight)


def part_options(opt: dict[str, Any], key: str, own_only: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``{part: the options of its own set}``: the mixture's shared keys (all but ``key``, ``type`` and ``name``)
    with the part's own on top, without the part-only keys ``own_only``, named ``<set name>_<part>``. Each a deep
    copy: BasicSR's datasets change their options (``io_backend``'s type is popped). ``opt[key]`` must be a mapping
    of mappings (the caller says what a part needs)."""
    shared = {k: v for k, v in opt.items() if k not in (key, 'type', 'name')}
    return {str(name): deepcopy({**shared, **{k: v for k, v in part.items() if k not in own_only},
                                 'name': f'{opt.get("name", "train")}_{name}'})
            for name, part in opt[key].items()}


def labels_all_or_none(parts: dict[str, dict[str, Any]], option: str, fix: str) -> None:
    """Refuse parts of which some have a ``dataroot_teacher`` and some not: the default collate cannot batch a
    sample with a ``teacher`` label beside one without, and ``KDModel`` takes labels for the whole batch or none."""
    with_labels = [name for name, part in parts.items() if part.get(LABEL_ROOT)]
    if with_labels and len(with_labels) != len(parts):
        without = [name for name in parts if name not in with_labels]
        raise ValueError(f'{option}: {", ".join(with_labels)} have a {LABEL_ROOT} and {", ".join(without)} not; a '
                         f'batch cannot mix samples with and without labels. Fix: {fix}')


def mixture_counts(sizes: dict[str, int], weights: dict[str, float]) -> dict[str, int]:
    """Samples each part gives per pass over the mixture: ``round(w_p / sum(w) * K)``, ``K`` the smallest total
    in which every part shows each of its images at least once."""
    total = sum(weights.values())
    k = max(sizes[p] * total / weights[p] for p in sizes)
    return {p: max(round(weights[p] / total * k), 1) for p in sizes}


def index_blocks(counts: dict[str, int]) -> list[tuple[int, int, str]]:
    """``[(start, end, part)]``: the mixture's index range of each part, one block after the other."""
    blocks, start = [], 0
    for name, count in counts.items():
        blocks.append((start, start + count, name))
        start += count
    return blocks


class WeightedMixture(data.Dataset):
    """The datasets ``parts`` mixed in the shares of ``weights`` (see the module docstring). A subclass's
    ``__getitem__`` takes its sample from :meth:`locate`."""

    def __init__(self, parts: dict[str, data.Dataset], weights: dict[str, float]) -> None:
        super().__init__()
        self.parts = parts
        self.counts = mixture_counts({name: len(ds) for name, ds in parts.items()}, weights)
        self._blocks = index_blocks(self.counts)
        self._length = self._blocks[-1][1] if self._blocks else 0

    def __len__(self) -> int:
        return self._length

    def locate(self, index: int) -> tuple[str, int]:
        """``(part, index in that part's dataset)`` of mixture sample ``index``; a part cycles through its own
        samples when its share is larger than its size."""
        for start, end, name in self._blocks:
            if start <= index < end:
                return name, (index - start) % len(self.parts[name])
        raise IndexError(f'{type(self).__name__}: index {index} out of range ({self._length} samples)')
