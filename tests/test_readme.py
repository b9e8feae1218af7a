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
    starts = ['make demo', 'make test', 'python kd_plugin/cli/train.py -opt', 'python kd_plugin/cli/test.py -opt',
              'torchrun --nproc_per_node=', 'python -m kd_plugin.cli.prepare div2k',
              'python -m kd_plugin.cli.benchmark --model', 'python -m kd_plugin.cli.ablation -opt',
              'python -m kd_plugin.cli.infer --model', 'python -m kd_plugin.cli.export',
              'python -m kd_plugin.cli.kd_overhead', 'python -m kd_plugin.cli.slicing',
              'python -m kd_plugin.cli.prepare teacher-labels -opt']
    for start in starts:
        assert any(c.startswith(start) for c in COMMANDS), f'no README command starts with {start!r}'
    assert any(c.startswith('python -m kd_plugin.cli.ablation') and '--seeds 0 1 2' in c for c in COMMANDS)
    assert any(c.startswith('python -m kd_plugin.cli.infer') and '.onnx' in c for c in COMMANDS)


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


#: ``python -m MODULE --help`` for each module named on the command line, in one interpreter (a fresh one per
#: module costs ~10 s of torch/BasicSR start-up each); runpy runs each as ``__main__``, as ``-m`` does.
_START_EACH = """
import runpy, sys
for module in sys.argv[1:]:
    print(f'=== {module}', flush=True)
    sys.argv = [module, '--help']
    try:
        runpy.run_module(module, run_name='__main__', alter_sys=True)
    except SystemExit as stop:
        print(f'=== exit {stop.code}', flush=True)
    else:
        print('=== exit none: --help did not end the tool', flush=True)
"""


def test_readme_modules_start():
    result = run([sys.executable, '-c', _START_EACH, *MODULES])
    assert result.returncode == 0, result.stderr[-2000:]
    started = re.findall(r'=== (\S+)\n(.*?)=== exit (\S+)', result.stdout, re.S)  # (module, output, status)
    assert [module for module, _, _ in started] == MODULES, result.stdout[-2000:]
    for module, output, status in started:
        assert status == '0' and 'usage:' in output, f'{module}: exit {status}\n{output[-1000:]}'


def _help(module: str, sub: str | None) -> str:
    """``--help`` of a tool (and sub-command), in this process."""
    import contextlib
    import importlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        importlib.import_module(module).main(([sub] if sub else []) + ['--help'])
    return out.getvalue()


#: the flags of BasicSR's own train.py/test.py parser (basicsr/utils/options.py:86-94)
BASICSR_FLAGS = {'-opt', '--launcher', '--auto_resume', '--debug', '--local_rank', '--force_yml'}


def test_every_flag_a_readme_command_shows_is_accepted():
    for command in COMMANDS:
        words = shlex.split(command)
        if 'kd_plugin/cli/train.py' in command or 'kd_plugin/cli/test.py' in command:
            flags = {w.split('=')[0] for w in words if w.startswith('-') and not w.startswith('--nproc')
                     and not w.startswith('--master')}
            assert flags <= BASICSR_FLAGS, f'`{command}`: {flags - BASICSR_FLAGS}'
            continue
        found = re.search(r'python -m (kd_plugin\.cli\.\w+)', command)
        if not found:
            continue
        rest = words[words.index(found.group(1)) + 1:]
        sub = rest[0] if rest and not rest[0].startswith('-') else None
        text = _help(found.group(1), sub)
        for word in rest:
            flag = word.split('=')[0]
            if flag.startswith('-') and not flag.lstrip('-').isdigit():
                assert re.search(rf'(?<![\w-]){re.escape(flag)}(?![\w-])', text), \
                    f'`{command}`: {flag} is not an option of {found.group(1)} {sub or ""}'
