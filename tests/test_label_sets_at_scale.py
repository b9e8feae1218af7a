"""Cached label sets as a real training set meets them: thousands of labels, two builds at once, LR images
that changed, a researcher's own KDModel subclass, the teacher's precision in the manifest."""
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from os import path as osp

import cv2
import numpy as np
import pytest
import torch
from basicsr.utils.registry import MODEL_REGISTRY

from kd_plugin.data import label_cache, lr_identity
from kd_plugin.data.label_arrays import LabelArrays, write_label_arrays
from kd_plugin.data.label_cache import build_label_set, check_label_set, load_teachers
from kd_plugin.models.kd_model import KDModel, is_kd_model
from tests.helpers import ROOT, fails_cleanly, train_in_process, write_options
from tests.kd_fixtures import kd_options

COUNT = 3000  # labels in the large set: three times what 1,024 open files allowed


@pytest.fixture(scope='module')
def many_pairs(tmp_path_factory) -> str:
    """``COUNT`` pairs of 16x16 HR / 4x4 LR images and an array store of labels (the HR images themselves)."""
    root = tmp_path_factory.mktemp('many')
    rng = np.random.default_rng(0)
    for kind in ('HR', 'LR', 'labels'):
        os.makedirs(root / kind)
    names = [f'im{i:05d}' for i in range(COUNT)]
    for name in names:
        hr = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        cv2.imwrite(str(root / 'HR' / f'{name}.png'), hr)
        cv2.imwrite(str(root / 'LR' / f'{name}.png'), hr[::4, ::4])
        cv2.imwrite(str(root / 'labels' / f'{name}.png'), 255 - hr)
    json.dump({'complete': True}, open(root / 'labels' / 'manifest.json', 'w'))
    write_label_arrays(str(root / 'labels'), str(root / 'labels.npy'), names, str(root / 'labels' / 'manifest.json'))
    return str(root)


_READ_ALL = '''
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
import kd_plugin, torch
from basicsr.data import build_dataset
root = sys.argv[1]
dataset = build_dataset({{'name': 'many', 'type': 'KDPairedImageDataset', 'phase': 'train', 'scale': 4,
                          'io_backend': {{'type': 'disk'}}, 'dataroot_gt': root + '/HR', 'dataroot_lq': root + '/LR',
                          'dataroot_teacher': root + '/labels.npy', 'gt_size': 16, 'use_hflip': True,
                          'use_rot': True}})
checked = 0
for i in range(len(dataset)):
    sample = dataset[i]
    checked += bool(torch.allclose(sample['teacher'], 1 - sample['gt'], atol=1e-6))
loader = torch.utils.data.DataLoader(dataset, batch_size=100, num_workers=2)
print(checked, sum(batch['teacher'].shape[0] for batch in loader))
'''


