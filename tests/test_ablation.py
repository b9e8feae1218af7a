"""``python -m kd_plugin.cli.ablation``: runs that differ only in their KD terms, seeds, statistics, a table."""
import json
import math
import os
import sys
from os import path as osp

import pytest
import torch
import yaml

from kd_plugin.ablation import equal_time, runner, variants
from kd_plugin.ablation.seed_stats import mean_std, paired_delta
from kd_plugin.checkpoint_io import sha256
from kd_plugin.cli import ablation as ablation_cli
from kd_plugin.device import speed_facts
from kd_plugin.models.kd_config import KD_INGREDIENTS
from kd_plugin.runs import training_seconds
from tests.helpers import ROOT, run, shared_data, tool_in_process, write_options
from tests.kd_fixtures import kd_options


def test_variants_differ_only_in_their_kd_terms(teacher, tiny_pairs):
    base = kd_options('abl', tiny_pairs, teacher)
    base['train']['pixel_opt'] = {'type': 'L1Loss', 'loss_weight': 1.0}
    names = variants.available_variants(base)
    assert names == ['no_kd', 'no_kd_equal_time', 'output', 'feature', 'forward', 'recipe_without_distill_opt',
                     'recipe_without_feature_opt', 'recipe_without_forward_opt', 'eco_hr_only', 'eco_full', 'recipe']
    opts = {v: variants.variant_options(base, v, seed=3, total_iter=8) for v in names}
    assert opts['no_kd']['model_type'] == 'SRModel' and 'network_t' not in opts['no_kd']
    assert 'pretrain_network_t' not in opts['no_kd']['path']
    expected = {'no_kd': set(), 'no_kd_equal_time': set(), 'output': {'distill_opt'}, 'feature': {'feature_opt'},
                'forward': {'forward_opt'}, 'recipe_without_distill_opt': {'feature_opt', 'forward_opt'},
                'recipe_without_feature_opt': {'distill_opt', 'forward_opt'},
                'recipe_without_forward_opt': {'distill_opt', 'feature_opt'},
                'recipe': {'distill_opt', 'feature_opt', 'forward_opt'}, 'eco_hr_only': {'eco'}, 'eco_full': {'eco'}}
    # ECO: the recipe's pixel loss on the schedule (end_ratio 0.75 unless the recipe sets one), nothing else of KD
    assert opts['eco_full']['train']['eco'] == {'end_ratio': 0.75, 'mode': 'full'}
    assert opts['eco_hr_only']['train']['eco'] == {'end_ratio': 0.75, 'mode': 'hr_only'}
    assert opts['eco_full']['model_type'] == 'KDModel' and opts['eco_full']['datasets'] == base['datasets']
    for v, opt in opts.items():
        assert {t for t in KD_INGREDIENTS if t in opt['train']} == expected[v], v
        rest = {k: x for k, x in opt['train'].items() if k not in KD_INGREDIENTS + ('teacher',)}
        assert rest == opts['no_kd']['train'], v
        assert opt['datasets'] == base['datasets'] and opt['manual_seed'] == 3 and 'val' not in opt
        assert opt['train']['total_iter'] == 8 and opt['name'] == f'abl_ablation_{v}_s3'
    assert 'forward_opt' in base['train'] and 'val' in base  # the recipe is not modified

    base['path']['pretrain_network_g'] = '/some/init.pth'
    assert 'init_only' in variants.available_variants(base)
    assert variants.variant_options(base, 'init_only', 0)['path']['pretrain_network_g'] == '/some/init.pth'
    assert variants.variant_options(base, 'no_kd', 0)['path']['pretrain_network_g'] is None
    assert variants.variant_options(base, 'recipe', 0)['path']['pretrain_network_g'] == '/some/init.pth'
    with pytest.raises(ValueError, match="variant 'outputs' does not apply"):
        variants.variant_options(base, 'outputs', 0)


