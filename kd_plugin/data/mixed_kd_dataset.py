"""``MixedKDDataset``: paired training sets and LR-only image sets (no HR) in one, mixed in stated shares.

For distilling on your own LR images: the teacher labels them once (its output on each whole image), and the
student learns the teacher's behaviour on that content beside ordinary paired data. Options::

    datasets:
      train:
        type: MixedKDDataset
        sources:
          T91: {dataroot_gt: datasets/T91/X4/HR, dataroot_lq: datasets/T91/X4/LR,
                dataroot_teacher: datasets/T91/X4/labels_HDRNet_T91_BSD400_x4_6k_x8.npy, weight: 1}
          mine: {dataroot_lq: datasets/mine/LR, dataroot_teacher: datasets/mine/labels_HDRNet_T91_BSD400_x4_6k_x8.npy,
                 weight: 1}
        io_backend: {type: disk}   # and every other PairedImageDataset key, shared by the sources
        gt_size: 64 ...

A source with ``dataroot_gt`` is paired (``KDPairedImageDataset`` with its labels, ``PairedImageDataset``
without); one without is LR-only (:class:`~kd_plugin.data.lr_only_dataset.LabelledLRDataset`) and needs its
``dataroot_teacher``: the labels are all it has. Either every source has labels or none does (a batch cannot mix
the two), so a mixture with an LR-only source has labels everywhere. A source may override a shared key; the
images (``dataroot_*``) are each source's own. The sources are mixed by ``weight`` as
:mod:`kd_plugin.data.mixture` says. Every sample has the same keys (the default collate batches them): a paired
one's plus ``has_gt`` (True; False with a zero ``gt`` placeholder for an LR-only one) and ``source`` (its name).
All sources are taught by the run's one teacher (``network_t`` with ``path.pretrain_network_t``), which their labels
are checked against before a run; a teacher per set is ``MultiTaskKDDataset``'s.
"""
from typing import Any

from basicsr.data.paired_image_dataset import PairedImageDataset
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data

from kd_plugin.data.kd_paired_dataset import LABEL_ROOT, KDPairedImageDataset
from kd_plugin.data.lr_only_dataset import LabelledLRDataset, has_gt
from kd_plugin.data.mixture import WeightedMixture, labels_all_or_none, part_options, part_weight

MIXED = 'MixedKDDataset'
#: Keys of a source that are not dataset options of its own set.
SOURCE_ONLY_KEYS = ('weight',)
#: Keys that name one source's images: given once for the whole mixture they would make every source the same.
OWN_KEYS = ('dataroot_gt', 'dataroot_lq', LABEL_ROOT)
_LABELS_FIX = 'python -m kd_plugin.cli.prepare teacher-labels -opt <this options file>'


def _check_source(name: str, source: Any) -> None:
    option = f'datasets.train.sources.{name}'
    if not isinstance(source, dict) or not source.get('dataroot_lq'):
        raise ValueError(f'{option}: give its dataroot_lq (and its dataroot_gt for a paired source; a source without '
                         'one is LR-only)')
    for key in ('pretrain_network_t', 'param_key_t'):
        if key in source:
            raise ValueError(f'{option}.{key}: every source of a MixedKDDataset is taught by the run\'s teacher, '
                             'path.pretrain_network_t. Fix: remove it (for a teacher per training set, use '
                             'MultiTaskKDDataset)')
    if not has_gt(source) and not source.get(LABEL_ROOT):
        raise ValueError(f'{option}: an LR-only source (dataroot_lq without dataroot_gt) needs {LABEL_ROOT}: the '
                         'teacher\'s labels of its images are all it has to learn from. Fix: set '
                         f'{option}.{LABEL_ROOT} to where its labels go (e.g. <folder>/labels_<teacher>_x8.npy) and '
                         f'build them with {_LABELS_FIX}, or give it its dataroot_gt')
    part_weight(source, option, 'source')


def source_options(opt: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{source: the options of its own set}`` of a ``MixedKDDataset``'s options ``opt``: the shared keys with the
    source's own on top (without ``sources`` and ``weight``), in the options' order; ``ValueError`` naming the key
    and the fix for a bad source, a shared ``dataroot_*``, an LR-only source without labels, or labels on some
    sources only."""
    sources = opt.get('sources')
    if not isinstance(sources, dict) or not sources:
        raise ValueError('datasets.train.sources: MixedKDDataset needs a mapping of sources, e.g. {T91: {dataroot_gt: '
                         '..., dataroot_lq: ..., dataroot_teacher: ...}, mine: {dataroot_lq: ..., dataroot_teacher: '
                         '...}}')
    shared = [key for key in OWN_KEYS if opt.get(key)]
    if shared:
        raise ValueError(f'datasets.train.{shared[0]}: a MixedKDDataset reads each source\'s images from its own '
                         f'entry. Fix: move it into datasets.train.sources.<name>')
    for name, source in sources.items():
        _check_source(name, source)
    out = part_options(opt, 'sources', SOURCE_ONLY_KEYS)
    lr_only = [name for name, source in out.items() if not has_gt(source)]
    fix = (f'give every paired source its {LABEL_ROOT} ({_LABELS_FIX} builds them all); the LR-only '
           f'{", ".join(lr_only)} cannot do without' if lr_only else f'give every source its {LABEL_ROOT}, or none')
    labels_all_or_none(out, 'datasets.train.sources', fix)
    return out


def source_weights(opt: dict[str, Any]) -> dict[str, float]:
    return {str(name): part_weight(source, f'datasets.train.sources.{name}', 'source')
            for name, source in opt['sources'].items()}


def lr_only_sources(opt: dict[str, Any]) -> list[str]:
    """The LR-only sources (no ``dataroot_gt``) of a run's ``datasets.train``, by name; ``[]`` unless it is a
    ``MixedKDDataset``. Reads the options as they are (:func:`source_options` checks them)."""
    train_set = (opt.get('datasets') or {}).get('train') or {}
    sources = train_set.get('sources')
    if train_set.get('type') != MIXED or not isinstance(sources, dict):
        return []
    return [str(name) for name, source in sources.items() if isinstance(source, dict) and not has_gt(source)]


def source_dataset(source: dict[str, Any]) -> data.Dataset:
    """The dataset of one source's options: LR-only, paired with labels, or plain paired."""
    if not has_gt(source):
        return LabelledLRDataset(source)
    return (KDPairedImageDataset if source.get(LABEL_ROOT) else PairedImageDataset)(source)


@DATASET_REGISTRY.register()
class MixedKDDataset(WeightedMixture):
    """The mixture of paired and LR-only sources (see the module docstring)."""

    def __init__(self, opt: dict[str, Any]) -> None:
        self.opt = opt
        self.sources = {name: source_dataset(source) for name, source in source_options(opt).items()}
        super().__init__(self.sources, source_weights(opt))

    def __getitem__(self, index: int) -> dict[str, Any]:
        name, inner = self.locate(index)
        return {'has_gt': True, **self.sources[name][inner], 'source': name}
