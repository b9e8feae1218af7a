"""``python -m kd_plugin.ablation``: identical runs but for the KD terms, a table, resumable."""
import json
import os
import sys
from os import path as osp

import pytest
import yaml

from kd_plugin import ablation
from tests.conftest import ROOT, run, shared_data, write_options
from tests.kd_fixtures import kd_options


def test_variants_differ_only_in_their_kd_terms(teacher, tiny_pairs):
    base = kd_options('abl', tiny_pairs, teacher)
    base['train']['pixel_opt'] = {'type': 'L1Loss', 'loss_weight': 1.0}
    opts = {v: ablation.variant_options(base, v, total_iter=8) for v in ablation.VARIANTS}
    assert opts['no_kd']['model_type'] == 'SRModel' and 'network_t' not in opts['no_kd']
    assert 'pretrain_network_t' not in opts['no_kd']['path']
    for v, terms in ablation.VARIANTS.items():
        assert {t for t in ablation.KD_TERMS if t in opts[v]['train']} == set(terms), v
        rest = {k: x for k, x in opts[v]['train'].items() if k not in ablation.KD_TERMS + ('teacher',)}
        assert rest == {k: x for k, x in opts['no_kd']['train'].items() if k != 'teacher'}, v
        assert opts[v]['datasets'] == base['datasets'] and opts[v]['manual_seed'] == base['manual_seed']
        assert opts[v]['train']['total_iter'] == 8 and opts[v]['name'] == f'abl_ablation_{v}'
    assert 'forward_opt' in base['train']  # the base options are not modified
    base['train'].pop('forward_opt')
    assert ablation.available_variants(base) == ['no_kd', 'output', 'feature', 'all']


def test_ablation_runs_every_variant_writes_the_table_and_skips_finished_runs(teacher, tiny_pairs, exp_name,
                                                                              tmp_path):
    shared_data('Set5')
    opt_path = write_options(str(tmp_path), kd_options(exp_name, tiny_pairs, teacher, total_iter=2))
    out = tmp_path / 'out'
    cmd = [sys.executable, '-m', 'kd_plugin.ablation', '-opt', opt_path, '--sets', shared_data('Set5'),
           '--out', str(out)]
    first = run(cmd, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    rows = json.load(open(out / 'ablation.json'))['rows']
    assert [r['run'] for r in rows] == ['bicubic', 'teacher', 'no_kd', 'output', 'feature', 'forward', 'all']
    assert abs(rows[0]['Set5_psnr'] - 33.67) < 0.01
    table = open(out / 'ablation.md').read()
    for v in ('output', 'feature', 'forward', 'all'):
        r = next(r for r in rows if r['run'] == v)
        delta = r['Set5_psnr'] - next(r for r in rows if r['run'] == 'no_kd')['Set5_psnr']
        assert f'| {v} | {r["Set5_psnr"]:.2f} / {r["Set5_ssim"]:.4f} ({delta:+.2f}) |' in table
    for v in ablation.VARIANTS:
        assert osp.isfile(osp.join(ROOT, 'experiments', f'{exp_name}_ablation_{v}', 'models', 'net_g_latest.pth'))

    again = run(cmd, timeout=900)
    assert again.returncode == 0 and again.stdout.count('finished earlier, skipped') == 5
    assert json.load(open(out / 'ablation.json'))['rows'] == rows


def test_a_finished_run_with_other_options_is_not_reused(teacher, tiny_pairs, exp_name):
    base = kd_options(exp_name, tiny_pairs, teacher, total_iter=2)
    opt = ablation.variant_options(base, 'no_kd')
    folder = osp.join(ROOT, 'experiments', opt['name'])
    os.makedirs(osp.join(folder, 'models'))
    open(osp.join(folder, 'models', 'net_g_latest.pth'), 'w').close()
    open(osp.join(folder, 'train_x.log'), 'w').write('End of training')
    with open(osp.join(folder, f'{opt["name"]}.yml'), 'w') as f:
        yaml.safe_dump(dict(opt, train=dict(opt['train'], total_iter=99)), f)
    with pytest.raises(RuntimeError, match='holds a finished run with different train'):
        ablation.finished(opt)
    assert ablation.finished(dict(opt, train=dict(opt['train'], total_iter=99)))
