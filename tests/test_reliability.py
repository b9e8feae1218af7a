"""Nothing is lost when a KD run is killed, and identical runs are identical."""
import glob
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from os import path as osp

import pytest
import torch
from basicsr.archs import build_network

from tests.helpers import ROOT, TRAIN_SCRIPT, experiment, torchrun_train, train, train_log, write_options
from tests.kd_fixtures import TINY_STUDENT, kd_options


def checkpoint_files(name: str) -> list[str]:
    return sorted(glob.glob(experiment(name, 'models', '*.pth')) + glob.glob(experiment(name, 'training_states',
                                                                                          '*.state')))


def last_iteration(log: str) -> int:
    lines = [line for line in log.splitlines() if 'iter:' in line and 'lr:(' in line]
    return max((int(line.split('iter:')[1].split(',')[0]) for line in lines), default=0)


def test_sigkill_at_random_points_loses_nothing_and_auto_resume_finishes(tiny_pairs, teacher, exp_name, tmp_path):
    total, every = 600, 7
    opt = kd_options(exp_name, tiny_pairs, teacher, total_iter=total)
    opt['logger']['save_checkpoint_freq'] = every  # so kills land in steps, validations and saves alike
    opt['val']['val_freq'] = every * 3
    opt_path = write_options(str(tmp_path), opt)
    cmd = [sys.executable, TRAIN_SCRIPT, '-opt', opt_path, '--auto_resume']
    env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')
    rng = random.Random(int(os.environ.get('KILL_TEST_SEED', '0')))
    kills = []
    for _ in range(3):
        earlier = set(glob.glob(experiment(exp_name, 'train_*.log')))
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        # wait for this process's own log to say "Start training", then kill at a random moment
        while time.time() < deadline and proc.poll() is None:
            new = set(glob.glob(experiment(exp_name, 'train_*.log'))) - earlier
            if new and 'Start training' in open(new.pop()).read():
                break
            time.sleep(0.05)
        time.sleep(rng.uniform(0.2, 3.0))
        assert proc.poll() is None, f'finished before the kill: {proc.stderr.read().decode()[-2000:]}'
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        newest = max(glob.glob(experiment(exp_name, 'train_*.log')), key=os.path.getmtime)
        kills.append(last_iteration(open(newest).read()))
        # whatever carries a checkpoint's name is complete and loads
        for path in checkpoint_files(exp_name):
            torch.load(path, weights_only=True)
    assert 0 < kills[-1] < total  # the kills did interrupt training
    started = time.time()

    final = train(opt_path, '--auto_resume')
    assert final.returncode == 0, final.stderr[-3000:]
    print(f'\nSIGKILL after iterations {kills} (last printed), then --auto_resume to {total} in '
          f'{time.time() - started:.0f} s')
    log = train_log(exp_name)
    assert 'End of training' in log and last_iteration(log) == total
    loss_lines = [line for line in log.splitlines() if 'l_fwd:' in line]
    assert loss_lines and all('nan' not in line and 'inf' not in line for line in loss_lines)
    starts = log.count('Start training from epoch')
    assert log.count(f'Loading HDRNet model from {teacher}') == starts  # the teacher reloads from its own path
    assert log.count('Resuming training from epoch') >= 1
    student = build_network(dict(TINY_STUDENT))
    student.load_state_dict(torch.load(experiment(exp_name, 'models', 'net_g_latest.pth'),
                                       weights_only=True)['params'])
    assert osp.isfile(experiment(exp_name, 'models', f'net_adapters_{total - total % every}.pth'))


def test_two_identical_kd_runs_give_identical_losses_and_weights(tiny_pairs, teacher, tmp_path):
    names = [f'pytest_det_{os.getpid()}_{i}' for i in range(2)]
    try:
        logs, weights = [], []
        for name in names:
            opt = kd_options(name, tiny_pairs, teacher, total_iter=4)
            result = train(write_options(str(tmp_path), opt))
            assert result.returncode == 0, result.stderr[-3000:]
            logs.append([line.split(']')[-1] for line in train_log(name).splitlines() if 'l_dist:' in line])
            weights.append(torch.load(experiment(name, 'models', 'net_g_latest.pth'), weights_only=True)['params'])
        assert len(logs[0]) == 4 and logs[0] == logs[1]
        assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    finally:
        for name in names:
            shutil.rmtree(experiment(name), ignore_errors=True)


def test_one_failing_rank_ends_the_whole_ddp_job_with_its_error(tiny_pairs, teacher, exp_name, tmp_path):
    """Rank 1 raises at iteration 2 while rank 0 waits in DDP's all-reduce: the job must not hang."""
    opt = kd_options(exp_name, tiny_pairs, teacher, total_iter=20)
    opt['datasets']['train']['batch_size_per_gpu'] = 1
    started = time.time()
    result = torchrun_train(write_options(str(tmp_path), opt), timeout=240, env={'KD_PROBE_RAISE': '1:2'},
                            script=osp.join(ROOT, 'tests', 'ddp_probe_train.py'))
    elapsed = time.time() - started
    assert result.returncode != 0
    assert 'injected failure on rank 1' in result.stderr  # the failing rank's error is shown
    assert elapsed < 120, f'took {elapsed:.0f} s'
    print(f'\nDDP job with a failing rank exited {result.returncode} after {elapsed:.0f} s')


@pytest.mark.parametrize('lost', ['net_g_4.pth', 'net_adapters_4.pth'])
def test_resume_with_a_lost_network_checkpoint_is_refused_before_anything_is_written(tiny_pairs, teacher, exp_name,
                                                                                    tmp_path, lost):
    """Resuming 4.state without net_g_4.pth used to continue at iteration 4 with fresh student weights."""
    opt = kd_options(exp_name, tiny_pairs, teacher, total_iter=4)
    opt_path = write_options(str(tmp_path), opt)
    assert train(opt_path).returncode == 0
    os.remove(experiment(exp_name, 'models', lost))
    before = {p: os.path.getmtime(p) for p in glob.glob(experiment(exp_name, '**'), recursive=True)}
    result = train(opt_path, '--auto_resume', '--force_yml', 'train:total_iter=6')
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"needs '{experiment(exp_name, 'models', lost)}', which does not exist" in result.stderr
    assert 'would restart from scratch with the saved optimizer. Fix: restore that file' in result.stderr
    assert 'Traceback' not in result.stderr
    assert {p: os.path.getmtime(p) for p in glob.glob(experiment(exp_name, '**'), recursive=True)} == before
