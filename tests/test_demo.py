"""The README's main job, ``python -m kd_plugin.cli.demo`` (``make demo``), on a few iterations."""
import glob
import json
import os
import sys
from os import path as osp

import cv2
import pytest

from kd_plugin.checkpoint_io import listed_sha256, sha256
from kd_plugin.cli import demo
from kd_plugin.runs import SHA256SUMS as TEACHER_SHA256
from kd_plugin.runs import SHIPPED_TEACHER as TEACHER
from kd_plugin.runs import training_seconds
from tests.helpers import ROOT, run, tool_in_process


def test_shipped_teacher_matches_its_published_sha256():
    listed = listed_sha256(osp.join(ROOT, TEACHER_SHA256))
    assert listed[osp.basename(TEACHER)] == sha256(osp.join(ROOT, TEACHER))
    docs = ''.join(open(path).read() for path in glob.glob(osp.join(ROOT, 'docs', '*.md')))
    assert listed[osp.basename(TEACHER)] in docs  # the documentation states it


def test_every_shipped_checkpoint_is_listed_with_its_sha256():
    folder = osp.join(ROOT, 'checkpoints')
    listed = listed_sha256(osp.join(ROOT, TEACHER_SHA256))
    shipped = sorted(n for n in os.listdir(folder) if n.endswith('.pth'))
    assert shipped and sorted(listed) == shipped
    for name in shipped:
        assert listed[name] == sha256(osp.join(folder, name)), name


def test_demo_end_to_end_and_a_second_run_archives_the_first(exp_name):
    args = ['--total-iter', '4', '--tag', exp_name]
    first = run([sys.executable, '-m', 'kd_plugin.cli.demo', *args], timeout=900)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    out = osp.join(ROOT, 'results', exp_name)
    results = json.load(open(osp.join(out, 'results.json')))
    scores, runs = results['scores'], results['runs']
    assert list(scores) == ['bicubic', 'student (no KD)', 'student (KD)', 'teacher']
    # equal time: the student alone gets the KD run's measured training time plus the label-building
    # time, at the student's timed cost per iteration
    timing = json.load(open(osp.join(out, 'equal_time.json')))
    labels = runs['student (KD)']['label_seconds']
    assert labels > 0 and runs['student (KD)']['iterations'] == 4
    kd_seconds = training_seconds(runs['student (KD)']['name'])
    assert runs['student (no KD)']['iterations'] == round((kd_seconds + labels) / timing['student_iteration_s'])
    assert f'student alone for the same time: {runs["student (no KD)"]["iterations"]} iterations' in first.stdout
    assert scores['teacher']['psnr'] > scores['bicubic']['psnr'] + 0.5  # the shipped teacher is trained
    table = open(osp.join(out, 'results.md')).read()
    rows = [line.split(' |')[0] for line in table.splitlines() if line.startswith('| ')][1:]
    assert rows == ['| bicubic', '| student (no KD)', '| student (KD)', '| teacher'] and '| student (KD) | 4 |' in table
    figure = cv2.imread(osp.join(out, 'side_by_side.png'))
    assert figure is not None and figure.shape[1] >= 5 * 96 * 3  # five panels side by side
    kd_ckpt = osp.join(ROOT, 'experiments', f'{exp_name}_KD_HDRNet_to_DeformableHDRNet_photos_x4', 'models',
                       'net_g_latest.pth')
    assert f'distilled student:  {kd_ckpt}' in first.stdout and osp.isfile(kd_ckpt)
    assert f'side-by-side crops: {osp.join(out, "side_by_side.png")}' in first.stdout
    assert 'Teacher on photos_val (computed once)' in first.stdout  # BasicSR's log lines are shown

    second = tool_in_process(demo.main, *args, '--no-baseline')  # in this process: one start-up less
    assert second.returncode == 0, second.stderr[-3000:]
    assert 's, counted below)' in second.stdout and 'built earlier in' in second.stdout  # labels reused
    archived = [d for d in os.listdir(osp.join(ROOT, 'results')) if d.startswith(f'{exp_name}_archived_')]
    assert len(archived) == 1 and osp.isfile(osp.join(ROOT, 'results', archived[0], 'results.md'))
    experiments = os.listdir(osp.join(ROOT, 'experiments'))
    assert any(d.startswith(f'{exp_name}_KD_HDRNet_to_DeformableHDRNet_photos_x4_archived_') for d in experiments)


def test_readme_starts_with_the_two_commands_and_make_runs_them():
    readme = open(osp.join(ROOT, 'README.md')).read()
    first_block = readme.split('```bash\n', 1)[1].split('```', 1)[0]
    commands = [line.split('#')[0].strip() for line in first_block.splitlines() if line.strip()]
    assert commands == ['make demo', 'make test']
    makefile = open(osp.join(ROOT, 'Makefile')).read()
    assert '$(BIN)/python -m kd_plugin.cli.demo' in makefile.split('\ndemo:')[1].split('\n\n')[0]
    assert '$(BIN)/python -m pytest' in makefile.split('\ntest:')[1]
    assert 'make test' in open(osp.join(ROOT, '.ci', 'run')).read()


def test_a_modified_checkpoint_fails_its_listed_sha256(tmp_path):
    from kd_plugin.checkpoint_io import verify_listed_sha256

    (tmp_path / 'teacher.pth').write_bytes(b'weights')
    (tmp_path / 'SHA256SUMS').write_text(f'{sha256(str(tmp_path / "teacher.pth"))}  teacher.pth\n')
    assert verify_listed_sha256(str(tmp_path / 'teacher.pth'), str(tmp_path / 'SHA256SUMS')).endswith('teacher.pth')
    (tmp_path / 'teacher.pth').write_bytes(b'weights, changed')
    with pytest.raises(ValueError, match=r'teacher.pth has SHA-256 [0-9a-f]{64}, expected [0-9a-f]{64} .*Fix: git '
                                         r'checkout'):
        verify_listed_sha256(str(tmp_path / 'teacher.pth'), str(tmp_path / 'SHA256SUMS'))
