"""Train every variant for every seed, score the final students, write the table (the library behind
``python -m kd_plugin.cli.ablation``).

See :mod:`kd_plugin.ablation` for what is trained and :mod:`kd_plugin.ablation.seed_stats` for how the
table is computed.
"""
import copy
import json
import os
import statistics
import time
from os import path as osp
from typing import Any

from kd_plugin.ablation.equal_time import equal_time_record
from kd_plugin.ablation.seed_stats import mean_std, paired_delta
from kd_plugin.ablation.variants import (
    BASELINES,
    DEFAULT_PIXEL_LOSS,
    available_variants,
    default_variants,
    label_roots,
    run_name,
    uses_cached_labels,
    variant_options,
)
from kd_plugin.benchmark.quality import bicubic_upscaler, evaluate, load_test_set, resolve_set
from kd_plugin.checkpoint_io import sha256
from kd_plugin.data.label_cache import build_seconds, read_manifest
from kd_plugin.device import pick_device
from kd_plugin.model_loading import ModelSpec, load_model, network_upscaler
from kd_plugin.models.kd_model import is_kd_model
from kd_plugin.runs import (
    experiment_dir,
    from_project_root,
    latest_weights,
    launch_train,
    load_options,
    training_seconds,
    write_options,
)


def logs(name: str) -> str:
    folder = experiment_dir(name)
    return ''.join(open(osp.join(folder, f)).read() for f in sorted(os.listdir(folder))
                   if f.startswith('train_') and f.endswith('.log')) if osp.isdir(folder) else ''


#: Top-level option sections that do not change what a run trains (and the run's own name).
_NOT_TRAINED = ('name', 'logger', 'dist_params')
#: Checkpoints a run starts from; their SHA-256 goes into the run's options (``checkpoint_sha256``).
_START_CHECKPOINTS = ('pretrain_network_t', 'pretrain_network_g', 'pretrain_network_adapters')


def with_checkpoint_checksums(opt: dict[str, Any]) -> dict[str, Any]:
    """``opt`` with ``checkpoint_sha256: {path.<key>: <sha256>}`` for every checkpoint the run starts from
    (teacher, initial student, initial adapters), so that a finished run distilled from another file
    at the same path is told apart. Relative paths are read from the project root, where runs start."""
    sums = {f'path.{key}': sha256(from_project_root(opt['path'][key]))
            for key in _START_CHECKPOINTS if opt['path'].get(key)}
    for name, task in (opt['datasets']['train'].get('tasks') or {}).items():
        if task.get('pretrain_network_t'):
            sums[f'datasets.train.tasks.{name}.pretrain_network_t'] = sha256(
                from_project_root(task['pretrain_network_t']))
    return dict(opt, checkpoint_sha256=sums) if sums else opt


def _what_trains(opt: dict[str, Any]) -> dict[str, Any]:
    kept = {k: v for k, v in opt.items() if k not in _NOT_TRAINED}
    kept['path'] = {k: v for k, v in (opt.get('path') or {}).items() if k != 'resume_state'}
    return kept


def finished(opt: dict[str, Any]) -> bool:
    """Whether ``experiments/<name>`` holds a finished run of exactly these options: everything that
    changes what is trained (archs, data, losses, schedule, seed, checkpoint paths and their SHA-256)
    must agree; only the name, logger and DDP port may differ.

    A finished run of *other* options is never reused or overwritten: that raises."""
    folder = experiment_dir(opt['name'])
    if not osp.isfile(latest_weights(opt['name'])) or 'End of training' not in logs(opt['name']):
        return False
    done, wanted = _what_trains(load_options(osp.join(folder, f'{opt["name"]}.yml'))), _what_trains(opt)
    differ = [key for key in dict.fromkeys([*wanted, *done]) if done.get(key) != wanted.get(key)]
    if differ:
        raise RuntimeError(f'[ablation] experiments/{opt["name"]} holds a finished run with different '
                           f'{", ".join(differ)}. Fix: move that folder away, or give the KD options file another name')
    return True


def train_run(opt: dict[str, Any], options_dir: str) -> None:
    """Run (or continue) one run through ``kd_plugin/cli/train.py``; raises if it fails."""
    if finished(opt):
        print(f'[ablation] {opt["name"]}: finished earlier, skipped', flush=True)
        return
    path = write_options(opt, options_dir)
    print(f'[ablation] training {opt["name"]} ({path})', flush=True)
    status, _ = launch_train(path, '--auto_resume')
    if status != 0:
        raise RuntimeError(f'[ablation] {opt["name"]} failed; fix the cause and rerun the same command '
                           '(finished runs are skipped, this one resumes)')


