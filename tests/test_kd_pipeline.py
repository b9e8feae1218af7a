"""KDModel end to end through kd_plugin/cli/train.py and kd_plugin/cli/test.py, on tiny data, on CPU."""
import os
import sys
from os import path as osp

import pytest
import torch

from tests.helpers import ROOT, experiment, run, torchrun_train, train, train_log, write_options
from tests.kd_fixtures import TINY_STUDENT, kd_options


@pytest.mark.parametrize('backend', ['disk', 'lmdb'])
def test_kd_run_validates_saves_resumes_and_tests(tiny_pairs, teacher, exp_name, tmp_path, backend):
    opt = kd_options(exp_name, tiny_pairs, teacher, backend)
    opt_path = write_options(str(tmp_path), opt)
    first = train(opt_path)
    assert first.returncode == 0, first.stderr[-3000:]
    log = train_log(exp_name)
    assert log.count('Teacher on tiny_val (computed once): psnr:') == 1
    assert '# psnr:' in log and 'l_dist:' in log and 'l_feat:' in log and 'l_fwd:' in log
    student = torch.load(experiment(exp_name, 'models', 'net_g_4.pth'), weights_only=True)
    assert list(student) == ['params'] and all(not k.startswith(('net_t', 'adapter')) for k in student['params'])
    adapters = torch.load(experiment(exp_name, 'models', 'net_adapters_4.pth'), weights_only=True)['params']
    assert any(k.startswith('forward_adaptation.conv') for k in adapters)

    resumed = train(opt_path, '--auto_resume', '--force_yml', 'train:total_iter=6', cwd=str(tmp_path))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = train_log(exp_name)
    assert f'Loading ModuleDict model from {experiment(exp_name, "models", "net_adapters_4.pth")}' in log
    assert log.count(f'Loading HDRNet model from {teacher}') == 2  # the teacher keeps its own path on resume
    assert osp.isfile(experiment(exp_name, 'models', 'net_adapters_6.pth'))

    # the student checkpoint is a plain student: BasicSR's SRModel evaluates it with the student arch alone
    test_opt = {'name': exp_name, 'model_type': 'SRModel', 'scale': 2, 'num_gpu': 'auto', 'manual_seed': 0,
                'network_g': dict(TINY_STUDENT), 'datasets': {'test_1': opt['datasets']['val']}, 'val': opt['val'],
                'path': {'pretrain_network_g': experiment(exp_name, 'models', 'net_g_latest.pth'),
                         'strict_load_g': True}}
    tested = run([sys.executable, osp.join(ROOT, 'kd_plugin', 'cli', 'test.py'), '-opt',
                  write_options(str(tmp_path), dict(test_opt, name=exp_name))])
    assert tested.returncode == 0, tested.stderr[-3000:]
    results = osp.join(ROOT, 'results', exp_name)
    assert '# psnr:' in ''.join(open(osp.join(results, f)).read() for f in os.listdir(results) if f.endswith('.log'))


def test_bad_layer_name_fails_before_anything_is_written(tiny_pairs, teacher, exp_name, tmp_path):
    opt = kd_options(exp_name, tiny_pairs, teacher)
    opt['train']['feature_opt']['pairs'][0]['teacher'] = 'coeffs.gird'
    result = train(write_options(str(tmp_path), opt))
    assert result.returncode == 2
    assert "train.feature_opt.pairs[0].teacher: HDRNet has no layer 'coeffs.gird'. Closest valid names: " \
           'coeffs.grid' in result.stderr
    assert not osp.exists(experiment(exp_name))



def test_kd_torchrun_two_processes_stay_in_step_write_once_and_skip_a_nan_together(tiny_pairs, teacher, exp_name,
                                                                                    tmp_path):
    """Two CPU processes (gloo) with feature matching, forward adaptation (1x1-conv adapters) and data
    upcycling (extra student passes outside the DDP wrapper), a NaN injected on rank 1 only at
    iteration 2 and ``nan_policy: skip`` (tests/ddp_probe_train.py probes)."""
    opt = kd_options(exp_name, tiny_pairs, teacher, total_iter=6)
    opt['datasets']['train']['batch_size_per_gpu'] = 1
    opt['train']['nan_policy'] = 'skip'
    opt['train']['upcycle'] = {'zoom_in': {'prob': 0.5}, 'zoom_out': {'prob': 0.5}, 'consistency': {'prob': 0.5}}
    probes = tmp_path / 'probes'
    probes.mkdir()
    result = torchrun_train(write_options(str(tmp_path), opt), timeout=90, script=osp.join(ROOT, 'tests',
                            'ddp_probe_train.py'), env={'KD_PROBE_DIR': str(probes), 'KD_PROBE_NAN': '1:2'})
    # a rank skipping alone used to hang DDP here; 90 s guard (the run takes about 10 s on 2 cores)
    assert result.returncode == 0, result.stderr[-3000:]
    log = train_log(exp_name)
    assert 'World size (gpu number): 2' in log and 'l_fwd:' in log and 'l_up_out:' in log
    assert 'Teacher on tiny_val' in log
    assert log.count('step skipped on every rank') == 1  # rank 0's own loss was finite; it skipped with rank 1

    ranks = [torch.load(probes / f'rank{r}_state.pth', weights_only=True) for r in (0, 1)]
    assert any(k.endswith('conv.weight') for k in ranks[0]['adapters'])
    for part in ('net_g', 'adapters'):  # adapters started from each rank's own seed and never lined up before
        for key, value in ranks[0][part].items():
            assert torch.equal(value, ranks[1][part][key]), f'{part}.{key} differs between ranks'

    written = (probes / 'rank0_writes.txt').read_text().split()
    assert {osp.basename(p) for p in written} >= {'net_g_2.pth', 'net_adapters_2.pth', '2.state', 'net_g_latest.pth'}
    assert not (probes / 'rank1_writes.txt').exists()  # every rank wrote every checkpoint before
