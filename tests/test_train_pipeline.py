"""BasicSR's own pipeline through kd_plugin/cli/train.py and kd_plugin/cli/test.py, on tiny data, on CPU."""
import os
import sys
from os import path as osp

from tests.helpers import ROOT, experiment, run, sr_options, torchrun_train, train, train_log, write_options


def test_disk_train_validate_checkpoint_auto_resume_elsewhere_and_test(tiny_pairs, exp_name, tmp_path):
    opt = sr_options(exp_name, tiny_pairs, total_iter=4)
    opt_path = write_options(str(tmp_path), opt)
    first = train(opt_path)
    assert first.returncode == 0, first.stderr[-3000:]
    log = train_log(exp_name)
    assert '# psnr:' in log and '# ssim:' in log
    for it in (2, 4):
        assert osp.isfile(experiment(exp_name, 'models', f'net_g_{it}.pth'))
        assert osp.isfile(experiment(exp_name, 'training_states', f'{it}.state'))

    # resume from another working directory to a longer schedule
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    resumed = train(opt_path, '--auto_resume', '--force_yml', 'train:total_iter=6', cwd=str(elsewhere))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'Resuming training from epoch: ' in train_log(exp_name) and 'iter: 4.' in train_log(exp_name)
    assert osp.isfile(experiment(exp_name, 'models', 'net_g_6.pth'))
    assert not [d for d in os.listdir(osp.join(ROOT, 'experiments')) if d.startswith(f'{exp_name}_archived')]
    assert not (elsewhere / 'experiments').exists()

    # the saved model evaluates with BasicSR's test pipeline
    test_opt = {k: opt[k] for k in ('model_type', 'scale', 'num_gpu', 'network_g', 'val')}
    test_opt.update(name=exp_name, manual_seed=0, datasets={'test_1': opt['datasets']['val']},
                    path={'pretrain_network_g': experiment(exp_name, 'models', 'net_g_latest.pth'),
                          'strict_load_g': True, 'param_key_g': 'params'})
    tested = run([sys.executable, osp.join(ROOT, 'kd_plugin', 'cli', 'test.py'), '-opt',
                  write_options(str(tmp_path / 'elsewhere'), test_opt)], cwd=str(elsewhere))
    assert tested.returncode == 0, tested.stderr[-3000:]
    results = osp.join(ROOT, 'results', exp_name)
    test_logs = ''.join(open(osp.join(results, f)).read() for f in os.listdir(results) if f.endswith('.log'))
    assert 'Loading EDSR model from' in test_logs and '# psnr:' in test_logs


def test_lmdb_train_and_val_on_same_database_with_workers(tiny_pairs, exp_name, tmp_path):
    opt = sr_options(exp_name, tiny_pairs, backend='lmdb', total_iter=8)
    opt['datasets']['train']['num_worker_per_gpu'] = 2  # workers are forked again after each validation
    result = train(write_options(str(tmp_path), opt))
    assert result.returncode == 0, result.stderr[-3000:]
    log = train_log(exp_name)
    assert log.count('# psnr:') >= 4  # validations at 2, 4, 6, 8 (+ final)
    assert 'already open' not in result.stderr



def test_torchrun_two_cpu_processes(tiny_pairs, exp_name, tmp_path):
    opt = sr_options(exp_name, tiny_pairs, total_iter=4)
    opt['datasets']['train']['batch_size_per_gpu'] = 1
    result = torchrun_train(write_options(str(tmp_path), opt))
    assert result.returncode == 0, result.stderr[-3000:]
    log = train_log(exp_name)
    assert 'World size (gpu number): 2' in log
    assert "'dist': True" in log or 'dist: True' in log
    assert '# psnr:' in log  # rank 0 validated
    assert osp.isfile(experiment(exp_name, 'models', 'net_g_latest.pth'))
