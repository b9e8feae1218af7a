"""``python -m kd_plugin.cli.gpu_check``: the GPU command's code paths, run on the CPU (``--smoke``)."""
import json
import os
import sys

from kd_plugin.cli import gpu_check
from tests.helpers import ROOT, run


def test_smoke_run_writes_every_section_and_leaves_no_experiment(tmp_path):
    before = set(os.listdir(os.path.join(ROOT, 'experiments'))) if os.path.isdir(os.path.join(ROOT, 'experiments')) \
        else set()
    assert gpu_check.main(['--smoke', '--output', str(tmp_path), '--budget', '400']) == 0
    results = json.load(open(tmp_path / 'gpu_check.json'))
    assert results['environment']['smoke'] is True
    assert results['kd_training']['ok'] and results['kd_training']['backend'] == 'gloo'  # as the log says
    assert 'dist_backend: gloo' in (tmp_path / 'kd_training.log').read_text()
    assert 'l_dist:' in results['kd_training']['last_log_line']  # the KD run really trained
    assert set(results['arch_costs']) == set(gpu_check.PEERS)
    assert all(row['cpu_fp32_ms'] > 0 and row['gflops'] > 0 for row in results['arch_costs'].values())
    assert set(results['kd_overhead']) == set(gpu_check.KD_FILES)
    assert all(row['kd'] > 0 and 'kd_peak_mib' not in row for row in results['kd_overhead'].values())
    assert 'ms' in results['onnxruntime'] or 'skipped' in results['onnxruntime']
    labels = results['teacher_labels']
    assert labels['images'] == 2 and labels['ensemble'] == 'x8' and labels['lr_megapixels_per_s'] > 0, labels
    text = (tmp_path / 'gpu_check.md').read_text()
    assert text.startswith('# gpu_check (smoke, CPU)') and '| ECBSR (M4C16) |' in text
    assert '## Teacher labels' in text and 'Peak memory: not measured.' in text  # CPU peaks: kd_overhead's own
    assert (tmp_path / 'kd_training.log').is_file()
    # only its own runs: tests in other pytest workers add their pytest_* experiments meanwhile
    after = set(os.listdir(os.path.join(ROOT, 'experiments')))
    assert not [name for name in after - before if name.startswith('gpu_check')]


def test_without_cuda_and_without_smoke_it_explains_in_one_line(tmp_path):
    result = run([sys.executable, '-m', 'kd_plugin.cli.gpu_check', '--output', str(tmp_path)],
                 env={'CUDA_VISIBLE_DEVICES': ''})
    assert result.returncode == 2
    assert result.stderr.strip() == ('error: gpu_check needs a CUDA device (none is visible here); use --smoke for '
                                     'a CPU dry run')
    assert not (tmp_path / 'gpu_check.json').exists()


def test_the_backend_reported_is_the_one_the_run_logged_not_one_guessed_from_flags():
    """A --smoke run on a CUDA machine trains with nccl; the report used to say gloo from its flags."""
    dump = '2026-11-30 INFO: \n  dist: True\n  rank: 0\n  world_size: 1\n  dist_backend: nccl\n  auto_resume: False\n'
    assert gpu_check.logged_backend(dump) == 'nccl'
    assert gpu_check.logged_backend(dump.replace('nccl', 'gloo')) == 'gloo'
    assert gpu_check.logged_backend('Traceback: the run failed before logging its options') is None