def test_seed_statistics_match_a_hand_computation():
    mean, std = mean_std([30.1, 30.3, 30.2])
    assert mean == pytest.approx(30.2) and std == pytest.approx(0.1)
    assert mean_std([30.0]) == (30.0, None)
    # paired by seed: differences 0.2, 0.1, 0.3 -> mean 0.2, std 0.1, SE 0.1 / sqrt(3) = 0.0577
    delta = paired_delta({0: 30.3, 1: 30.2, 2: 30.6}, {0: 30.1, 1: 30.1, 2: 30.3})
    assert delta.mean == pytest.approx(0.2) and delta.se == pytest.approx(0.1 / math.sqrt(3)) and delta.n == 3
    assert not delta.within_noise and str(delta) == '+0.20 ± 0.06'
    # differences 0.1, -0.05, 0.04: mean 0.03, SE 0.0437 -> |0.03| < 2 SE
    small = paired_delta({0: 30.1, 1: 29.95, 2: 30.04}, {0: 30.0, 1: 30.0, 2: 30.0})
    assert small.within_noise and str(small) == '+0.03 ± 0.04, within noise'
    one = paired_delta({0: 30.2}, {0: 30.0, 1: 29.0})
    assert one.n == 1 and one.se is None and str(one) == '+0.20 (1 seed: no noise estimate)'


