"""Checkpoints from strangers: a pickle that would run code is refused before it runs, everywhere."""
import os
from os import path as osp

import pytest
import torch

from kd_plugin.checkpoint_io import load_weights_only
from tests.helpers import experiment, sr_options, train, train_log, write_options
from tests.kd_fixtures import kd_options, save_teacher


class _Payload:
    """Unpickling this calls ``exec`` on code that creates ``marker``: a real code-execution pickle."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return exec, (f'open({self.marker!r}, "w").write("pwned")',)


def malicious_checkpoint(folder, name: str = 'evil.pth') -> tuple[str, str]:
    marker = osp.join(str(folder), 'code_ran')
    path = osp.join(str(folder), name)
    torch.save({'params': {'weight': torch.zeros(1)}, 'extra': _Payload(marker)}, path)
    return path, marker


def test_the_payload_really_runs_code_when_unpickled_unsafely(tmp_path):
    path, marker = malicious_checkpoint(tmp_path)
    torch.load(path, weights_only=False)  # what an unsafe loader would do
    assert osp.isfile(marker)


def test_load_weights_only_refuses_with_the_option_named(tmp_path):
    path, marker = malicious_checkpoint(tmp_path)
    with pytest.raises(ValueError, match=r'path\.pretrain_network_t: refused to load .*evil\.pth.*could run code'):
        load_weights_only(path, 'path.pretrain_network_t')
    assert not osp.exists(marker)
    truncated = tmp_path / 'truncated.pth'
    torch.save({'params': {'w': torch.zeros(1000)}}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:300])
    with pytest.raises(ValueError, match=r'path\.pretrain_network_g: cannot read .*truncated\.pth.*truncated'):
        load_weights_only(str(truncated), 'path.pretrain_network_g')


def test_malicious_teacher_is_refused_before_the_run(tiny_pairs, exp_name, tmp_path):
    path, marker = malicious_checkpoint(tmp_path)
    result = train(write_options(str(tmp_path), kd_options(exp_name, tiny_pairs, path)))
    assert result.returncode == 2
    assert 'error: path.pretrain_network_t: refused to load' in result.stderr
    assert not osp.exists(marker) and not osp.exists(experiment(exp_name))


def test_malicious_student_and_resume_state_are_refused(tiny_pairs, exp_name, tmp_path):
    path, marker = malicious_checkpoint(tmp_path)
    opt = sr_options(exp_name, tiny_pairs, total_iter=2)
    opt['path']['pretrain_network_g'] = path
    result = train(write_options(str(tmp_path), opt))
    assert result.returncode == 2 and 'error: path.pretrain_network_g: refused to load' in result.stderr
    assert not osp.exists(marker)

    # a finished run whose latest training state was swapped for a malicious one
    opt['path']['pretrain_network_g'] = None
    opt_path = write_options(str(tmp_path), opt)
    assert train(opt_path).returncode == 0
    evil_state, marker = malicious_checkpoint(experiment(exp_name, 'training_states'), '99.state')
    before = sorted(os.listdir(experiment(exp_name)))
    log_before = train_log(exp_name)
    resumed = train(opt_path, '--auto_resume')
    assert resumed.returncode == 2 and 'error: --auto_resume state: refused to load' in resumed.stderr
    assert '99.state' in resumed.stderr and not osp.exists(marker)
    assert sorted(os.listdir(experiment(exp_name))) == before and train_log(exp_name) == log_before


def test_teacher_checkpoint_in_basicsr_format_still_loads(tmp_path):
    path = save_teacher(str(tmp_path))
    assert set(load_weights_only(path, 'path.pretrain_network_t')) == {'params'}
