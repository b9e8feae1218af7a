"""``kd_plugin.runs`` (the project's layout, shortened runs, launching) and ``kd_plugin.cli.common`` (the
command-line conventions every tool shares)."""
import socket
import sys

import pytest
import yaml

from kd_plugin import runs
from kd_plugin.cli.common import Parser, add_device, add_sets, output_dir, tool
from kd_plugin.device import pick_device
from tests.helpers import ROOT


def _opt(total: int, scheduler: dict) -> dict:
    return {'name': 'x', 'train': {'total_iter': total, 'warmup_iter': 50, 'scheduler': scheduler},
            'val': {'val_freq': 2000}, 'logger': {'save_checkpoint_freq': 500, 'print_freq': 100}}


def test_shortened_runs_scale_the_schedule_by_hand():
    cosine = runs.with_total_iter(_opt(12000, {'periods': [4000, 8000]}), 300)
    assert cosine['train']['scheduler']['periods'] == [100, 200] and cosine['train']['total_iter'] == 300
    assert cosine['train']['warmup_iter'] == 30  # a tenth of the run at most
    assert cosine['val']['val_freq'] == 300 and cosine['logger']['save_checkpoint_freq'] == 300
    assert cosine['logger']['print_freq'] == 100  # already fits
    odd = runs.with_total_iter(_opt(1000, {'periods': [1, 1, 1]}), 100)['train']['scheduler']['periods']
    assert sum(odd) == 100 and odd == [33, 33, 34]  # the last period absorbs rounding
    steps = runs.with_total_iter(_opt(300000, {'milestones': [200000, 250000]}), 3000)
    assert steps['train']['scheduler']['milestones'] == [2000, 2500]
    original = _opt(12000, {'periods': [12000]})
    runs.with_total_iter(original, 10)
    assert original['train']['total_iter'] == 12000  # the caller's options are left alone


def test_layout_paths_and_the_one_options_loader(tmp_path):
    assert runs.latest_weights('abc') == f'{ROOT}/experiments/abc/models/net_g_latest.pth'
    assert runs.experiment_dir('abc', '/r') == '/r/experiments/abc'
    assert runs.TRAIN_SCRIPT == f'{ROOT}/kd_plugin/cli/train.py'
    written = runs.write_options({'name': 'run', 'a': [1, 2]}, str(tmp_path / 'o'))
    assert written.endswith('o/run.yml') and runs.load_options(written) == {'name': 'run', 'a': [1, 2]}
    with pytest.raises(ValueError, match="options file '.*missing.yml' does not exist"):
        runs.load_options(str(tmp_path / 'missing.yml'))
    (tmp_path / 'list.yml').write_text('- a\n- b\n')
    with pytest.raises(ValueError, match='is not a YAML mapping'):
        runs.load_options(str(tmp_path / 'list.yml'))


def test_torchrun_command_takes_a_port_nothing_listens_on():
    cmd = runs.torchrun_command('x.yml', 2, '--auto_resume')
    assert cmd[:3] == [sys.executable, '-m', 'torch.distributed.run'] and '--nproc_per_node=2' in cmd
    assert cmd[-5:] == ['-opt', 'x.yml', '--launcher', 'pytorch', '--auto_resume']
    assert cmd[-7:-5] == ['-m', 'kd_plugin.cli.train']  # the module form: runs in the folder it starts in
    port = int(next(a for a in cmd if a.startswith('--master_port=')).split('=')[1])
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', port))  # free: binding succeeds


def test_launch_train_passes_every_output_line_and_the_status(tmp_path):
    bad = tmp_path / 'bad.yml'
    bad.write_text(yaml.safe_dump({'name': 'launch_probe', 'model_type': 'SRModel', 'scale': 2, 'num_gpu': 0,
                                   'network_g': {'type': 'NoSuchArch'}, 'path': {}, 'datasets': {}}))
    lines = []
    status, seconds = runs.launch_train(str(bad), on_line=lines.append)
    assert status == 2 and seconds > 0
    assert any(line.startswith('error: ') and 'NoSuchArch' in line for line in lines), lines[-5:]


def test_parser_takes_both_spellings_and_errors_exit_2_with_one_line(capsys):
    parser = Parser('prog')
    parser.add_argument('--tile-overlap', type=int, default=1)
    parser.add_argument('--auto_resume', action='store_true')
    assert parser.parse_args(['--tile_overlap', '3', '--auto-resume']).tile_overlap == 3
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(['--tile-overlap', 'x'])
    assert stop.value.code == 2 and capsys.readouterr().err.strip().splitlines()[-1].startswith('error: ')


def test_tool_turns_library_errors_into_status_2(capsys):
    @tool('probe')
    def main(argv=None):
        if argv == ['missing']:
            raise FileNotFoundError('no such file')
        if argv == ['bug']:
            raise KeyError('a bug stays a traceback')
        raise ValueError('--thing: bad. Fix: another')

    assert main([]) == 2 and capsys.readouterr().err == 'error: probe: --thing: bad. Fix: another\n'
    assert main(['missing']) == 2 and 'error: probe: no such file' in capsys.readouterr().err
    with pytest.raises(KeyError):
        main(['bug'])


def test_shared_options_device_sets_and_output():
    parser = Parser('prog')
    add_device(parser)
    add_sets(parser, ['Set5'])
    args = parser.parse_args(['--device', 'cpu', '--sets', 'Set14', 'my/folder', '--data_root', 'd'])
    assert (args.device, args.sets, args.data_root) == ('cpu', ['Set14', 'my/folder'], 'd')
    with pytest.raises(SystemExit):
        parser.parse_args(['--device', 'tpu'])
    assert pick_device('cpu').type == 'cpu' and pick_device('auto').type in ('cpu', 'cuda')
    if not __import__('torch').cuda.is_available():
        with pytest.raises(ValueError, match='--device cuda: no CUDA device is visible. Fix: --device cpu'):
            pick_device('cuda')
    assert output_dir(None, 'bench') == f'{ROOT}/results/bench' and output_dir('mine', 'bench') == 'mine'


def test_dataset_paths_are_read_from_the_project_root_and_the_options_are_not_changed():
    dataset = {'dataroot_gt': 'datasets/T91/X4/HR', 'dataroot_lq': '/data/LR', 'dataroot_teacher': None,
               'meta_info_file': 'meta/info.txt', 'gt_size': 64, 'name': 'datasets/not_a_path'}
    rooted = runs.dataset_from_project_root(dataset)
    assert rooted == {'dataroot_gt': f'{runs.project_root()}/datasets/T91/X4/HR', 'dataroot_lq': '/data/LR',
                      'dataroot_teacher': None, 'meta_info_file': f'{runs.project_root()}/meta/info.txt',
                      'gt_size': 64, 'name': 'datasets/not_a_path'}
    assert dataset['dataroot_gt'] == 'datasets/T91/X4/HR'  # a copy