@pytest.mark.parametrize('limit', [1024, 128])
def test_a_label_set_larger_than_the_open_file_limit_is_read_whole(many_pairs, limit):
    """Every label of a 3,000-label array store is read, in one process and by two loader workers, under an
    open-file limit of 1,024 and of 128: the store holds one descriptor per process, not one per label."""
    result = subprocess.run([sys.executable, '-c', _READ_ALL.format(limit=limit), many_pairs], cwd=ROOT,
                            capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [str(COUNT), str(COUNT)]  # each label is its GT's negative, crop and flips alike


def test_the_index_gives_every_label_its_own_bytes(many_pairs):
    arrays = LabelArrays(osp.join(many_pairs, 'labels.npy'))
    assert len(arrays.index) == COUNT and arrays.sizes()['im00007'] == (16, 16)
    for name in ('im00000', 'im01500', f'im{COUNT - 1:05d}'):
        assert np.array_equal(arrays[name], cv2.imread(osp.join(many_pairs, 'labels', f'{name}.png')))
    assert not arrays[name].flags.writeable  # a view into the read-only map


# ----------------------------------------------------------------------------- building
def _teachers(tiny_pairs, teacher, tmp_path, **train_teacher):
    opt = kd_options('labels', tiny_pairs, teacher)
    opt['train']['teacher'] = train_teacher
    teachers, precision = load_teachers(opt, None, torch.device('cpu'), fp32=False)
    return opt, teachers, precision


def test_the_manifest_names_the_precision_as_the_run_log_does(tiny_pairs, teacher, tmp_path):
    assert _teachers(tiny_pairs, teacher, tmp_path, autocast='bf16')[2] == 'bf16'
    assert _teachers(tiny_pairs, teacher, tmp_path)[2] == 'fp32'


def test_two_builds_of_one_label_set_take_turns_and_the_finished_set_survives(tiny_pairs, teacher, tmp_path, capsys):
    """Two demos with different tags share a label folder. The second build waits for the first (a lock beside
    the set), then reuses its result; before the lock, a lagging build re-created the partial folder and
    replaced the finished set with a partial one marked complete."""
    opt, teachers, precision = _teachers(tiny_pairs, teacher, tmp_path)
    output = str(tmp_path / 'labels')
    results = {}

    def slowly(items):
        for item in items:
            time.sleep(0.3)
            yield item

    def build(who, reuse, progress):
        results[who] = build_label_set(opt['datasets']['train'], 2, teachers, 'none', output, torch.device('cpu'),
                                       precision, npy=True, reuse=reuse, progress=progress)

    first = threading.Thread(target=build, args=('first', False, slowly))
    first.start()
    time.sleep(0.4)  # the first build is labelling its second image
    second = threading.Thread(target=build, args=('second', True, lambda items: items))
    second.start()
    first.join()
    second.join()
    assert 'another process is writing it' in capsys.readouterr().out
    assert results['second'] == results['first'] and results['first']['complete']
    assert sorted(os.listdir(output)) == ['img0.png', 'img1.png', 'img2.png', 'img3.png', 'manifest.json']
    assert not osp.exists(output + '.partial') and sorted(LabelArrays(output + '.npy').index) == results['first'][
        'names']
    with pytest.raises(FileExistsError, match='a finished label set is kept'):  # not reused unless asked to
        build('third', False, lambda items: items)


def test_a_set_missing_a_label_is_not_marked_complete(tiny_pairs, teacher, tmp_path):
    opt, teachers, precision = _teachers(tiny_pairs, teacher, tmp_path)
    output = str(tmp_path / 'labels')

    def losing_one(items):  # a label written, then lost (as another writer of the folder could)
        yield from items
        os.remove(osp.join(output + '.partial', 'img2.png'))

    with pytest.raises(RuntimeError, match=r"1 labels are missing after the build \(e.g. \['img2'\]\)"):
        build_label_set(opt['datasets']['train'], 2, teachers, 'none', output, torch.device('cpu'), precision,
                        progress=losing_one)
    assert not osp.exists(output)
    assert not json.load(open(osp.join(output + '.partial', 'manifest.json')))['complete']


# ----------------------------------------------------------------------------- the LR images' identity
def test_lr_images_are_recognised_by_their_pixels_and_rehashed_only_when_their_files_changed(tiny_pairs, tmp_path,
                                                                                             monkeypatch):
    train_set = {'dataroot_gt': osp.join(tiny_pairs, 'HR'), 'dataroot_lq': osp.join(tiny_pairs, 'LR'),
                 'io_backend': {'type': 'disk'}}
    pairs = label_cache.training_pairs(train_set)
    manifest = lr_identity.record(train_set, pairs)
    hashed = []
    real = lr_identity.lr_digests
    monkeypatch.setattr(lr_identity, 'lr_digests', lambda *a: hashed.append(1) or real(*a))
    assert lr_identity.changed(train_set, pairs, manifest) == [] and hashed == []  # same files: no decoding
    copy = tmp_path / 'LR'
    os.makedirs(copy)
    for name in os.listdir(osp.join(tiny_pairs, 'LR')):  # the same pixels, written again (new times, sizes)
        cv2.imwrite(str(copy / name), cv2.imread(osp.join(tiny_pairs, 'LR', name)), [cv2.IMWRITE_PNG_COMPRESSION, 0])
    moved = dict(train_set, dataroot_lq=str(copy))
    moved_pairs = label_cache.training_pairs(moved)
    assert lr_identity.changed(moved, moved_pairs, manifest) == [] and hashed == [1]
    img = cv2.imread(str(copy / 'img3.png'))
    img[0, 0] = 255 - img[0, 0]  # one pixel
    cv2.imwrite(str(copy / 'img3.png'), img)
    assert lr_identity.changed(moved, moved_pairs, manifest) == ['img3']


def test_touched_lr_files_are_rehashed_once_and_then_recorded(tiny_pairs, teacher, tmp_path, monkeypatch):
    """After ``touch`` (or a copy) the LR files' times differ from the manifest; the pixels are hashed once, found
    the same, and the manifest records the new times, so the next check decodes nothing."""
    pairs = tmp_path / 'pairs'
    shutil.copytree(tiny_pairs, pairs)
    opt, teachers, precision = _teachers(str(pairs), teacher, tmp_path)
    output = str(tmp_path / 'labels')
    build_label_set(opt['datasets']['train'], 2, teachers, 'none', output, torch.device('cpu'), precision)
    opt['datasets']['train'].update(type='KDPairedImageDataset', dataroot_teacher=output)
    for name in os.listdir(pairs / 'LR'):
        os.utime(pairs / 'LR' / name, ns=(1_000_000_000, 1_000_000_000))
    hashed = []
    real = lr_identity.lr_digests
    monkeypatch.setattr(lr_identity, 'lr_digests', lambda *a: hashed.append(1) or real(*a))
    check_label_set(opt)
    assert hashed == [1]
    recorded = json.load(open(osp.join(output, 'manifest.json')))['lr_files']
    assert {facts[1] for facts in recorded.values()} == {1_000_000_000}
    check_label_set(opt)
    assert hashed == [1]  # the cheap check again


# ----------------------------------------------------------------------------- a researcher's own KDModel
@MODEL_REGISTRY.register()
class LabelTestScheduledKDModel(KDModel):
    """A researcher's KDModel subclass, registered from outside the plugin; it records its steps."""
    steps: list[int] = []

    def optimize_parameters(self, current_iter: int) -> None:
        type(self).steps.append(current_iter)
        super().optimize_parameters(current_iter)


def test_a_kdmodel_subclass_gets_the_label_checks_and_the_pre_run_checks(label_set_for_subclass, tiny_pairs, teacher,
                                                                         exp_name, tmp_path):
    labels = label_set_for_subclass
    assert is_kd_model('LabelTestScheduledKDModel') and is_kd_model('KDModel')
    assert not is_kd_model('SRModel') and not is_kd_model('NoSuchModel') and not is_kd_model(None)
    opt = kd_options(exp_name, tiny_pairs, teacher, total_iter=2)
    opt['model_type'] = 'LabelTestScheduledKDModel'
    opt['datasets']['train'].update(type='KDPairedImageDataset', dataroot_teacher=labels)
    for key in ('feature_opt', 'forward_opt'):
        opt['train'].pop(key)
    check_label_set(opt)  # accepted: no teacher digest given, nothing else is wrong

    scaled = json.load(open(osp.join(labels, 'manifest.json')))
    wrong = str(tmp_path / 'wrong')
    shutil.copytree(labels, wrong)
    json.dump(dict(scaled, scale=3), open(osp.join(wrong, 'manifest.json'), 'w'))
    refused = dict(opt, datasets={**opt['datasets'], 'train': {**opt['datasets']['train'], 'dataroot_teacher': wrong}})
    fails_cleanly(refused, tmp_path, 'are x3, this run is x2')  # the label check ran for the subclass
    bad_layer = kd_options(exp_name, tiny_pairs, teacher, total_iter=2)
    bad_layer['model_type'] = 'LabelTestScheduledKDModel'
    bad_layer['train']['feature_opt']['pairs'][0]['student'] = 'no.such.layer'
    shutil.rmtree(osp.join(ROOT, 'experiments', exp_name))
    fails_cleanly(bad_layer, tmp_path, "has no layer 'no.such.layer'")  # so did the KD pre-run checks

    shutil.rmtree(osp.join(ROOT, 'experiments', exp_name))
    status, err = train_in_process(write_options(str(tmp_path), opt))
    assert status == 0, err[-2000:]
    assert LabelTestScheduledKDModel.steps == [1, 2]  # the run trained with the subclass, on the labels
    assert osp.isfile(osp.join(ROOT, 'experiments', exp_name, 'models', 'net_g_latest.pth'))


@pytest.fixture
def label_set_for_subclass(tiny_pairs, teacher, tmp_path) -> str:
    opt, teachers, precision = _teachers(tiny_pairs, teacher, tmp_path)
    output = str(tmp_path / 'labels')
    build_label_set(opt['datasets']['train'], 2, teachers, 'none', output, torch.device('cpu'), precision)
    return output