def plan(variants: list[str], seeds: list[int]) -> list[tuple[str, int]]:
    """Training order: seed by seed, in the order of ``variants``, except that a seed's equal-time
    baseline trains after its recipe, whose measured time it is given."""
    order = list(variants)
    if 'no_kd_equal_time' in order and 'recipe' in order:
        order.remove('no_kd_equal_time')
        order.insert(order.index('recipe') + 1, 'no_kd_equal_time')
    return [(v, s) for s in seeds for v in order]


def options_for(recipe: dict[str, Any], variant: str, seed: int, total_iter: int, out: str) -> dict[str, Any]:
    """One run's options, with the checksums of the checkpoints it starts from; ``total_iter``: the
    recipe's iterations in this ablation.

    The equal-time baseline (``no_kd_equal_time``) trains for the iterations that fit in the measured
    training time of the same seed's finished recipe run plus, for a recipe on cached labels, the whole time
    their build took (:func:`label_seconds`: every seed is charged all of it, as a researcher training one
    student pays it), at the student's cost per iteration (:func:`student_iteration_seconds`), as sized once in
    ``<out>/equal_time_runs.json`` (:func:`equal_time_sizing`); ``RuntimeError`` when that recipe run has not
    finished."""
    if variant == 'no_kd_equal_time':
        total_iter = equal_time_sizing(recipe, seed, total_iter, out)['total_iter']
    return with_checkpoint_checksums(variant_options(recipe, variant, seed, total_iter))


def equal_time_target(recipe: dict[str, Any], seed: int, total_iter: int, out: str) -> float:
    """Seconds the student alone of ``seed`` is given: the finished recipe run's measured training time plus its
    labels' build time; ``RuntimeError`` when that run has not finished."""
    recipe_run = options_for(recipe, 'recipe', seed, total_iter, out)
    if not finished(recipe_run):
        raise RuntimeError(f'[ablation] no_kd_equal_time (seed {seed}) is given the measured training time of '
                           f'experiments/{recipe_run["name"]}, which has not finished: train the recipe first '
                           '(--variants ... recipe; the runner orders it before the baseline)')
    return training_seconds(recipe_run['name']) + label_seconds(recipe)


def student_iteration_seconds(recipe: dict[str, Any], seed: int, total_iter: int, out: str) -> tuple[float, str]:
    """The student alone's seconds per iteration and where they come from: the same seed's finished ``no_kd`` run
    (its measured training time over its iterations: a whole run, measured as the recipe's time is); for a
    ``--total-iter`` ablation without one, the same seed's finished ``no_kd`` run of the file's own schedule
    (:func:`other_schedule_no_kd`); else the timing of ``<out>/equal_time.json`` (a few blocks of iterations
    before training, which was 23 % off a run's own time once)."""
    alone = options_for(recipe, 'no_kd', seed, total_iter, out)
    if not finished(alone):
        alone = other_schedule_no_kd(recipe, seed, total_iter, out)  # finished, or None
    if alone is not None:
        return training_seconds(alone['name']) / alone['train']['total_iter'], f'experiments/{alone["name"]}'
    record = equal_time_record(recipe, total_iter, osp.join(out, 'equal_time.json'))
    return record['student_iteration_s'], 'equal_time.json'


def other_schedule_no_kd(recipe: dict[str, Any], seed: int, total_iter: int, out: str) -> dict[str, Any] | None:
    """For a recipe renamed ``<name>_<total_iter>it`` by ``--total-iter``: the options of the same seed's finished
    ``no_kd`` run of ``<name>`` (the options file's own schedule), where one is there and trained exactly these
    options but for its length; else None. An iteration costs the same in a run of any length, and a whole run
    measures it as the recipe's time is measured."""
    suffix = f'_{total_iter}it'
    if not recipe['name'].endswith(suffix):
        return None
    base = dict(recipe, name=recipe['name'][:-len(suffix)])
    saved = osp.join(experiment_dir(run_name(base, 'no_kd', seed)), f'{run_name(base, "no_kd", seed)}.yml')
    if not osp.isfile(saved):
        return None
    alone = options_for(base, 'no_kd', seed, load_options(saved)['train']['total_iter'], out)
    try:
        return alone if finished(alone) else None
    except RuntimeError:  # a finished run of other options: not this student's timing
        return None


