"""The runs of an ablation, each derived from one KD options file (the recipe).

=====================  ========================================================================
``no_kd``              the student alone (``SRModel``, the recipe's pixel loss, or L1 where the recipe
                       has none), from scratch
``no_kd_equal_time``   the same, trained for the measured training time of the recipe run of the
                       same seed instead of its iterations
``init_only``          the student alone from the recipe's ``path.pretrain_network_g`` (only when
                       the recipe sets one), so that a gain that came from initialisation is not
                       credited to distillation
``output`` ...         the recipe's pixel loss (if it has one) + one distillation term of the recipe
                       (``output``, ``feature``, ``forward``), each alone
``recipe``             the options file exactly as it is (only name, seed, iterations and validation
                       change)
``online_labels``      for a recipe on cached teacher labels (``dataroot_teacher``): the same recipe
                       with the teacher run on each training patch instead (not for a multi-task recipe
                       whose tasks have teachers of their own: online, one teacher teaches every task;
                       not for a recipe with LR-only sources, which cannot do without their labels)
``eco_hr_only``,       the student with the recipe's pixel loss (or L1) on the ECO schedule
``eco_full``           (:mod:`kd_plugin.distill.eco`: the target moves from the teacher's output or label to
                       the ground truth over ``end_ratio`` of training, the recipe's ``train.eco.end_ratio``
                       or 0.75; ``full`` moves the input too) and no other distillation term, on the
                       recipe's data and labels
``recipe_without_X``   the recipe without one of its ingredients ``X``
=====================  ========================================================================

Every run keeps the recipe's data, student, batch, schedule and seed handling; only the terms
differ, except that the student-alone baselines, which drop the labels, train on a ``MixedKDDataset``'s paired
sources only (its LR-only sources have nothing but labels), and that a recipe with LR-only sources has no variant
the pre-run checks would refuse there (ECO, and any without output distillation). Runs are named
``<name>_ablation_<variant>_s<seed>`` and train without periodic validation (the ablation scores the final
students itself).
"""
from copy import deepcopy
from os import path as osp
from typing import Any

from kd_plugin.data.kd_paired_dataset import LABEL_ROOT
from kd_plugin.data.lr_only_dataset import has_gt
from kd_plugin.data.mixed_kd_dataset import lr_only_sources
from kd_plugin.models.kd_config import KD_INGREDIENTS
from kd_plugin.runs import with_total_iter

