"""kd_plugin as a dependency: built into a wheel, installed (not editable) into its own prefix, and run from
another folder, the user's project. Runs, results and relative paths stay in that folder; the shipped options
and checkpoints come with the installation."""
import os
import shutil
import subprocess
import sys
import sysconfig
from os import path as osp

import pytest

from tests.helpers import ROOT, run, write_options
from tests.kd_fixtures import kd_options

#: What a wheel is built from: the checkout without its working folders.
_NOT_SOURCE = ('.venv', '.git', 'datasets', 'experiments', 'results', 'tb_logger', '.pytest_cache', '.ruff_cache',
               '__pycache__', '*.egg-info', 'build', 'dist', '.whl')


@pytest.fixture(scope='module')
def installed(tmp_path_factory) -> dict[str, str]:
    """kd_plugin built into a wheel and installed with ``pip install --prefix``; returns the environment that
    puts it first on the path (this interpreter has its dependencies), and the prefix."""
    work = tmp_path_factory.mktemp('wheel')
    source = work / 'source'
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*_NOT_SOURCE), symlinks=True)
    pip = [sys.executable, '-m', 'pip', '--disable-pip-version-check', '-q']
    built = subprocess.run([*pip, 'wheel', '--no-deps', '--no-build-isolation', '-w', str(work / 'dist'),
                            str(source)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next((work / 'dist').glob('kd_plugin-*.whl'))
    prefix = work / 'prefix'
    # --ignore-installed: pip would otherwise uninstall the kd_plugin of the running environment first
    done = subprocess.run([*pip, 'install', '--no-deps', '--ignore-installed', '--prefix', str(prefix), str(wheel)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lib = sysconfig.get_path('purelib', vars={'base': str(prefix), 'platbase': str(prefix)})
    return {'PYTHONPATH': lib, 'prefix': str(prefix)}


def test_the_installed_package_is_imported_and_ships_its_options_and_checkpoints(installed, tmp_path):
    env = {'PYTHONPATH': installed['PYTHONPATH']}
    code = ('import kd_plugin, kd_plugin.runs as r; print(kd_plugin.__file__); '
            'print(r.shipped("checkpoints/HDRNet_T91_BSD400_x4_6k.pth")); '
            'print(r.shipped("options/train/KD/train_KD_HDRNet_to_DeformableHDRNet_photos_x4_labels.yml"))')
    result = run([sys.executable, '-c', code], cwd=str(tmp_path), env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    module, checkpoint, options = result.stdout.split()
    assert module.startswith(installed['PYTHONPATH'])  # the wheel's copy, not this checkout's
    share = osp.join(installed['prefix'], 'share', 'kd_plugin')
    assert checkpoint == osp.join(share, 'checkpoints', 'HDRNet_T91_BSD400_x4_6k.pth') and osp.isfile(checkpoint)
    assert options.startswith(share) and osp.isfile(options)


def test_installing_elsewhere_leaves_this_environments_kd_plugin_alone(installed, tmp_path):
    result = run([sys.executable, '-c', 'import kd_plugin; print(kd_plugin.__file__)'], cwd=str(tmp_path))
    assert result.returncode == 0 and result.stdout.strip() == osp.join(ROOT, 'kd_plugin', '__init__.py')


def test_a_run_from_the_users_project_lands_there(installed, tiny_pairs, teacher, tmp_path):
    """``kd-train -opt FILE`` (the console script) and ``python -m kd_plugin.cli.train`` from the user's project:
    the experiment is written there, relative paths in the file are read from there, and nothing is written
    into the installation or this checkout."""
    project = tmp_path / 'my_project'
    shutil.copytree(tiny_pairs, project / 'datasets' / 'tiny', ignore=shutil.ignore_patterns('*.lmdb'))
    shutil.copy(teacher, project / 'teacher.pth')
    opt = kd_options('installed_run', 'datasets/tiny', 'teacher.pth', total_iter=2)  # relative paths
    os.makedirs(project / 'options')
    opt_path = write_options(str(project / 'options'), opt)
    env = {'PYTHONPATH': installed['PYTHONPATH']}
    script = osp.join(installed['prefix'], 'bin', 'kd-train')
    for command, name in (([script, '-opt', 'options/installed_run.yml'], 'installed_run'),
                          ([sys.executable, '-m', 'kd_plugin.cli.train', '-opt', 'options/installed_run.yml',
                            '--force_yml', 'name=installed_run_m'], 'installed_run_m')):
        result = run(command, cwd=str(project), env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        assert osp.isfile(project / 'experiments' / name / 'models' / 'net_g_latest.pth')
        assert not osp.exists(osp.join(ROOT, 'experiments', name))
    assert not osp.exists(osp.join(installed['PYTHONPATH'], 'experiments'))
    assert opt_path.startswith(str(project))