def _sizing_file(out: str) -> str:
    return osp.join(out, 'equal_time_runs.json')


def _read_sizing(out: str) -> dict[str, Any]:
    path = _sizing_file(out)
    return json.load(open(path)) if osp.isfile(path) else {}


def _write_sizing(out: str, sizing: dict[str, Any]) -> None:
    os.makedirs(out, exist_ok=True)
    with open(_sizing_file(out), 'w') as f:
        json.dump(sizing, f, indent=1)


def equal_time_sizing(recipe: dict[str, Any], seed: int, total_iter: int, out: str) -> dict[str, Any]:
    """How many iterations the student alone of ``seed`` trains: decided once (``<out>/equal_time_runs.json``, so a
    later invocation finds the same finished run), from :func:`equal_time_target` and
    :func:`student_iteration_seconds`."""
    name = run_name(recipe, 'no_kd_equal_time', seed)
    sizing = _read_sizing(out)
    if name not in sizing:
        target = equal_time_target(recipe, seed, total_iter, out)
        per_iteration, source = student_iteration_seconds(recipe, seed, total_iter, out)
        sizing[name] = {'total_iter': max(round(target / per_iteration), 1), 'target_s': target,
                        'student_iteration_s': per_iteration, 'from': source}
        _write_sizing(out, sizing)
    return sizing[name]


#: Below this many seconds a run's measured time is mostly start-up noise: the equal-time baseline is not resized.
MIN_RESIZED_SECONDS = 60.0


def keep_equal_time(recipe: dict[str, Any], seed: int, total_iter: int, out: str, options_dir: str) -> None:
    """After the equal-time baseline of ``seed`` trained: where its measured time is off the recipe's (training plus
    labels) by more than ``EQUAL_TIME_TOLERANCE``, train it once more for ``iterations * target / measured``. The
    first attempt is kept, moved to ``experiments/<name>_attempt1``; the new size is recorded, so the next
    invocation skips the finished run."""
    name = run_name(recipe, 'no_kd_equal_time', seed)
    entry = equal_time_sizing(recipe, seed, total_iter, out)
    measured, target = training_seconds(name), entry['target_s']
    if entry.get('attempts') or target < MIN_RESIZED_SECONDS or abs(measured / target - 1) <= EQUAL_TIME_TOLERANCE:
        return
    resized = max(round(entry['total_iter'] * target / measured), 1)
    print(f'[ablation] {name}: trained {measured:.0f} s against the recipe\'s {target:.0f} s '
          f'({measured / target:.2f}x, outside ±{EQUAL_TIME_TOLERANCE:.0%}); training it again for {resized} '
          f'iterations instead of {entry["total_iter"]} (first attempt kept in experiments/{name}_attempt1)',
          flush=True)
    os.replace(experiment_dir(name), experiment_dir(f'{name}_attempt1'))
    sizing = _read_sizing(out)
    sizing[name] = dict(entry, total_iter=resized,
                        attempts=[{'total_iter': entry['total_iter'], 'measured_s': measured}])
    _write_sizing(out, sizing)
    train_run(options_for(recipe, 'no_kd_equal_time', seed, total_iter, out), options_dir)


def teacher_entries(recipe: dict[str, Any]) -> dict[str, ModelSpec]:
    """The teacher rows of the table: ``teacher`` (``network_t``), and for a multi-task recipe ``teacher <task>``
    for each task with a teacher of its own."""
    rows = {'teacher': ModelSpec('teacher', recipe['network_t'], recipe['path']['pretrain_network_t'],
                                 recipe['path'].get('param_key_t'))}
    for name, task in (recipe['datasets']['train'].get('tasks') or {}).items():
        if task.get('pretrain_network_t'):
            rows[f'teacher {name}'] = ModelSpec(f'teacher {name}', recipe['network_t'], task['pretrain_network_t'],
                                                task.get('param_key_t'))
    return rows