#: pixel loss + one term, by variant name
SINGLE_TERMS = {'output': 'distill_opt', 'feature': 'feature_opt', 'forward': 'forward_opt'}
BASELINES = ('no_kd', 'no_kd_equal_time', 'init_only')
#: The ECO variants and their ``train.eco.mode``.
ECO_VARIANTS = {'eco_hr_only': 'hr_only', 'eco_full': 'full'}
#: ECO's ``end_ratio`` in its variants when the recipe sets none (traiNNer-redux's example files use 0.75).
ECO_END_RATIO = 0.75
#: The student-alone baselines' pixel loss when the recipe has none (a distillation-only recipe).
DEFAULT_PIXEL_LOSS = {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'}


def baseline_pixel_loss(recipe: dict[str, Any]) -> dict[str, Any]:
    """The pixel loss the student-alone baselines train with: the recipe's, else L1."""
    return deepcopy(recipe['train'].get('pixel_opt') or DEFAULT_PIXEL_LOSS)


def label_roots(opt: dict[str, Any]) -> list[str]:
    """The cached label sets a run's training set reads: its ``dataroot_teacher``, or each task's, or each
    source's (paired and LR-only)."""
    train_set = opt['datasets']['train']
    sets = [train_set, *(train_set.get('tasks') or {}).values(), *(train_set.get('sources') or {}).values()]
    return [s[LABEL_ROOT] for s in sets if s.get(LABEL_ROOT)]


def uses_cached_labels(recipe: dict[str, Any]) -> bool:
    """Whether the recipe trains on cached teacher labels (``datasets.train.dataroot_teacher``, or a task's or a
    source's)."""
    return bool(label_roots(recipe))


def own_task_teachers(recipe: dict[str, Any]) -> list[str]:
    """The tasks of a multi-task training set that name a teacher other than ``path.pretrain_network_t``. Online,
    ``KDModel`` runs that one teacher on every sample, so a recipe with such tasks has no ``online_labels``
    variant (the pre-run check refuses the combination too)."""
    run_teacher = recipe['path'].get('pretrain_network_t')
    tasks = recipe['datasets']['train'].get('tasks') or {}
    return [name for name, task in tasks.items()
            if task.get('pretrain_network_t') and osp.normpath(task['pretrain_network_t']) != osp.normpath(
                run_teacher or '')]


def without_cached_labels(opt: dict[str, Any]) -> None:
    """Drop the cached labels from ``opt``'s training set (in place): BasicSR's plain paired dataset, a
    multi-task set of plain paired sets, or a ``MixedKDDataset`` of its paired sources alone without labels (an
    LR-only source has no target without them). ``ValueError`` for a mixture that has no paired source."""
    train_set = opt['datasets']['train']
    lr_only = lr_only_sources(opt)
    if lr_only:
        paired = {name: source for name, source in train_set['sources'].items() if has_gt(source)}
        if not paired:
            raise ValueError(f'datasets.train.sources: {", ".join(lr_only)} are LR-only and no source is paired, so '
                             'a student alone (the ablation\'s baselines) has nothing to train on. Fix: add a paired '
                             'source (dataroot_gt, dataroot_lq), or ablate without the baselines')
        train_set['sources'] = paired
    for part in [*(train_set.get('tasks') or {}).values(), *(train_set.get('sources') or {}).values()]:
        part.pop(LABEL_ROOT, None)
    if train_set.pop(LABEL_ROOT, None) and train_set.get('type') == 'KDPairedImageDataset':
        train_set['type'] = 'PairedImageDataset'


def ingredients(recipe: dict[str, Any]) -> list[str]:
    """The distillation ingredients the recipe configures, in ``KD_INGREDIENTS`` order."""
    return [key for key in KD_INGREDIENTS if recipe['train'].get(key)]


def needs_gt_everywhere(variant: str) -> bool:
    """Whether ``variant`` is refused beside LR-only sources (``check_lr_only_terms``): ECO (its target mixes in
    the GT), and a KD run without output distillation (the LR-only samples' only target)."""
    return (variant in ECO_VARIANTS or SINGLE_TERMS.get(variant, 'distill_opt') != 'distill_opt'
            or variant == 'recipe_without_distill_opt')


def available_variants(recipe: dict[str, Any]) -> list[str]:
    """Every variant that makes sense for ``recipe``. With LR-only sources: no ``online_labels`` (such a source
    cannot do without its labels: ``MixedKDDataset`` refuses it) and none that needs the GT of every sample."""
    have = ingredients(recipe)
    lr_only = lr_only_sources(recipe)
    names = ['no_kd', 'no_kd_equal_time']
    if recipe['path'].get('pretrain_network_g'):
        names.append('init_only')
    if len(have) > 1:
        names += [v for v, term in SINGLE_TERMS.items() if term in have]
        names += [f'recipe_without_{key}' for key in have]
    if uses_cached_labels(recipe) and not own_task_teachers(recipe) and not lr_only:
        names.append('online_labels')
    names += [*ECO_VARIANTS, 'recipe']
    return [name for name in names if not (lr_only and needs_gt_everywhere(name))]


def default_variants(recipe: dict[str, Any]) -> list[str]:
    """What an honest table needs: the baselines and the recipe."""
    return [v for v in available_variants(recipe) if v in BASELINES or v == 'recipe']


def run_name(recipe: dict[str, Any], variant: str, seed: int) -> str:
    return f'{recipe["name"]}_ablation_{variant}_s{seed}'


def variant_options(recipe: dict[str, Any], variant: str, seed: int, total_iter: int | None = None) -> dict[str, Any]:
    """The options of one run of the ablation (``total_iter``: the run's iterations, default the recipe's)."""
    if variant not in available_variants(recipe):
        raise ValueError(f'variant {variant!r} does not apply to {recipe["name"]}; choose from '
                         f'{", ".join(available_variants(recipe))}')
    opt = deepcopy(recipe)
    opt['name'] = run_name(recipe, variant, seed)
    opt['manual_seed'] = seed
    opt.pop('val', None)
    train = opt['train']
    if variant in BASELINES or variant in ECO_VARIANTS:
        keep = ()
    elif variant in SINGLE_TERMS:
        keep = (SINGLE_TERMS[variant],)
    elif variant.startswith('recipe_without_'):
        keep = tuple(k for k in ingredients(recipe) if k != variant[len('recipe_without_'):])
    else:
        keep = tuple(ingredients(recipe))
    for key in KD_INGREDIENTS:
        if key not in keep:
            train.pop(key, None)
    if variant in BASELINES or variant == 'online_labels':
        without_cached_labels(opt)
    if variant in BASELINES:
        opt['model_type'] = 'SRModel'
        train['pixel_opt'] = baseline_pixel_loss(recipe)
        opt.pop('network_t', None)
        for key in ('teacher', 'optim_adapters', 'nan_policy'):
            train.pop(key, None)
        for key in [k for k in opt['path'] if k.endswith('_t') or k.endswith('_adapters')]:
            opt['path'].pop(key)
        if variant != 'init_only':
            opt['path']['pretrain_network_g'] = None
    if variant in ECO_VARIANTS:
        train['pixel_opt'] = baseline_pixel_loss(recipe)
        train['eco'] = {'end_ratio': (recipe['train'].get('eco') or {}).get('end_ratio', ECO_END_RATIO),
                        'mode': ECO_VARIANTS[variant]}
    if total_iter and total_iter != train['total_iter']:
        opt = with_total_iter(opt, total_iter)
    return opt
