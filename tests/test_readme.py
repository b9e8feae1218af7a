"""Every command in the README's bash blocks refers to files and modules that exist and start.

The long-running ones are exercised for real elsewhere: ``make test`` by CI, ``make demo`` by
test_demo, the benchmark/ablation/infer/kd_overhead/prepare modules by their own tests."""
import re
import shlex
import sys
from os import path as osp

import pytest
import yaml

from tests.helpers import ROOT, run

README = open(osp.join(ROOT, 'README.md')).read()
COMMANDS = [line.split('  #')[0].strip() for block in re.findall(r'```bash\n(.*?)```', README, re.S)
            for line in block.splitlines() if line.strip() and not line.strip().startswith('#')]
PLACEHOLDERS = ('FILE', '...', 'IMG', 'DIR', 'HR_DIR', '<')


def test_readme_shows_the_commands_a_user_needs():
    """The main job, the tests, and each documented tool appear as commands to copy."""
    starts = ['make demo', 'make test', 'python kd_plugin/train.py -opt', 'python kd_plugin/test.py -opt',
              'torchrun --nproc_per_node=', 'python -m kd_plugin.prepare div2k',
              'python -m kd_plugin.benchmark --model', 'python -m kd_plugin.ablation -opt',
              'python -m kd_plugin.infer --model', 'python -m kd_plugin.export',
              'python -m kd_plugin.benchmark.kd_overhead', 'python -m kd_plugin.benchmark.slicing',
              'python -m kd_plugin.prepare teacher-labels -opt']
    for start in starts:
        assert any(c.startswith(start) for c in COMMANDS), f'no README command starts with {start!r}'
    assert any(c.startswith('python -m kd_plugin.ablation') and '--seeds 0 1 2' in c for c in COMMANDS)
    assert any(c.startswith('python -m kd_plugin.infer') and '.onnx' in c for c in COMMANDS)


@pytest.mark.parametrize('command', COMMANDS)
def test_readme_command_refers_to_real_files(command):
    words = shlex.split(command)
    for word in words:
        for part in word.rpartition('=')[2].split('@'):
            if part.startswith(('options/', 'checkpoints/', 'kd_plugin/')) and not any(p in part for p in PLACEHOLDERS):
                assert osp.exists(osp.join(ROOT, part)), f'{part} (in `{command}`) does not exist'
                if part.endswith('.yml'):
                    with open(osp.join(ROOT, part)) as f:
                        assert isinstance(yaml.safe_load(f), dict)
    if words[0] == 'make':
        assert f'\n{words[1]}:' in open(osp.join(ROOT, 'Makefile')).read()


MODULES = sorted({m for c in COMMANDS for m in re.findall(r'python -m (kd_plugin[\w.]*)', c)})


@pytest.mark.parametrize('module', MODULES)
def test_readme_module_starts(module):
    result = run([sys.executable, '-m', module, '--help'])
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'usage:' in result.stdout