def score(recipe: dict[str, Any], runs: list[tuple[str, int]], sets: list[str], data_root: str,
          cache_path: str) -> dict[str, dict[str, float]]:
    """``{run: {<set>_psnr, <set>_ssim}}`` for bicubic, the teacher and every run's final student.

    Scores are cached in ``cache_path`` by checkpoint (path, size, modification time)."""
    scale = recipe['scale']
    cache = json.load(open(cache_path)) if osp.isfile(cache_path) else {}
    device = pick_device('auto')
    test_sets = {osp.basename(osp.normpath(s)): resolve_set(s, data_root) for s in sets}
    entries: dict[str, ModelSpec | None] = {'bicubic': None, **teacher_entries(recipe)}
    for variant, seed in runs:
        name = run_name(recipe, variant, seed)
        entries[name] = ModelSpec(name, recipe['network_g'], latest_weights(name), 'params')
    loaded = {}
    scores = {}
    for label, spec in entries.items():
        stamp = 'bicubic' if spec is None else f'{spec.checkpoint}:{os.path.getsize(spec.checkpoint)}:' \
                                                f'{os.path.getmtime(spec.checkpoint)}'
        key = f'{label}|{stamp}|{json.dumps(sorted(test_sets.items()))}'
        if key not in cache:
            start = time.perf_counter()
            upscale = bicubic_upscaler(scale) if spec is None else network_upscaler(load_model(spec).to(device),
                                                                                    device)
            row = {}
            for set_name, folder in test_sets.items():
                if folder not in loaded:
                    loaded[folder] = load_test_set(folder, scale)
                result = evaluate(upscale, loaded[folder], scale)
                row[f'{set_name}_psnr'], row[f'{set_name}_ssim'] = result['psnr'], result['ssim']
            cache[key] = row
            with open(cache_path, 'w') as f:
                json.dump(cache, f, indent=1)
            print(f'[ablation] scored {label} on {", ".join(test_sets)} ({time.perf_counter() - start:.0f} s)',
                  flush=True)
        scores[label] = cache[key]
    return scores


def _delta_cell(values: dict[int, float], reference: dict[int, float]) -> dict[str, Any] | None:
    delta = paired_delta(values, reference)
    return None if delta is None else {'mean': delta.mean, 'se': delta.se, 'n': delta.n,
                                       'within_noise': delta.within_noise, 'text': str(delta)}


def summarise(recipe: dict[str, Any], variants: list[str], seeds: list[int], scores: dict,
              set_names: list[str], trained: dict[str, tuple[int, float]]) -> list[dict[str, Any]]:
    """One row per variant: per set the seeds' values, mean, std and the paired Δ against ``no_kd``.

    ``trained``: run name -> (iterations, training minutes, label-building minutes charged to the run)."""
    fixed = ['bicubic', *teacher_entries(recipe)]
    rows = [{'run': label, **{f'{s}_{m}': {'mean': scores[label][f'{s}_{m}'], 'std': None, 'values': {}}
                              for s in set_names for m in ('psnr', 'ssim')}} for label in fixed]
    per_seed = {v: {s: scores[run_name(recipe, v, s)] for s in seeds} for v in variants}
    for v in variants:
        names = [run_name(recipe, v, s) for s in seeds]
        row: dict[str, Any] = {'run': v, 'seeds': seeds,
                               'minutes': statistics.mean(trained[n][1] for n in names),
                               'minutes_per_seed': {s: trained[n][1] for s, n in zip(seeds, names)},
                               'label_minutes': statistics.mean(trained[n][2] for n in names),
                               'iterations': sorted({trained[n][0] for n in names})}
        for s_name in set_names:
            for metric in ('psnr', 'ssim'):
                key = f'{s_name}_{metric}'
                values = {seed: per_seed[v][seed][key] for seed in seeds}
                mean, std = mean_std(list(values.values()))
                cell = {'mean': mean, 'std': std, 'values': values}
                # Δ vs the student alone (every other row) and vs the student alone at equal time (KD rows)
                for reference, field in (('no_kd', 'delta'), ('no_kd_equal_time', 'delta_equal_time')):
                    if reference in per_seed and v != reference and (reference == 'no_kd' or v not in BASELINES):
                        cell[field] = _delta_cell(values, {seed: per_seed[reference][seed][key] for seed in seeds})
                row[key] = cell
        rows.append(row)
    return rows


#: The equal-time baseline's measured training time must be within this fraction of the recipe's.
EQUAL_TIME_TOLERANCE = 0.05


def total_minutes(row: dict[str, Any]) -> float:
    """A row's time: measured training plus the label building charged to it."""
    return row['minutes'] + row.get('label_minutes', 0.0)


