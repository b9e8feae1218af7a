"""The README and the pages under docs/: every command in their bash blocks refers to files and modules
that exist and start, with flags the tools accept; every relative link and image resolves; every options file
they name exists.

The long-running ones are exercised for real elsewhere: ``make test`` by CI, ``make demo`` by
test_demo, the benchmark/ablation/infer/kd_overhead/prepare modules by their own tests."""
import ast
import functools
import glob
import re
import shlex
import sys
from os import path as osp

import pytest
import yaml

from tests.helpers import ROOT, run


def _read(name: str) -> str:
    with open(osp.join(ROOT, name)) as f:
        return f.read()


def _commands(text: str) -> list[str]:
    """The command lines of a page's ```bash blocks (comments dropped)."""
    return [line.split('  #')[0].strip() for block in re.findall(r'```bash\n(.*?)```', text, re.S)
            for line in block.splitlines() if line.strip() and not line.strip().startswith('#')]


#: README.md and every docs/*.md page, by path relative to the project root
PAGES = {name: _read(name) for name in
         ['README.md', *sorted(osp.relpath(p, ROOT) for p in glob.glob(osp.join(ROOT, 'docs', '*.md'))),
          *sorted(osp.relpath(p, ROOT) for p in glob.glob(osp.join(ROOT, 'examples', '*', 'README.md')))]}
README = PAGES['README.md']
README_COMMANDS = _commands(README)
#: every command of every page, once (the first page that shows it)
COMMANDS = list(dict.fromkeys(c for text in PAGES.values() for c in _commands(text)))
PLACEHOLDERS = ('FILE', '...', 'IMG', 'DIR', 'HR_DIR', '<')


def test_docs_pages_exist():
    """The front page links into docs/, one page per job."""
    for page in ('options', 'data', 'training', 'benchmark-and-ablation', 'results', 'archs', 'inference-and-export',
                 'gpu-check', 'troubleshooting', 'reliability'):
        assert f'docs/{page}.md' in PAGES, f'docs/{page}.md is missing'
        assert f'](docs/{page}.md' in README, f'README.md does not link to docs/{page}.md'


def test_readme_starts_with_the_main_job_and_the_tests():
    assert README_COMMANDS[:2] == ['make demo', 'make test'], README_COMMANDS[:2]


def test_readme_shows_the_commands_a_user_needs():
    """The main job, the tests, and each documented tool appear as commands to copy, in the README or a docs
    page."""
    starts = ['make demo', 'make test', 'python kd_plugin/cli/train.py -opt', 'python kd_plugin/cli/test.py -opt',
              'torchrun --nproc_per_node=', 'python -m kd_plugin.cli.prepare div2k',
              'python -m kd_plugin.cli.benchmark --model', 'python -m kd_plugin.cli.ablation -opt',
              'python -m kd_plugin.cli.infer --model', 'python -m kd_plugin.cli.export',
              'python -m kd_plugin.cli.kd_overhead', 'python -m kd_plugin.cli.slicing',
              'python -m kd_plugin.cli.prepare teacher-labels -opt']
    for start in starts:
        assert any(c.startswith(start) for c in COMMANDS), f'no README/docs command starts with {start!r}'
    assert any(c.startswith('python -m kd_plugin.cli.ablation') and '--seeds 0 1 2' in c for c in COMMANDS)
    assert any(c.startswith('python -m kd_plugin.cli.infer') and '.onnx' in c for c in COMMANDS)


@pytest.mark.parametrize('command', COMMANDS)
def test_readme_command_refers_to_real_files(command):
    """A command of the README or a docs page names options, checkpoints and scripts that exist, and make targets
    the Makefile has."""
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


@functools.cache
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


def _console_scripts() -> dict[str, str]:
    """``{kd-<name>: kd_plugin.cli.<module>}``: the console scripts setup.py installs."""
    text = open(osp.join(ROOT, 'setup.py')).read()
    tools = ast.literal_eval(re.search(r'TOOLS = (\{.*?\})', text, re.S).group(1))
    return {f'kd-{name}': f'kd_plugin.cli.{module}' for name, module in tools.items()}


CONSOLE_SCRIPTS = _console_scripts()
#: the tools that are BasicSR's own pipelines, with BasicSR's parser
PIPELINES = ('kd_plugin/cli/train.py', 'kd_plugin/cli/test.py', 'kd_plugin.cli.train', 'kd_plugin.cli.test')


def test_every_flag_a_readme_command_shows_is_accepted():
    """Every flag a README or docs command passes (``python -m kd_plugin.cli.<tool>`` or its console script
    ``kd-<tool>``) is one the tool's --help (or BasicSR's parser) lists; every ``kd-*`` command is a console script
    setup.py installs."""
    for command in COMMANDS:
        words = shlex.split(command)
        script = next((w for w in words if w.startswith('kd-')), None)
        if script:
            assert script in CONSOLE_SCRIPTS, f'`{command}`: {script} is not a console script of setup.py'
            words = [*words[:words.index(script)], 'python', '-m', CONSOLE_SCRIPTS[script],
                     *words[words.index(script) + 1:]]
            command = shlex.join(words)
        if any(p in command for p in PIPELINES):
            flags = {w.split('=')[0] for w in words if w.startswith('-') and not w.startswith('--nproc')
                     and not w.startswith('--master') and w != '-m'}
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


def _outside_code(text: str) -> str:
    """A page without its fenced code blocks and inline code (where `[x](y)` is not a link)."""
    return re.sub(r'`[^`\n]*`', '', re.sub(r'```.*?```', '', text, flags=re.S))


#: (page, target) of every relative markdown link and image; the anchor after ``#`` is not checked
LINKS = [(page, target) for page, text in PAGES.items()
         for target in re.findall(r'!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)', _outside_code(text))
         if not re.match(r'[a-z]+:', target) and not target.startswith('#')]


@pytest.mark.parametrize('page,target', LINKS)
def test_relative_links_and_images_resolve(page, target):
    path = osp.normpath(osp.join(ROOT, osp.dirname(page), target.split('#')[0]))
    assert osp.exists(path), f'{page}: link {target} points to {osp.relpath(path, ROOT)}, which does not exist'


def test_pages_have_links_to_check():
    """The link test above has something to check (the README links into docs/ and shows a figure)."""
    assert any(page == 'README.md' and target.endswith('.png') for page, target in LINKS)
    assert len({page for page, _ in LINKS}) > 5


#: every ``options/....yml`` named anywhere in the pages (prose, tables, code), placeholders and patterns aside
OPTIONS_FILES = sorted({name for text in PAGES.values()
                        for name in re.findall(r'(?<![\w/.])options/[\w./+-]+?\.yml(?![\w])', text)
                        if '...' not in name})


@pytest.mark.parametrize('name', OPTIONS_FILES)
def test_every_options_file_named_exists(name):
    pages = [page for page, text in PAGES.items() if name in text]
    assert osp.isfile(osp.join(ROOT, name)), f'{name} (named in {", ".join(pages)}) does not exist'
    with open(osp.join(ROOT, name)) as f:
        assert isinstance(yaml.safe_load(f), dict), f'{name} is not an options mapping'


def test_options_files_are_found():
    assert len(OPTIONS_FILES) > 20
    assert 'options/train/KD/train_KD_HDRNet_to_DeformableHDRNet_T91_x4.yml' in OPTIONS_FILES
