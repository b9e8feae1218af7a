"""The benchmark scripts run end to end on tiny settings (their figures are measured, not asserted)."""
import re

import pytest
import torch

from kd_plugin.benchmark import kd_overhead
from kd_plugin.benchmark.cost import onnxruntime_op_shares
from kd_plugin.cli import arch_cost
from tests.kd_fixtures import TINY_STUDENT, TINY_TEACHER, all_losses


def tiny_kd_options() -> dict:
    return {'scale': 2, 'network_g': dict(TINY_STUDENT), 'network_t': dict(TINY_TEACHER),
            'datasets': {'train': {'gt_size': 32, 'batch_size_per_gpu': 2}},
            'train': {'optim_g': {'type': 'Adam', 'lr': 1e-3},
                      'scheduler': {'type': 'MultiStepLR', 'milestones': [10], 'gamma': 0.5},
                      'teacher': {'autocast': None}, **all_losses()}}


def test_kd_overhead_measures_every_path_and_reports_ratios():
    row = kd_overhead.measure(tiny_kd_options(), 'cpu', runs=2, threads=1)
    for key in ('student', 'kd', 'kd_fwd', 'teacher', 'teacher_fp32', 'teacher_fast', 'up_zoom_in', 'up_zoom_out',
                'up_consistency', 'recipe', 'cached'):
        assert row[key] > 0, key
    for key in ('student', 'teacher', 'kd', 'recipe'):
        assert row[f'{key}_peak_mib'] >= 0, key
    assert row['teacher_path'] == 'fp32' and row['fast_path'] == 'bf16 + channels_last'
    text = kd_overhead.report(row, 'tiny')
    ratio = float(re.search(r'KD / \(student \+ teacher\) = ([0-9.]+)', text).group(1))
    assert abs(ratio - row['kd'] / (row['student'] + row['teacher'])) < 1e-3
    extra = float(re.search(r'upcycling zoom-in \(every step\) \| [0-9.]+ \| extra ([-0-9.]+) ms', text).group(1))
    assert abs(extra - (row['up_zoom_in'] - row['kd']) * 1e3) < 0.06
    cached = float(re.search(r'cached teacher labels .* \| [0-9.]+ \| \*\*([0-9.]+)x the student step', text).group(1))
    assert abs(cached - row['cached'] / row['student']) < 6e-3
    assert f'| | {row["student_peak_mib"]:.0f} | {row["teacher_peak_mib"]:.0f} |' in text
    without = kd_overhead.report({k: v for k, v in row.items() if not k.endswith('_peak_mib')}, 'tiny')
    assert without.endswith('Peak memory: not measured.') and '| peak memory' not in without


def test_kd_overhead_options_keep_the_files_losses_and_drop_only_forward_adaptation():
    opt = tiny_kd_options()
    kd = kd_overhead.model_options(opt, 't.pth', 'cpu', 'kd')
    assert {'distill_opt', 'feature_opt', 'pixel_opt'} <= set(kd['train']) and 'forward_opt' not in kd['train']
    assert 'forward_opt' in kd_overhead.model_options(opt, 't.pth', 'cpu', 'kd_fwd')['train']
    student = kd_overhead.model_options(opt, 't.pth', 'cpu', 'student')
    assert student['model_type'] == 'SRModel' and 'network_t' not in student
    assert set(student['train']) == {'optim_g', 'scheduler', 'pixel_opt'}
    assert 'forward_opt' in opt['train']  # the caller's options are not modified
    opt['train']['upcycle'] = {'zoom_out': {'prob': 0.2, 'gt_weight': 0.5}, 'zoom_in': {'prob': 0.5}}
    up = kd_overhead.model_options(opt, 't.pth', 'cpu', 'up_zoom_out')['train']
    assert up['upcycle'] == {'zoom_out': {'prob': 1.0, 'gt_weight': 0.5}} and 'forward_opt' not in up
    assert 'upcycle' not in kd_overhead.model_options(opt, 't.pth', 'cpu', 'kd')['train']
    recipe = kd_overhead.model_options(opt, 't.pth', 'cpu', 'recipe')['train']
    assert recipe['upcycle'] == opt['train']['upcycle'] and 'forward_opt' in recipe  # the file as it is
    cached = kd_overhead.model_options(opt, 't.pth', 'cpu', 'cached')['train']
    assert {'pixel_opt', 'distill_opt'} <= set(cached) and not {'feature_opt', 'forward_opt', 'upcycle'} & set(cached)


def test_arch_cost_prints_the_table(capsys):
    arch_cost.main(['--lr-size', '12', '20', '--runs', '1', '--threads', '1'])
    out = capsys.readouterr().out
    for name in ('HDRNet', 'DeformableHDRNet', 'EDSR (32x4)', 'SRVGGNetCompact', 'HDRNet, before',
                 'DeformableHDRNet, before'):  # the plugin's archs on the paths they ran before, beside
        assert f'| {name} |' in out
    assert "DeformableHDRNet: " in out and "DeformableHDRNet, before: " in out and '(target <= 0.7)' in out


def test_onnxruntime_op_shares_split_the_time_by_op_type():
    pytest.importorskip('onnxruntime')
    class TwoConvs(torch.nn.Module):  # forward(x): the exporter's dynamic shapes name the input x
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.Conv2d(32, 3, 3, padding=1)

        def forward(self, x):
            return self.b(torch.relu(self.a(x))) + x

    # convs dominate, and the shares are fractions of one whole
    net = TwoConvs()
    shares = onnxruntime_op_shares(net, (24, 32), threads=1, runs=2)
    assert abs(sum(shares.values()) - 1) < 1e-6
    assert 'Conv' in next(iter(shares)) and 'Add' in shares
