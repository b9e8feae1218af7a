"""What distillation bought: ``python -m kd_plugin.ablation -opt <KD options file>``.

From one KD options file, trains with identical data, seed, iterations and schedule:

==============  ==========================================================
``no_kd``       the student alone (``SRModel``, the file's pixel loss)
``output``      + output distillation (``distill_opt``)
``feature``     + feature matching (``feature_opt``)
``forward``     + forward adaptation (``forward_opt``)
``all``         + all the file's distillation terms
==============  ==========================================================

Each run is an ordinary ``kd_plugin/train.py -opt`` run named ``<name>_ablation_<variant>`` (its
options file is written under ``--out``), started with ``--auto_resume``: an interrupted ablation
continues where it stopped, and finished runs are skipped. Then every final student, the teacher
and bicubic are scored on the test sets (:mod:`kd_plugin.benchmark.quality`), and a table with the
delta of each variant against ``no_kd`` is written to ``<out>/ablation.md`` and ``ablation.json``.
"""
import argparse
import json
import os
import subprocess
import sys
from copy import deepcopy
from os import path as osp
from typing import Any

import torch
import yaml

from kd_plugin.benchmark.models import ModelSpec, load_model, network_upscaler
from kd_plugin.benchmark.quality import bicubic_upscaler, evaluate, load_test_set

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
VARIANTS = {'no_kd': (), 'output': ('distill_opt',), 'feature': ('feature_opt',), 'forward': ('forward_opt',),
            'all': ('distill_opt', 'feature_opt', 'forward_opt')}
KD_TERMS = ('distill_opt', 'feature_opt', 'forward_opt')