def test_ablation_runs_every_seed_writes_the_table_and_skips_finished_runs(teacher, tiny_pairs, exp_name, tmp_path):
    opt_path = write_options(str(tmp_path), kd_options(exp_name, tiny_pairs, teacher, total_iter=4))
    out = tmp_path / 'out'
    args = ['-opt', opt_path, '--sets', shared_data('Set5'), '--seeds', '0', '1', '--output', str(out)]
    first = run([sys.executable, '-m', 'kd_plugin.cli.ablation', *args], timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    result = json.load(open(out / 'ablation.json'))
    rows = {r['run']: r for r in result['rows']}
    assert list(rows) == ['bicubic', 'teacher', 'no_kd', 'no_kd_equal_time', 'recipe']
    assert abs(rows['bicubic']['Set5_psnr']['mean'] - 33.67) < 0.01  # published x2 bicubic on Set5: 33.66
    for v in ('no_kd', 'recipe', 'no_kd_equal_time'):
        for seed in (0, 1):
            name = f'{exp_name}_ablation_{v}_s{seed}'
            assert osp.isfile(osp.join(ROOT, 'experiments', name, 'models', 'net_g_latest.pth'))
    # the equal-time student of each seed ran the iterations that fit in that seed's recipe run's measured
    # training time, at the student's cost per iteration measured on the seed's no_kd run (nothing timed before)
    assert rows['recipe']['iterations'] == [4]
    assert not osp.exists(out / 'equal_time.json')
    sizing = json.load(open(out / 'equal_time_runs.json'))
    fits = set()
    for seed in (0, 1):  # at the student's cost per iteration measured on the same seed's no_kd run
        per_iteration = training_seconds(f'{exp_name}_ablation_no_kd_s{seed}') / 4
        entry = sizing[f'{exp_name}_ablation_no_kd_equal_time_s{seed}']
        assert entry['from'] == f'experiments/{exp_name}_ablation_no_kd_s{seed}'
        assert entry['student_iteration_s'] == pytest.approx(per_iteration)
        fits.add(max(round(training_seconds(f'{exp_name}_ablation_recipe_s{seed}') / per_iteration), 1))
        assert entry['total_iter'] in fits and 'attempts' not in entry  # a trial run's seconds: never resized
    assert rows['no_kd_equal_time']['iterations'] == sorted(fits)
    order = [line.split(' (')[0].split('[ablation] training ')[-1] for line in first.stdout.splitlines()
             if '[ablation] training ' in line]
    assert order == [f'{exp_name}_ablation_{v}_s{seed}' for seed in (0, 1)
                     for v in ('no_kd', 'recipe', 'no_kd_equal_time')]  # each seed's recipe before its baseline
    for v in ('no_kd', 'recipe', 'no_kd_equal_time'):  # each run's measured training time is in the table
        assert rows[v]['minutes'] > 0 and set(rows[v]['minutes_per_seed']) == {'0', '1'}
    cell = rows['recipe']['Set5_psnr']
    values = cell['values']
    assert cell['mean'] == pytest.approx((values['0'] + values['1']) / 2)
    baseline = rows['no_kd']['Set5_psnr']['values']
    d = [values[s] - baseline[s] for s in ('0', '1')]
    assert cell['delta']['mean'] == pytest.approx(sum(d) / 2)
    assert cell['delta']['se'] == pytest.approx(abs(d[0] - d[1]) / 2)  # std of 2 values / sqrt(2)
    table = open(out / 'ablation.md').read()
    assert '| recipe | 4 | ' in table and 'Equal time: the student alone trained' in table
    assert cell['delta_equal_time']['text'] and 'delta_equal_time' not in rows['no_kd_equal_time']['Set5_psnr']
    assert (f'{cell["mean"]:.2f} ± {cell["std"]:.2f} ({cell["delta"]["text"]}; equal time '
            f'{cell["delta_equal_time"]["text"]})') in table

    assert f'[ablation] scored {exp_name}_ablation_recipe_s1 on Set5' in first.stdout  # a line per model scored
    again = tool_in_process(ablation_cli.main, *args)  # in this process: one start-up less
    assert again.returncode == 0 and again.stdout.count('finished earlier, skipped') == 6
    assert json.load(open(out / 'ablation.json'))['rows'] == result['rows']


@pytest.mark.parametrize('extra,needle', [
    (['--seeds', '0', '1', '0'], 'error: ablation: --seeds 0 1 0: a seed is repeated'),
    (['--variants', 'init_only'],
     'error: ablation: --variants: init_only do(es) not apply to this recipe; choose from no_kd'),
    (['--variants', 'no_kd', 'no_kd_equal_time'],
     'error: ablation: --variants: no_kd_equal_time trains for the measured time of the recipe run of the same '
     'seed; add recipe'),
])
def test_bad_ablation_arguments_are_refused_before_any_training(teacher, tiny_pairs, exp_name, tmp_path, extra,
                                                                 needle):
    opt_path = write_options(str(tmp_path), kd_options(exp_name, tiny_pairs, teacher, total_iter=2))
    result = tool_in_process(ablation_cli.main, '-opt', opt_path, *extra)
    assert result.returncode == 2 and needle in result.stderr, result.stderr[-2000:]
    assert not [d for d in os.listdir(osp.join(ROOT, 'experiments')) if d.startswith(exp_name)]


def test_a_finished_run_with_other_options_is_not_reused(teacher, tiny_pairs, exp_name):
    base = kd_options(exp_name, tiny_pairs, teacher, total_iter=2)
    opt = variants.variant_options(base, 'no_kd', 0)
    folder = osp.join(ROOT, 'experiments', opt['name'])
    os.makedirs(osp.join(folder, 'models'))
    open(osp.join(folder, 'models', 'net_g_latest.pth'), 'w').close()
    open(osp.join(folder, 'train_x.log'), 'w').write('End of training')
    with open(osp.join(folder, f'{opt["name"]}.yml'), 'w') as f:
        yaml.safe_dump(dict(opt, train=dict(opt['train'], total_iter=99)), f)
    with pytest.raises(RuntimeError, match='holds a finished run with different train'):
        runner.finished(opt)
    assert runner.finished(dict(opt, train=dict(opt['train'], total_iter=99)))


def test_another_length_gets_other_run_names(teacher, tiny_pairs):
    base = kd_options('abl', tiny_pairs, teacher, total_iter=4)
    same = runner.with_overrides(base, None, 4)
    assert variants.run_name(same, 'no_kd', 0) == 'abl_ablation_no_kd_s0'
    longer = runner.with_overrides(base, '/other/teacher.pth', 3000)
    assert variants.run_name(longer, 'no_kd', 0) == 'abl_3000it_ablation_no_kd_s0'
    assert longer['path']['pretrain_network_t'] == '/other/teacher.pth'
    assert base['name'] == 'abl' and base['path']['pretrain_network_t'] == teacher  # the recipe is not modified


def test_the_recipe_variant_is_the_file_as_written_and_only_baselines_get_a_pixel_loss(teacher, tiny_pairs):
    """A distillation-only recipe used to be ablated (and timed) with an L1 pixel loss it does not have."""
    recipe = kd_options('abl', tiny_pairs, teacher, total_iter=4)
    recipe['train'].pop('pixel_opt')
    opts = {v: variants.variant_options(recipe, v, seed=0) for v in variants.available_variants(recipe)}
    untouched = ('name', 'manual_seed', 'val')
    assert {k: x for k, x in opts['recipe'].items() if k not in untouched} == \
        {k: x for k, x in recipe.items() if k not in untouched}
    for v in ('no_kd', 'no_kd_equal_time'):
        assert opts[v]['train']['pixel_opt'] == variants.DEFAULT_PIXEL_LOSS
    for v in ('output', 'feature', 'forward', 'recipe_without_distill_opt'):
        assert 'pixel_opt' not in opts[v]['train'], v
    recipe['train']['pixel_opt'] = {'type': 'CharbonnierLoss', 'loss_weight': 0.5}
    assert variants.variant_options(recipe, 'no_kd', 0)['train']['pixel_opt'] == recipe['train']['pixel_opt']
    assert variants.variant_options(recipe, 'recipe', 0)['train']['pixel_opt'] == recipe['train']['pixel_opt']


def _fake_finished(opt):
    """``experiments/<name>`` as a finished run of ``opt`` leaves it (the saved options, a log line, net_g)."""
    folder = osp.join(ROOT, 'experiments', opt['name'])
    os.makedirs(osp.join(folder, 'models'))
    open(osp.join(folder, 'models', 'net_g_latest.pth'), 'w').close()
    open(osp.join(folder, 'train_x.log'), 'w').write('End of training')
    with open(osp.join(folder, f'{opt["name"]}.yml'), 'w') as f:
        yaml.safe_dump(opt, f)


def test_a_finished_run_from_another_teacher_or_initialisation_is_not_reused(teacher, tiny_pairs, exp_name, tmp_path):
    """``--teacher`` (or a retrained file at the same path) changed the teacher but not the run names: the
    table then put the new teacher's row beside students distilled from the old one."""
    import shutil

    from tests.kd_fixtures import save_teacher

    mine = shutil.copy(teacher, tmp_path / 'teacher.pth')
    recipe = kd_options(exp_name, tiny_pairs, str(mine), total_iter=2)
    recipe['path']['pretrain_network_g'] = str(shutil.copy(teacher, tmp_path / 'init.pth'))
    opt = runner.options_for(recipe, 'recipe', 0, 2, str(tmp_path))
    assert opt['checkpoint_sha256'] == {'path.pretrain_network_t': sha256(mine),
                                        'path.pretrain_network_g': sha256(tmp_path / 'init.pth')}
    _fake_finished(opt)
    assert runner.finished(runner.options_for(recipe, 'recipe', 0, 2, str(tmp_path)))
    other = save_teacher(str(tmp_path / 'other'), seed=1)
    with pytest.raises(RuntimeError, match='holds a finished run with different path, checkpoint_sha256'):
        runner.finished(runner.options_for(runner.with_overrides(recipe, other, None), 'recipe', 0, 2, str(tmp_path)))
    shutil.copy(other, mine)  # retrained in place: same path, other weights
    with pytest.raises(RuntimeError, match='holds a finished run with different checkpoint_sha256'):
        runner.finished(runner.options_for(recipe, 'recipe', 0, 2, str(tmp_path)))

    init_only = runner.options_for(recipe, 'init_only', 0, 2, str(tmp_path))
    assert set(init_only['checkpoint_sha256']) == {'path.pretrain_network_g'}
    _fake_finished(init_only)
    shutil.copy(other, tmp_path / 'init.pth')
    with pytest.raises(RuntimeError, match='holds a finished run with different checkpoint_sha256'):
        runner.finished(runner.options_for(recipe, 'init_only', 0, 2, str(tmp_path)))


def test_equal_time_is_timed_on_whole_iterations_data_loading_included(teacher, tiny_pairs):
    """The old ratio timed optimize_parameters on a preloaded batch: data loading, a fixed part of every
    iteration, was left out and the KD step's relative cost came out too high."""
    import time as clock

    from basicsr.data.paired_image_dataset import PairedImageDataset
    from basicsr.utils.registry import DATASET_REGISTRY

    class _SlowPairs(PairedImageDataset):
        def __getitem__(self, index):
            clock.sleep(0.1)
            return super().__getitem__(index)

    if '_SlowPairs' not in DATASET_REGISTRY:
        DATASET_REGISTRY._do_register('_SlowPairs', _SlowPairs)
    recipe = kd_options('abl', tiny_pairs, teacher, total_iter=4)
    recipe['datasets']['train'].update(type='_SlowPairs', batch_size_per_gpu=2, num_worker_per_gpu=0)
    seconds = equal_time.iteration_seconds({v: variants.variant_options(recipe, v, 0) for v in ('recipe', 'no_kd')},
                                           blocks=1, block=2)
    assert all(s >= 0.2 for s in seconds.values()), seconds  # two samples of 0.1 s each, in every iteration


def test_equal_time_record_is_tied_to_the_recipe_and_retimed_when_it_changes(teacher, tiny_pairs, tmp_path,
                                                                             monkeypatch):
    timed = []

    def fake_measure(recipe, block):
        timed.append(block)
        return {'recipe_sha256': equal_time.recipe_digest(recipe), 'ratio': 1.5,
                'student_iteration_s': 0.2 + 0.05 * len(timed), 'machine': speed_facts(torch.device('cpu'))}

    monkeypatch.setattr(equal_time, 'measure_ratio', fake_measure)
    record = str(tmp_path / 'equal_time.json')
    recipe = kd_options('abl', tiny_pairs, teacher, total_iter=4)
    # 100 s of the recipe's measured time buy the student alone 100 / 0.25 iterations
    assert equal_time.iterations_in(100, equal_time.equal_time_record(recipe, 100, record)) == 400 and len(timed) == 1
    assert equal_time.iterations_in(100, equal_time.equal_time_record(recipe, 100, record)) == 400 and \
        len(timed) == 1  # reused
    recipe['train']['distill_opt']['loss_weight'] = 0.5  # an edited recipe costs something else: timed again
    assert equal_time.iterations_in(90, equal_time.equal_time_record(recipe, 100, record)) == 300 and len(timed) == 2
    assert json.load(open(record))['recipe_sha256'] == equal_time.recipe_digest(recipe)
    # never a run of no iterations
    assert equal_time.iterations_in(0.01, equal_time.equal_time_record(recipe, 100, record)) == 1
    assert timed == [equal_time.BLOCK] * 2  # a 100-iteration recipe: full blocks


def test_equal_time_record_from_another_machine_is_timed_again_saying_why(teacher, tiny_pairs, tmp_path, monkeypatch,
                                                                        capsys):
    recipe = kd_options('abl', tiny_pairs, teacher, total_iter=4)
    here = speed_facts(torch.device('cpu'))
    monkeypatch.setattr(equal_time, 'measure_ratio', lambda recipe, block: {
        'recipe_sha256': equal_time.recipe_digest(recipe), 'student_iteration_s': 0.5, 'machine': here})
    record = tmp_path / 'equal_time.json'
    # each "other" value differs from this machine's, whatever it is (an AVX2-only CPU has just ['avx2', 'fma'])
    for key, other in (('threads', here['threads'] + 2), ('torch', here['torch'] + '-other'),
                       ('cpu_flags', here['cpu_flags'][:-1] if here['cpu_flags'] else ['avx2']),
                       ('cpu', 'Intel(R) Xeon(R) Platinum 8480+'), ('device', 'NVIDIA H100 80GB HBM3')):
        json.dump({'recipe_sha256': equal_time.recipe_digest(recipe), 'student_iteration_s': 0.1,
                   'machine': {**here, key: other}}, open(record, 'w'))
        assert equal_time.equal_time_record(recipe, 4, str(record))['student_iteration_s'] == 0.5, key
        printed = capsys.readouterr().out.strip().splitlines()
        assert printed[0] == (f'equal time: timing again ({record}): timed on another machine ({key} {other!r} -> '
                              f'{here[key]!r})'), key
        assert printed[1].startswith('equal time: timing whole training iterations') and len(printed) == 2
    assert json.load(open(record))['machine'] == here
    assert equal_time.equal_time_record(recipe, 4, str(record))['student_iteration_s'] == 0.5  # same machine: kept
    assert capsys.readouterr().out == ''


def test_a_trial_run_is_timed_in_blocks_of_its_own_length(teacher, tiny_pairs, tmp_path, monkeypatch):
    """A 4-iteration recipe is timed in blocks of 4 iterations (not 40), so a trial run is not held up by
    minutes of timing."""
    timed = []

    def fake_seconds(opts, blocks=5, block=equal_time.BLOCK, skip=None):
        timed.append((sorted(opts), blocks, block))
        return {'recipe': 0.3, 'student': 0.2}

    monkeypatch.setattr(equal_time, 'iteration_seconds', fake_seconds)
    recipe = kd_options('abl', tiny_pairs, teacher, total_iter=4)
    record = str(tmp_path / 'equal_time.json')
    assert equal_time.equal_time_record(recipe, 4, record)['ratio'] == pytest.approx(1.5)
    assert timed == [(['recipe', 'student'], 5, 4)] and json.load(open(record))['block'] == 4


def test_the_equal_time_baseline_needs_its_seeds_finished_recipe_and_trains_after_it(teacher, tiny_pairs,
                                                                                     exp_name, tmp_path):
    assert runner.plan(['no_kd_equal_time', 'no_kd', 'recipe'], [0, 1]) == [
        ('no_kd', 0), ('recipe', 0), ('no_kd_equal_time', 0), ('no_kd', 1), ('recipe', 1), ('no_kd_equal_time', 1)]
    recipe = kd_options(exp_name, tiny_pairs, teacher, total_iter=2)
    with pytest.raises(RuntimeError, match=f'experiments/{exp_name}_ablation_recipe_s0, which has not finished'):
        runner.options_for(recipe, 'no_kd_equal_time', 0, 2, str(tmp_path))
    assert not osp.exists(tmp_path / 'equal_time.json')  # refused before any timing


def test_a_schedule_shorter_than_the_timing_is_stretched_for_it(teacher, tiny_pairs):
    recipe = kd_options('abl', tiny_pairs, teacher, total_iter=4)
    # BasicSR's cosine restarts fail past the end of their periods
    recipe['train']['scheduler'] = {'type': 'CosineAnnealingRestartLR', 'periods': [4], 'restart_weights': [1],
                                    'eta_min': 1e-7}
    seconds = equal_time.iteration_seconds({'recipe': recipe}, blocks=2, block=3, skip=1)
    assert set(seconds) == {'recipe'} and seconds['recipe'] > 0  # 8 steps of a 4-iteration cosine schedule


def test_measured_training_time_adds_up_the_parts_of_a_resumed_run(exp_name):
    folder = osp.join(ROOT, 'experiments', exp_name)
    os.makedirs(folder)
    with open(osp.join(folder, 'train_a.log'), 'w') as f:
        f.write('2026-11-30 10:00:00,000 INFO: set-up\n2026-11-30 10:00:05,000 INFO: Start training from epoch: 0, '
                'iter: 0\n2026-11-30 10:01:05,500 INFO: [epoch:  0, iter:     100, ...]\n')
    with open(osp.join(folder, 'train_b.log'), 'w') as f:
        f.write('2026-11-30 11:00:00,000 INFO: Start training from epoch: 3, iter: 100\nno stamp here\n'
                '2026-11-30 11:00:30,000 INFO: End of training. Time consumed: 0:00:30\n')
    assert training_seconds(exp_name) == pytest.approx(60.5 + 30)
    with open(osp.join(folder, 'train_c.log'), 'w') as f:  # a validation pass (from the line before) is not training
        f.write('2026-11-30 12:00:00,000 INFO: Start training from epoch: 4, iter: 200\n'
                '2026-11-30 12:00:20,000 INFO: Saving models and training states.\n'
                '2026-11-30 12:00:23,000 INFO: Teacher on Set5 (computed once): psnr: 30.0\n'
                '2026-11-30 12:00:24,500 INFO: Validation Set5\n\t # psnr: 29.0\n'
                '2026-11-30 12:00:34,500 INFO: End of training. Time consumed: 0:00:34\n')
    assert training_seconds(exp_name) == pytest.approx(60.5 + 30 + 34.5 - 4.5)


def test_iterations_repeated_after_a_resume_are_counted_once(exp_name):
    """A run killed at iteration 150 whose last checkpoint was at 100 does iterations 101-150 twice; its first
    part counts up to iteration 100 (the next part's start), here 60 s of its 95."""
    folder = osp.join(ROOT, 'experiments', exp_name)
    os.makedirs(folder)
    with open(osp.join(folder, 'train_a.log'), 'w') as f:
        f.write('2026-11-30 10:00:00,000 INFO: Start training from epoch: 0, iter: 0\n'
                '2026-11-30 10:01:00,000 INFO: [HDRNe..][epoch:  0, iter:     100, lr:(2.000e-03,)] [eta: 0:01:00]\n'
                '2026-11-30 10:01:00,500 INFO: Saving models and training states.\n'
                '2026-11-30 10:01:20,000 INFO: Validation Set5\n'
                '2026-11-30 10:01:30,000 INFO: [HDRNe..][epoch:  0, iter:     150, lr:(1.000e-03,)] [eta: 0:00:30]\n'
                '2026-11-30 10:01:35,000 INFO: [HDRNe..][epoch:  0, iter:     160, lr:(1.000e-03,)] [eta: 0:00:25]\n')
    with open(osp.join(folder, 'train_b.log'), 'w') as f:
        f.write('2026-11-30 11:00:00,000 INFO: Resuming training from epoch: 0, iter: 100.\n'
                '2026-11-30 11:00:01,000 INFO: Start training from epoch: 0, iter: 100\n'
                '2026-11-30 11:01:01,000 INFO: [HDRNe..][epoch:  0, iter:   1,200, lr:(1.000e-05,)] [eta: 0:00:00]\n'
                '2026-11-30 11:01:02,000 INFO: End of training. Time consumed: 0:01:01\n')
    # the validation pass ended after iteration 100, so it is not in the first part's 60 s either
    assert training_seconds(exp_name) == pytest.approx(60 + 61)
    with open(osp.join(folder, 'train_b.log'), 'w') as f:  # resumed half-way between two logged iterations
        f.write('2026-11-30 11:00:01,000 INFO: Start training from epoch: 0, iter: 155\n'
                '2026-11-30 11:01:01,000 INFO: End of training. Time consumed: 0:01:00\n')
    assert training_seconds(exp_name) == pytest.approx(92.5 - 19.5 + 60)  # 10:01:32.5, less the validation


def test_the_equal_time_baseline_is_charged_the_whole_label_build_time(teacher, tiny_pairs, exp_name, tmp_path,
                                                                       monkeypatch):
    """One rule in the ablation and the demo: the student alone gets the recipe run's training time plus the
    whole time its cached labels took to build."""
    recipe = kd_options(exp_name, tiny_pairs, teacher, total_iter=2)
    labels = tmp_path / 'labels.npy'
    os.makedirs(labels)
    json.dump({'complete': True, 'seconds': 30.0, 'ensemble': 'x8', 'count': 4, 'device': 'cpu'},
              open(labels / 'manifest.json', 'w'))
    recipe['datasets']['train'].update(type='KDPairedImageDataset', dataroot_teacher=str(labels))
    monkeypatch.setattr(runner, 'finished', lambda opt: '_no_kd_s' not in opt['name'])  # sized by the timing
    monkeypatch.setattr(runner, 'training_seconds', lambda name: 90.0)
    monkeypatch.setattr(runner, 'equal_time_record', lambda *a: {'student_iteration_s': 0.5})
    assert runner.options_for(recipe, 'no_kd_equal_time', 0, 2, str(tmp_path))['train']['total_iter'] == 240
    assert runner.label_seconds(variants.variant_options(recipe, 'recipe', 0)) == 30.0
    assert runner.label_seconds(variants.variant_options(recipe, 'no_kd', 0)) == 0.0
    recipe['datasets']['train'].pop('dataroot_teacher')  # online distillation: nothing to charge
    assert runner.options_for(recipe, 'no_kd_equal_time', 0, 2, str(tmp_path / 'online'))['train']['total_iter'] == 180
    rows = [{'run': 'recipe', 'minutes': 1.5, 'label_minutes': 0.5, 'iterations': [2]},
            {'run': 'no_kd_equal_time', 'minutes': 2.1, 'label_minutes': 0.0, 'iterations': [240]}]
    for row in rows:
        row['Set5_psnr'] = {'mean': 30.0, 'std': None}
        row['Set5_ssim'] = {'mean': 0.9}
    text = runner.table(rows, ['Set5'], 'title')
    assert '| recipe | 2 | 1.5 | 0.5 | 1.00 |' in text and '| no_kd_equal_time | 240 | 2.1 |  | 1.05 |' in text
    assert 'trained 2.1 min against the recipe\'s 2.0 min (measured, labels included' in text


def test_a_cached_label_recipe_is_ablated_against_baselines_without_labels(teacher, tiny_pairs, tmp_path):
    recipe = kd_options('abl', tiny_pairs, teacher)
    recipe['datasets']['train'].update(type='KDPairedImageDataset', dataroot_teacher=str(tmp_path / 'labels'))
    assert 'online_labels' in variants.available_variants(recipe)
    assert 'online_labels' not in variants.default_variants(recipe)
    for v in ('no_kd', 'no_kd_equal_time', 'online_labels'):
        train_set = variants.variant_options(recipe, v, 0)['datasets']['train']
        assert train_set['type'] == 'PairedImageDataset' and 'dataroot_teacher' not in train_set, v
    online = variants.variant_options(recipe, 'online_labels', 0)
    assert online['model_type'] == 'KDModel' and online['train'] == recipe['train']
    assert variants.variant_options(recipe, 'recipe', 0)['datasets'] == recipe['datasets']
    os.makedirs(tmp_path / 'labels')
    json.dump({'ensemble': 'x8', 'count': 4, 'seconds': 12.5, 'device': 'cpu'},
              open(tmp_path / 'labels' / 'manifest.json', 'w'))
    note = runner.labels_note(recipe, ['no_kd', 'recipe'])
    assert 'built in 12.5 s on cpu' in note and 'charged the whole build time (labels min)' in note
    assert runner.labels_note(recipe, ['no_kd', 'online_labels']) is None  # no run read them: no note


def test_an_equal_time_baseline_off_by_more_than_5_percent_is_trained_once_more_resized(teacher, tiny_pairs, tmp_path,
                                                                                       monkeypatch, capsys):
    """The baseline is sized from the same seed's no_kd run; where it still trains outside ±5 % of the recipe's time
    (training + labels), it is trained once more for iterations * target / measured, the first attempt kept."""
    recipe = kd_options('resize', tiny_pairs, teacher, total_iter=100)
    out = str(tmp_path / 'out')
    name = variants.run_name(recipe, 'no_kd_equal_time', 0)
    seconds = {variants.run_name(recipe, 'recipe', 0): 300.0, variants.run_name(recipe, 'no_kd', 0): 200.0}
    trained, moved = [], []
    monkeypatch.setattr(runner, 'finished', lambda opt: opt['name'] in seconds)
    monkeypatch.setattr(runner, 'training_seconds', lambda run: seconds[run])
    monkeypatch.setattr(runner, 'label_seconds', lambda opt: 60.0)
    monkeypatch.setattr(runner, 'equal_time_record', lambda *a: pytest.fail('timed although no_kd has finished'))

    def fake_train(opt, options_dir):
        trained.append(opt['train']['total_iter'])
        seconds[opt['name']] = 2.0 * opt['train']['total_iter'] * (1.25 if len(trained) == 1 else 1.0)

    monkeypatch.setattr(runner, 'train_run', fake_train)
    monkeypatch.setattr(runner.os, 'replace', lambda a, b: moved.append((osp.basename(a), osp.basename(b))))
    # target 300 + 60 s at 200 s / 100 it = 2 s per iteration: 180 iterations
    assert runner.options_for(recipe, 'no_kd_equal_time', 0, 100, out)['train']['total_iter'] == 180
    runner.train_run(runner.options_for(recipe, 'no_kd_equal_time', 0, 100, out), out)
    runner.keep_equal_time(recipe, 0, 100, out, out)  # measured 450 s against 360: 1.25x, resized to 144
    assert trained == [180, 144] and moved == [(name, f'{name}_attempt1')]
    assert 'outside ±5%); training it again for 144 iterations instead of 180' in capsys.readouterr().out
    entry = json.load(open(osp.join(out, 'equal_time_runs.json')))[name]
    assert entry['total_iter'] == 144 and entry['attempts'] == [{'total_iter': 180, 'measured_s': 450.0}]
    assert runner.options_for(recipe, 'no_kd_equal_time', 0, 100, out)['train']['total_iter'] == 144  # kept
    seconds[name] = 450.0
    runner.keep_equal_time(recipe, 0, 100, out, out)  # resized once at most
    assert trained == [180, 144]


def test_a_longer_schedule_sizes_its_baseline_from_the_no_kd_run_of_the_files_own_schedule(teacher, tiny_pairs,
                                                                                          tmp_path, monkeypatch):
    """``--total-iter 400`` without no_kd: the student's cost per iteration comes from the same seed's finished no_kd
    run of the file's own 100-iteration schedule (a whole run), not from the timing before training."""
    recipe = kd_options('sched', tiny_pairs, teacher, total_iter=100)
    longer = runner.with_overrides(recipe, None, 400)
    out = str(tmp_path / 'out')
    base_no_kd = variants.run_name(recipe, 'no_kd', 0)
    runner.write_options(variants.variant_options(recipe, 'no_kd', 0, 100), str(tmp_path / 'experiments' / base_no_kd))
    monkeypatch.setattr(runner, 'experiment_dir', lambda name: str(tmp_path / 'experiments' / name))
    seconds = {variants.run_name(longer, 'recipe', 0): 900.0, base_no_kd: 200.0}
    monkeypatch.setattr(runner, 'finished', lambda opt: opt['name'] in seconds and (
        opt['name'] != base_no_kd or opt['train']['total_iter'] == 100))
    monkeypatch.setattr(runner, 'training_seconds', lambda run: seconds[run])
    monkeypatch.setattr(runner, 'label_seconds', lambda opt: 0.0)
    monkeypatch.setattr(runner, 'equal_time_record', lambda *a: pytest.fail('timed although a no_kd run has finished'))
    # 900 s of recipe at 200 s / 100 it = 2 s per iteration: 450 iterations
    assert runner.options_for(longer, 'no_kd_equal_time', 0, 400, out)['train']['total_iter'] == 450
    entry = json.load(open(osp.join(out, 'equal_time_runs.json')))[variants.run_name(longer, 'no_kd_equal_time', 0)]
    assert entry['from'] == f'experiments/{base_no_kd}'
    assert runner.other_schedule_no_kd(longer, 1, 400, out) is None  # seed 1 has no such run: timed instead
    assert runner.other_schedule_no_kd(recipe, 0, 100, out) is None  # the file's own schedule: not another one