def time_check(rows: list[dict[str, Any]]) -> str | None:
    """A line saying how the equal-time baseline's measured training time compares with the recipe's
    (its training plus its labels' build; mean over seeds), and whether it is within ±5 %; None without
    both rows."""
    minutes = {r['run']: total_minutes(r) for r in rows if 'minutes' in r}
    if 'no_kd_equal_time' not in minutes or 'recipe' not in minutes:
        return None
    ratio = minutes['no_kd_equal_time'] / minutes['recipe']
    verdict = 'within' if abs(ratio - 1) <= EQUAL_TIME_TOLERANCE else '**outside**'
    return (f'Equal time: the student alone trained {minutes["no_kd_equal_time"]:.1f} min against the recipe\'s '
            f'{minutes["recipe"]:.1f} min (measured, labels included, mean over seeds): {ratio:.2f}x, {verdict} ±'
            f'{EQUAL_TIME_TOLERANCE:.0%}.')


def table(rows: list[dict[str, Any]], set_names: list[str], title: str, labels_note: str | None = None) -> str:
    recipe_minutes = next((total_minutes(r) for r in rows if r['run'] == 'recipe'), None)
    lines = [title, '', '| run | iterations | train min | labels min | x recipe time | ' + ' | '.join(
        f'{s} PSNR mean ± std (Δ vs no_kd ± SE; Δ vs equal time) / SSIM' for s in set_names) + ' |',
        '|---|---|---|---|---|' + '---|' * len(set_names)]
    for r in rows:
        cells = []
        for s in set_names:
            psnr, ssim = r[f'{s}_psnr'], r[f'{s}_ssim']
            text = f'{psnr["mean"]:.2f}' + (f' ± {psnr["std"]:.2f}' if psnr['std'] is not None else '')
            deltas = [psnr[f]['text'] for f in ('delta', 'delta_equal_time') if psnr.get(f)]
            if psnr.get('delta_equal_time'):
                deltas[-1] = f'equal time {deltas[-1]}'
            if deltas:
                text += f' ({"; ".join(deltas)})'
            cells.append(f'{text} / {ssim["mean"]:.4f}')
        iters = ', '.join(str(i) for i in r.get('iterations', [])) or ''
        minutes = f'{r["minutes"]:.1f}' if 'minutes' in r else ''
        labels = f'{r["label_minutes"]:.1f}' if r.get('label_minutes') else ''
        share = f'{total_minutes(r) / recipe_minutes:.2f}' if 'minutes' in r and recipe_minutes else ''
        lines.append(f'| {r["run"]} | {iters} | {minutes} | {labels} | {share} | ' + ' | '.join(cells) + ' |')
    notes = [note for note in (time_check(rows), labels_note) if note]
    return '\n'.join(lines + [''] * bool(notes) + notes) + '\n'


def label_seconds(opt: dict[str, Any]) -> float:
    """The time building the cached teacher labels of a run's options took (their manifests; every task's for a
    multi-task set), 0 for a run without them. The one rule of the ablation and the demo: a run on cached labels
    is charged the whole build time."""
    return sum(build_seconds(from_project_root(root)) for root in label_roots(opt))


def labels_note(recipe: dict[str, Any], variants: list[str]) -> str | None:
    """For a recipe on cached teacher labels, where one of ``variants`` reads them: what building them cost, and
    how that time is charged (None where no run reads labels: an ablation of baselines alone never builds them)."""
    if not uses_cached_labels(recipe) or not any(label_roots(variant_options(recipe, v, 0)) for v in variants):
        return None
    built = []
    for root in label_roots(recipe):
        manifest = read_manifest(from_project_root(root)) or {}
        built.append(f'{root} ({manifest.get("ensemble")}, {manifest.get("count")} images, built in '
                     f'{manifest.get("seconds")} s on {manifest.get("device")})')
    return (f'Teacher labels: {"; ".join(built)}, from their manifest.json. Every run that reads them is charged '
            'the whole build time (labels min), and the equal-time baseline of each seed is given the recipe run\'s '
            'training time plus that build time.')


def with_overrides(recipe: dict[str, Any], teacher: str | None, total_iter: int | None) -> dict[str, Any]:
    """The recipe with ``--teacher`` and ``--total-iter`` applied (a copy).

    Runs of another length are other runs: the name (hence every run's name and the default output
    folder) gets ``_<N>it``, so they never collide with the recipe's own finished runs."""
    recipe = copy.deepcopy(recipe)
    if teacher:
        recipe['path']['pretrain_network_t'] = teacher
    if total_iter and total_iter != recipe['train']['total_iter']:
        recipe['name'] = f'{recipe["name"]}_{total_iter}it'
    return recipe