def variant_options(base: dict[str, Any], variant: str, total_iter: int | None = None) -> dict[str, Any]:
    """The options of one ablation run, derived from the KD options ``base``."""
    opt = deepcopy(base)
    opt['name'] = f'{base["name"]}_ablation_{variant}'
    train = opt['train']
    train.setdefault('pixel_opt', {'type': 'L1Loss', 'loss_weight': 1.0, 'reduction': 'mean'})
    for term in KD_TERMS:
        if term not in VARIANTS[variant]:
            train.pop(term, None)
    if variant == 'no_kd':
        opt['model_type'] = 'SRModel'
        opt.pop('network_t', None)
        train.pop('teacher', None)
        for key in [k for k in opt['path'] if k.endswith('_t')]:
            opt['path'].pop(key)
    if total_iter:
        train['total_iter'] = total_iter
        if train.get('scheduler', {}).get('type') == 'CosineAnnealingRestartLR':
            train['scheduler']['periods'], train['scheduler']['restart_weights'] = [total_iter], [1]
        train['warmup_iter'] = min(train.get('warmup_iter', -1), total_iter // 10)
        for section, key in (('val', 'val_freq'), ('logger', 'save_checkpoint_freq')):
            if opt.get(section, {}).get(key, 0) > total_iter:
                opt[section][key] = total_iter
    return opt


def available_variants(base: dict[str, Any]) -> list[str]:
    """Variants whose terms the file configures: ``no_kd`` always, one per configured term, and
    ``all`` (whatever the file configures) when that is more than one term."""
    have = {t for t in KD_TERMS if base['train'].get(t)}
    singles = [v for v, terms in VARIANTS.items() if len(terms) == 1 and set(terms) <= have]
    return ['no_kd'] + singles + (['all'] if len(have) > 1 else [])


def finished(opt: dict[str, Any]) -> bool:
    """Whether ``experiments/<name>`` holds a finished run of exactly these train/network options.

    A finished run of *other* options is never reused or overwritten: that raises."""
    folder = osp.join(ROOT, 'experiments', opt['name'])
    if not osp.isfile(osp.join(folder, 'models', 'net_g_latest.pth')):
        return False
    logs = [f for f in os.listdir(folder) if f.startswith('train_') and f.endswith('.log')]
    if not any('End of training' in open(osp.join(folder, f)).read() for f in logs):
        return False
    with open(osp.join(folder, f'{opt["name"]}.yml')) as f:
        done = yaml.safe_load(f)
    for key in ('network_g', 'network_t', 'train', 'datasets'):
        if done.get(key) != opt.get(key):
            raise RuntimeError(f'[ablation] experiments/{opt["name"]} holds a finished run with different {key}. '
                               'Fix: move that folder away, or give the KD options file another name')
    return True


def train_variant(opt: dict[str, Any], options_dir: str) -> None:
    """Run (or continue) one variant through ``kd_plugin/train.py``; raises if the run fails."""
    if finished(opt):
        print(f'[ablation] {opt["name"]}: finished earlier, skipped', flush=True)
        return
    path = osp.join(options_dir, f'{opt["name"]}.yml')
    with open(path, 'w') as f:
        yaml.safe_dump(opt, f, sort_keys=False)
    print(f'[ablation] training {opt["name"]} ({path})', flush=True)
    cmd = [sys.executable, osp.join(ROOT, 'kd_plugin', 'train.py'), '-opt', path, '--auto_resume']
    if subprocess.run(cmd, cwd=ROOT).returncode != 0:
        raise RuntimeError(f'[ablation] {opt["name"]} failed; fix the cause and rerun the same command '
                           '(finished variants are skipped, this one resumes)')


def score_rows(base: dict[str, Any], variants: list[str], sets: list[str], data_root: str) -> list[dict]:
    """Bicubic, teacher and each variant's final student on every test set."""
    scale = base['scale']
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    test_sets = {osp.basename(osp.normpath(s)): load_test_set(s if osp.isdir(s) else osp.join(data_root, s), scale)
                 for s in sets}
    entries = [('bicubic', None)]
    teacher = ModelSpec('teacher', base['network_t'], base['path']['pretrain_network_t'],
                        base['path'].get('param_key_t'))
    entries.append(('teacher', teacher))
    for v in variants:
        name = f'{base["name"]}_ablation_{v}'
        entries.append((v, ModelSpec(v, base['network_g'], osp.join(ROOT, 'experiments', name, 'models',
                                                                     'net_g_latest.pth'), 'params')))
    rows = []
    for label, spec in entries:
        upscale = bicubic_upscaler(scale) if spec is None else network_upscaler(load_model(spec).to(device), device)
        row = {'run': label}
        for set_name, images in test_sets.items():
            result = evaluate(upscale, images, scale)
            row[f'{set_name}_psnr'], row[f'{set_name}_ssim'] = result['psnr'], result['ssim']
        rows.append(row)
    return rows


def table(rows: list[dict], sets: list[str], title: str) -> str:
    ref = next((r for r in rows if r['run'] == 'no_kd'), None)
    lines = [title, '', '| run | ' + ' | '.join(f'{s} PSNR / SSIM (Δ PSNR vs no_kd)' for s in sets) + ' |',
             '|---|' + '---|' * len(sets)]
    for r in rows:
        cells = []
        for s in sets:
            cell = f'{r[s + "_psnr"]:.2f} / {r[s + "_ssim"]:.4f}'
            if ref is not None and r['run'] not in ('no_kd', 'bicubic', 'teacher'):
                cell += f' ({r[s + "_psnr"] - ref[s + "_psnr"]:+.2f})'
            cells.append(cell)
        lines.append(f'| {r["run"]} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m kd_plugin.ablation', description=__doc__.splitlines()[0])
    parser.add_argument('-opt', required=True, help='a KD options file (model_type: KDModel)')
    parser.add_argument('--teacher', help='override path.pretrain_network_t')
    parser.add_argument('--total-iter', type=int, help='override train.total_iter for every run')
    parser.add_argument('--variants', nargs='+', choices=list(VARIANTS), help='default: all the file allows')
    parser.add_argument('--sets', nargs='+', default=['Set5', 'Set14'], help='test sets (names or folders)')
    parser.add_argument('--data-root', default='datasets')
    parser.add_argument('--out', help='default: results/ablation_<name>')
    args = parser.parse_args(argv)
    with open(args.opt) as f:
        base = yaml.safe_load(f)
    if base.get('model_type') != 'KDModel' or 'network_t' not in base:
        print(f'error: -opt {args.opt}: not a KD options file (model_type: KDModel with network_t)', file=sys.stderr)
        return 2
    if args.teacher:
        base['path']['pretrain_network_t'] = args.teacher
    variants = args.variants or available_variants(base)
    out = args.out or osp.join(ROOT, 'results', f'ablation_{base["name"]}')
    os.makedirs(osp.join(out, 'options'), exist_ok=True)
    for v in variants:
        train_variant(variant_options(base, v, args.total_iter), osp.join(out, 'options'))
    rows = score_rows(base, variants, args.sets, args.data_root)
    set_names = [osp.basename(osp.normpath(s)) for s in args.sets]
    iters = args.total_iter or base['train']['total_iter']
    text = table(rows, set_names, f'{base["network_t"]["type"]} -> {base["network_g"]["type"]} x{base["scale"]}, '
                                  f'{iters} iterations each, seed {base.get("manual_seed")}; Y-PSNR/SSIM, '
                                  f'crop {base["scale"]}, grey images on their own channel.')
    with open(osp.join(out, 'ablation.md'), 'w') as f:
        f.write(text)
    with open(osp.join(out, 'ablation.json'), 'w') as f:
        json.dump({'options': args.opt, 'total_iter': iters, 'rows': rows}, f, indent=1)
    print(text)
    print(f'wrote {out}/ablation.md and ablation.json')
    return 0


if __name__ == '__main__':
    sys.exit(main())
