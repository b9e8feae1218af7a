"""Multi-task distillation: ``MultiTaskKDDataset`` mixes tasks in their stated shares, each sample labelled by
its own task's teacher; labels are built and checked per task; the file trains under train.py and torchrun."""
import json
import os
import random
import shutil
from os import path as osp

import cv2
import numpy as np
import pytest
import torch
from basicsr.data import build_dataset

from kd_plugin.ablation import runner, variants
from kd_plugin.checkpoint_io import sha256
from kd_plugin.cli import prepare
from kd_plugin.data.label_arrays import write_label_arrays
from kd_plugin.data.multi_task_dataset import task_counts
from tests.helpers import fails_cleanly, tool_in_process, torchrun_train, train, train_log, write_options
from tests.kd_fixtures import kd_options, save_teacher


def fake_labels(tiny_pairs: str, folder: str, fn) -> str:
    """An array store whose label of each image is ``fn(GT)``; returns its path."""
    os.makedirs(folder)
    names = sorted(osp.splitext(n)[0] for n in os.listdir(osp.join(tiny_pairs, 'HR')) if n.endswith('.png'))
    for name in names:
        cv2.imwrite(osp.join(folder, f'{name}.png'), fn(cv2.imread(osp.join(tiny_pairs, 'HR', f'{name}.png'))))
    json.dump({'complete': True}, open(osp.join(folder, 'manifest.json'), 'w'))
    write_label_arrays(folder, folder + '.npy', names, osp.join(folder, 'manifest.json'))
    return folder + '.npy'


def test_task_counts_follow_the_weights_and_show_every_image():
    assert task_counts({'A': 4, 'B': 4}, {'A': 1, 'B': 1}) == {'A': 4, 'B': 4}
    assert task_counts({'A': 4, 'B': 4}, {'A': 1, 'B': 2}) == {'A': 4, 'B': 8}
    assert task_counts({'A': 10, 'B': 2}, {'A': 1, 'B': 1}) == {'A': 10, 'B': 10}  # the small task repeats


def test_each_sample_is_labelled_by_its_own_tasks_teacher(tiny_pairs, tmp_path):
    negative = fake_labels(tiny_pairs, str(tmp_path / 'neg'), lambda gt: 255 - gt)
    same = fake_labels(tiny_pairs, str(tmp_path / 'same'), lambda gt: gt)
    dataset = build_dataset({
        'name': 'mt', 'type': 'MultiTaskKDDataset', 'phase': 'train', 'scale': 2, 'io_backend': {'type': 'disk'},
        'gt_size': 32, 'use_hflip': True, 'use_rot': True,
        'tasks': {'A': {'dataroot_gt': osp.join(tiny_pairs, 'HR'), 'dataroot_lq': osp.join(tiny_pairs, 'LR'),
                        'dataroot_teacher': negative, 'weight': 1},
                  'B': {'dataroot_gt': osp.join(tiny_pairs, 'HR'), 'dataroot_lq': osp.join(tiny_pairs, 'LR'),
                        'dataroot_teacher': same, 'weight': 2}}})
    assert len(dataset) == 12 and dataset.counts == {'A': 4, 'B': 8}
    random.seed(0)
    tasks = []
    for i in range(len(dataset)):
        sample = dataset[i]
        tasks.append(sample['task'])
        expected = 1 - sample['gt'] if sample['task'] == 'A' else sample['gt']  # crops and flips follow the GT
        assert torch.allclose(sample['teacher'], expected, atol=1e-6), (i, sample['task'])
    assert tasks == ['A'] * 4 + ['B'] * 8
    loader = torch.utils.data.DataLoader(dataset, batch_size=6, shuffle=True)
    batch = next(iter(loader))
    assert batch['teacher'].shape == (6, 3, 32, 32) and len(batch['task']) == 6


def multi_task_options(name: str, tiny_pairs: str, teachers: dict[str, str], labels: dict[str, str],
                       total_iter: int = 2) -> dict:
    """A tiny x2 multi-task KD run: tasks named by ``teachers`` (each its own checkpoint), pixel loss and output
    distillation against each task's labels; validation sets per task."""
    opt = kd_options(name, tiny_pairs, next(iter(teachers.values())), total_iter=total_iter)
    for key in ('feature_opt', 'forward_opt'):
        opt['train'].pop(key)
    train_set = opt['datasets']['train']
    tasks = {task: {'dataroot_gt': train_set['dataroot_gt'], 'dataroot_lq': train_set['dataroot_lq'],
                    'dataroot_teacher': labels[task], 'pretrain_network_t': teachers[task]} for task in teachers}
    opt['datasets']['train'] = {**{k: v for k, v in train_set.items() if not k.startswith('dataroot_')},
                                'type': 'MultiTaskKDDataset', 'tasks': tasks}
    val = opt['datasets'].pop('val')
    for i, task in enumerate(teachers):
        opt['datasets'][f'val_{i}'] = dict(val, name=f'val_{task}', task=task)
    return opt


@pytest.fixture(scope='module')
def two_task_labels(tiny_pairs, tmp_path_factory):
    """Labels of two tasks on the tiny pairs, each made by its own teacher through ``prepare teacher-labels`` on
    the multi-task file; returns (teachers, labels, options folder)."""
    folder = tmp_path_factory.mktemp('multi')
    teachers = {'A': save_teacher(str(folder / 'tA'), seed=0), 'B': save_teacher(str(folder / 'tB'), seed=1)}
    labels = {task: str(folder / f'labels_{task}_none.npy') for task in teachers}
    opt_path = write_options(str(folder), multi_task_options('mt_labels', tiny_pairs, teachers, labels))
    built = tool_in_process(prepare.main, 'teacher-labels', '-opt', opt_path, '--ensemble', 'none', '--fp32')
    assert built.returncode == 0, built.stderr[-3000:]
    assert 'A: ' in built.stdout and 'B: ' in built.stdout
    return teachers, labels, folder