def checked_request(recipe: dict[str, Any], variants: list[str] | None, seeds: list[int]) -> list[str]:
    """The variants to train (``None``: the defaults; ``['all']``: every one the recipe allows); ``ValueError``
    naming the option for a file that is not a KD recipe, a repeated seed or a variant that does not apply."""
    if not is_kd_model(recipe.get('model_type')) or 'network_t' not in recipe:
        raise ValueError('-opt: not a KD options file (model_type: KDModel or a subclass of it, with network_t)')
    if len(set(seeds)) != len(seeds):
        raise ValueError(f'--seeds {" ".join(map(str, seeds))}: a seed is repeated; give each seed once')
    allowed = available_variants(recipe)
    chosen = allowed if variants == ['all'] else variants or default_variants(recipe)
    unknown = [v for v in chosen if v not in allowed]
    if unknown:
        raise ValueError(f'--variants: {", ".join(unknown)} do(es) not apply to this recipe; choose from '
                         f'{", ".join(allowed)}')
    if 'no_kd_equal_time' in chosen and 'recipe' not in chosen:
        raise ValueError('--variants: no_kd_equal_time trains for the measured time of the recipe run of the same '
                         'seed; add recipe (a finished recipe run is not trained again)')
    return chosen


def run_ablation(recipe: dict[str, Any], source: str, variants: list[str], seeds: list[int], iters: int,
                 sets: list[str], data_root: str, out: str) -> str:
    """Train every variant for every seed (finished runs are skipped), score them on ``sets`` and write
    ``<out>/ablation.md`` and ``ablation.json``; returns the table. ``source``: the recipe's file, named in
    the title."""
    if not recipe['train'].get('pixel_opt') and any(v in BASELINES for v in variants):
        print(f'[ablation] the recipe has no train.pixel_opt: the student-alone baselines train with '
              f'{DEFAULT_PIXEL_LOSS["type"]} (weight {DEFAULT_PIXEL_LOSS["loss_weight"]:g}); the recipe and its '
              'other variants run without one, as the file says', flush=True)
    os.makedirs(osp.join(out, 'options'), exist_ok=True)
    runs = plan(variants, seeds)
    # without a no_kd run to measure the student on, timed once, before any training (parallel invocations share it)
    if 'no_kd_equal_time' in variants and 'no_kd' not in variants and any(
            other_schedule_no_kd(recipe, seed, iters, out) is None for seed in seeds):
        equal_time_record(recipe, iters, osp.join(out, 'equal_time.json'))
    trained = {}
    for variant, seed in runs:
        opt = options_for(recipe, variant, seed, iters, out)
        train_run(opt, osp.join(out, 'options'))
        if variant == 'no_kd_equal_time':
            keep_equal_time(recipe, seed, iters, out, osp.join(out, 'options'))
            opt = options_for(recipe, variant, seed, iters, out)
        trained[opt['name']] = (opt['train']['total_iter'], training_seconds(opt['name']) / 60,
                                label_seconds(opt) / 60)
    set_names = [osp.basename(osp.normpath(s)) for s in sets]
    scores = score(recipe, runs, sets, data_root, osp.join(out, 'scores.json'))
    variants = list(dict.fromkeys(variants))  # the table keeps the order asked for
    rows = summarise(recipe, variants, seeds, scores, set_names, trained)
    title = (f'{recipe["network_t"]["type"]} -> {recipe["network_g"]["type"]} x{recipe["scale"]} '
             f'({osp.basename(source)}), {iters} iterations (equal-time baseline: the iterations that fit in each '
             f'seed\'s measured recipe time at the student\'s cost per iteration, measured on the seed\'s no_kd run '
             f'where it trained, else timed in equal_time.json; equal_time_runs.json), seeds '
             f'{", ".join(map(str, seeds))}; Y-PSNR (dB) mean ± sample std over seeds, Δ = mean paired '
             f'difference to no_kd ± its standard error ("within noise" when |Δ| < 2 SE); SSIM mean; crop '
             f'{recipe["scale"]}, grey images on their own channel; train min = measured wall time of the training '
             'loop (log timestamps), mean over seeds; labels min = the build time of the cached teacher labels a run '
             'reads, charged in full to it; x recipe time = (train + labels) / the recipe\'s.')
    text = table(rows, set_names, title, labels_note(recipe, variants))
    with open(osp.join(out, 'ablation.md'), 'w') as f:
        f.write(text)
    with open(osp.join(out, 'ablation.json'), 'w') as f:
        json.dump({'options': source, 'total_iter': iters, 'seeds': seeds, 'rows': rows}, f, indent=1)
    return text
