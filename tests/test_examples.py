"""The extension examples (``examples/``): each README's commands, run as a user runs them, from a copy of the
example's folder (its ``../../checkpoints`` pointing at the shipped teachers), shortened to a few iterations."""
import os
import re
import shlex
import shutil
import sys
from os import path as osp

import pytest
import torch
import yaml

from tests.helpers import ROOT, run

EXAMPLES = osp.join(ROOT, 'examples')
SHORT = ['--force_yml', 'train:total_iter=4']


def readme_commands(example: str) -> list[list[str]]:
    text = open(osp.join(EXAMPLES, example, 'README.md')).read()
    block = re.findall(r'```bash\n(.*?)```', text, re.S)[0]
    return [shlex.split(line) for line in block.splitlines() if line.strip() and not line.startswith('#')]


def run_example(example: str, tmp_path) -> tuple[str, list[str]]:
    """Copy the example to ``tmp/examples/<example>`` and run its README's commands there (training shortened);
    returns the folder and the commands' stdout."""
    folder = tmp_path / 'examples' / example
    shutil.copytree(osp.join(EXAMPLES, example), folder, ignore=shutil.ignore_patterns('__pycache__'))
    os.symlink(osp.join(ROOT, 'checkpoints'), tmp_path / 'checkpoints')
    outputs = []
    for words in readme_commands(example):
        assert words[:2] == ['python', '-m'], words
        extra = SHORT if words[2] == 'kd_plugin.cli.train' else []
        result = run([sys.executable, *words[1:], *extra], cwd=str(folder), timeout=900)
        assert result.returncode == 0, (words, result.stderr[-3000:])
        outputs.append(result.stdout)
    return str(folder), outputs


def experiment_log(folder: str, name: str) -> str:
    exp = osp.join(folder, 'experiments', name)
    return ''.join(open(osp.join(exp, f)).read() for f in os.listdir(exp) if f.endswith('.log'))


def refused(folder: str, name: str, change) -> str:
    """The example's options file ``train_<name>.yml`` changed by ``change(opt)``, renamed ``refused`` and written
    beside it (the example's own file is left as it is), run from its folder: the stderr of a run that stopped at
    its pre-run checks (status 2, no experiment written)."""
    opt = yaml.safe_load(open(osp.join(folder, f'train_{name}.yml')))
    change(opt)
    opt['name'] = 'refused'
    opt_path = osp.join(folder, 'train_refused.yml')
    with open(opt_path, 'w') as f:
        yaml.safe_dump(opt, f)
    result = run([sys.executable, '-m', 'kd_plugin.cli.train', '-opt', opt_path], cwd=folder)
    assert result.returncode == 2, result.stderr[-2000:]
    assert not osp.exists(osp.join(folder, 'experiments', 'refused'))
    return result.stderr


def test_every_example_is_tested():
    assert sorted(d for d in os.listdir(EXAMPLES) if osp.isdir(osp.join(EXAMPLES, d))) == [
        'own_arch', 'own_loss', 'own_model']


def test_your_own_arch_is_distilled_from_cached_labels(tmp_path):
    folder, _ = run_example('own_arch', tmp_path)
    name = 'KD_HDRNet_to_TinySR_photos_x4_labels'
    assert osp.isfile(osp.join(folder, 'datasets/photos/train/X4/labels_HDRNet_T91_BSD400_x4_6k_none.npy/labels.u8'))
    log = experiment_log(folder, name)
    assert 'Network [TinySR] is created.' in log and 'End of training' in log
    weights = torch.load(osp.join(folder, 'experiments', name, 'models', 'net_g_latest.pth'))['params']
    assert weights['tail.weight'].shape == (48, 16, 3, 3)  # TinySR's own layer: 3 * 4 * 4 outputs
    # your arch's layers are checked like any arch's: a feature pair naming a layer it lacks is refused
    pairs = [{'student': 'body.9', 'teacher': 'trunk.1'}]
    assert "TinySR has no layer 'body.9'" in refused(folder, name, lambda o: o['train'].update(
        feature_opt={'type': 'FeatureMatchingLoss', 'pairs': pairs}))


def test_your_own_loss_is_used_through_distill_opt(tmp_path):
    folder, _ = run_example('own_loss', tmp_path)
    name = 'KD_HDRNet_to_DeformableHDRNet_photos_x4_gradients'
    log = experiment_log(folder, name)
    assert 'Loss [GradientDistillLoss] is created.' in log and 'End of training' in log
    stderr = refused(folder, name, lambda o: o['train']['distill_opt'].update(image_weigth=1.0))
    assert 'train.distill_opt.image_weigth: unknown key' in stderr and 'image_weight' in stderr


def test_your_own_kdmodel_subclass_keeps_every_check(tmp_path):
    folder, _ = run_example('own_model', tmp_path)
    name = 'KD_HDRNet_to_DeformableHDRNet_photos_x4_decaying'
    log = experiment_log(folder, name)
    assert 'Model [DecayingKDModel] is created.' in log and 'decays to 0 at 60% of training' in log
    for change, needle in (
            (lambda o: o['train'].update(distill_decy={'end_ratio': 0.5}),
             'train.distill_decy: unknown key; did you mean `distill_decay`'),
            (lambda o: o['datasets']['train'].update(dataroot_lq='datasets/photos/val/X4/LR'),
             'datasets.train'),
            (lambda o: o['path'].update(pretrain_network_t='../../checkpoints/HDRNet_T91_x4_12k.pth'),
             'were made by')):
        assert needle in refused(folder, name, change)


def test_decay_factor_is_linear_to_zero_at_end_ratio():
    sys.path.insert(0, osp.join(EXAMPLES, 'own_model'))
    try:
        from my_models.decaying_kd_model import decay_factor
    finally:
        sys.path.remove(osp.join(EXAMPLES, 'own_model'))
    assert [decay_factor(i, 300, 0.6) for i in (0, 90, 180, 250)] == pytest.approx([1.0, 0.5, 0.0, 0.0])


def test_a_custom_import_that_cannot_be_found_is_refused_before_training(tmp_path):
    opt = yaml.safe_load(open(osp.join(EXAMPLES, 'own_arch', 'train_KD_HDRNet_to_TinySR_photos_x4_labels.yml')))
    opt['custom_imports'] = ['no_such_package']
    path = tmp_path / 'opt.yml'
    yaml.safe_dump(opt, open(path, 'w'))
    refused = run([sys.executable, '-m', 'kd_plugin.cli.train', '-opt', str(path)], cwd=str(tmp_path))
    assert refused.returncode == 2
    assert "custom_imports: cannot import 'no_such_package' (ModuleNotFoundError" in refused.stderr