def test_prepare_labels_every_task_with_its_own_teacher(two_task_labels):
    teachers, labels, _ = two_task_labels
    for task, store in labels.items():
        manifest = json.load(open(osp.join(store, 'manifest.json')))
        assert [t['sha256'] for t in manifest['teachers']] == [sha256(teachers[task])]
        assert sorted(os.listdir(store)) == ['index.json', 'labels.u8', 'manifest.json']
    a = np.fromfile(osp.join(labels['A'], 'labels.u8'), np.uint8)
    b = np.fromfile(osp.join(labels['B'], 'labels.u8'), np.uint8)
    assert a.shape == b.shape and not np.array_equal(a, b)


def test_the_multi_task_file_trains_with_train_py_and_torchrun(two_task_labels, tiny_pairs, exp_name, tmp_path):
    teachers, labels, _ = two_task_labels
    opt = multi_task_options(exp_name, tiny_pairs, teachers, labels)
    result = train(write_options(str(tmp_path), opt))
    assert result.returncode == 0, result.stderr[-3000:]
    log = train_log(exp_name)
    assert 'Teacher of task A on val_A' in log and 'Teacher of task B on val_B' in log  # each task's own teacher
    scores = {task: float(log.split(f'Teacher of task {task} on val_{task} (computed once): psnr: ')[1].split(',')[0])
              for task in teachers}
    assert scores['A'] != scores['B']
    ddp = dict(opt, name=f'{exp_name}_ddp')
    result = torchrun_train(write_options(str(tmp_path), ddp), nproc=2)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'End of training' in train_log(f'{exp_name}_ddp')


def test_labels_of_another_teacher_are_refused_naming_the_task(two_task_labels, tiny_pairs, exp_name, tmp_path):
    teachers, labels, _ = two_task_labels
    swapped = dict(teachers, B=teachers['A'])
    opt = multi_task_options(exp_name, tiny_pairs, swapped, labels)
    fails_cleanly(opt, tmp_path, 'datasets.train.tasks.B.dataroot_teacher: the labels in',
                  'not by datasets.train.tasks.B.pretrain_network_t')
    shutil.rmtree(osp.join(osp.dirname(osp.dirname(__file__)), 'experiments', exp_name))
    partial = dict(labels)
    partial.pop('B')
    opt = multi_task_options(exp_name, tiny_pairs, teachers, {**partial, 'B': None})
    opt['datasets']['train']['tasks']['B'].pop('dataroot_teacher')
    fails_cleanly(opt, tmp_path, 'datasets.train.tasks: A have a dataroot_teacher and B not')


def test_the_ablation_takes_the_labels_away_from_every_task_and_scores_each_tasks_teacher(two_task_labels,
                                                                                        tiny_pairs):
    teachers, labels, _ = two_task_labels
    recipe = multi_task_options('mt', tiny_pairs, teachers, labels)
    assert variants.label_roots(recipe) == [labels['A'], labels['B']]
    alone = variants.variant_options(recipe, 'no_kd', 0)
    assert alone['datasets']['train']['type'] == 'MultiTaskKDDataset'
    assert all('dataroot_teacher' not in task for task in alone['datasets']['train']['tasks'].values())
    assert variants.variant_options(recipe, 'recipe', 0)['datasets'] == recipe['datasets']
    rows = runner.teacher_entries(recipe)
    assert list(rows) == ['teacher', 'teacher A', 'teacher B'] and rows['teacher B'].checkpoint == teachers['B']
    seconds = sum(json.load(open(osp.join(labels[t], 'manifest.json')))['seconds'] for t in labels)
    assert runner.label_seconds(recipe) == pytest.approx(seconds)  # every task's build, charged in full
    checked = runner.with_checkpoint_checksums(recipe)['checkpoint_sha256']
    assert checked['datasets.train.tasks.B.pretrain_network_t'] == sha256(teachers['B'])


def test_tasks_with_their_own_teachers_are_never_taught_online_by_the_runs_teacher(two_task_labels, tiny_pairs,
                                                                                   exp_name, tmp_path):
    """Without labels KDModel runs path.pretrain_network_t (A's) on every sample: task B, whose teacher is its own,
    would silently learn A's outputs. The run is refused and the ablation offers no online_labels variant."""
    teachers, labels, _ = two_task_labels
    recipe = multi_task_options(exp_name, tiny_pairs, teachers, labels)
    assert 'online_labels' not in variants.available_variants(recipe)
    with pytest.raises(ValueError, match="variant 'online_labels' does not apply"):
        variants.variant_options(recipe, 'online_labels', 0)
    online = multi_task_options(exp_name, tiny_pairs, teachers, labels)
    for task in online['datasets']['train']['tasks'].values():
        task.pop('dataroot_teacher')
    fails_cleanly(online, tmp_path, 'datasets.train.tasks.B.pretrain_network_t: task B names its own teacher',
                  'Task B would be taught by that teacher, not its own', 'Fix: build every task')
    one_teacher = multi_task_options(exp_name, tiny_pairs, {'A': teachers['A'], 'B': teachers['A']}, labels)
    assert 'online_labels' in variants.available_variants(one_teacher)  # every task's teacher is the run's
