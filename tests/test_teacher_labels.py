"""Cached teacher labels: ``prepare teacher-labels``, ``KDPairedImageDataset`` and KDModel reading them."""
import json
import os
import re
import shutil
from os import path as osp

import cv2
import numpy as np
import pytest
import torch
from basicsr.archs import build_network
from basicsr.data import build_dataset
from basicsr.models import build_model

from kd_plugin.cli import prepare
from kd_plugin.data.label_arrays import LabelArrays
from kd_plugin.data.lr_identity import pixel_digest
from kd_plugin.distill.teacher_labels import label, self_ensemble, tiled
from tests.helpers import experiment, fails_cleanly, tool_in_process, torchrun_train, train, train_log, write_options
from tests.kd_fixtures import TINY_TEACHER, all_losses, kd_model_options, kd_options, save_teacher


def build_labels(opt_path: str, output: str, *extra: str):
    return tool_in_process(prepare.main, 'teacher-labels', '-opt', opt_path, '--output', output, *extra)


def cached_options(name: str, data: str, teacher: str, labels: str, backend: str = 'disk',
                   total_iter: int = 2) -> dict:
    """A tiny x2 KD run on cached labels: pixel loss + output distillation + label consistency."""
    opt = kd_options(name, data, teacher, backend=backend, total_iter=total_iter)
    opt['datasets']['train'].update(type='KDPairedImageDataset', dataroot_teacher=labels)
    for key in ('feature_opt', 'forward_opt'):
        opt['train'].pop(key)
    opt['train']['upcycle'] = {'consistency': {'prob': 1.0, 'weight': 1.0}}
    return opt


@pytest.fixture(scope='module')
def label_set(tiny_pairs, teacher, tmp_path_factory):
    """x8 labels of the tiny teacher on ``tiny_pairs`` (folder, LMDB and arrays); returns (options path, folder)."""
    folder = tmp_path_factory.mktemp('labels')
    opt_path = write_options(str(folder), kd_options('labels', tiny_pairs, teacher))
    out = str(folder / 'x8')
    result = build_labels(opt_path, out, '--lmdb', '--npy', '--ensemble', 'x8')
    assert result.returncode == 0, result.stderr[-3000:]
    return opt_path, out


def whole_image_x8(teacher: str, lr_path: str) -> np.ndarray:
    """The tiny teacher's x8 self-ensemble of the whole LR image, HWC RGB float in [0, 1] (no file involved)."""
    net = build_network(dict(TINY_TEACHER))
    net.load_state_dict(torch.load(teacher)['params'])
    net.eval()
    lr = cv2.imread(lr_path)[:, :, ::-1].astype(np.float32) / 255.0
    with torch.no_grad():
        out = self_ensemble(net, torch.from_numpy(lr.copy()).permute(2, 0, 1)[None])
    return out[0].clamp(0, 1).permute(1, 2, 0).numpy()


def test_labels_are_written_with_a_manifest_an_lmdb_and_arrays(label_set, tiny_pairs, teacher):
    _, out = label_set
    manifest = json.load(open(osp.join(out, 'manifest.json')))
    assert manifest['complete'] and manifest['count'] == 4 and manifest['names'] == ['img0', 'img1', 'img2', 'img3']
    assert manifest['scale'] == 2 and manifest['ensemble'] == 'x8'
    from kd_plugin.checkpoint_io import sha256

    assert [t['sha256'] for t in manifest['teachers']] == [sha256(teacher)]
    assert manifest['teachers'][0]['arch']['type'] == 'HDRNet'
    assert manifest['teachers'][0]['param_key'] == 'params' and manifest['precision'] == 'fp32'
    assert manifest['lr_source'] == {'dataroot_lq': osp.join(tiny_pairs, 'LR'), 'io_backend': 'disk'}
    # the LR images' identity: a digest of each decoded image, and each file's size and time
    lr1 = cv2.imread(osp.join(tiny_pairs, 'LR', 'img1.png'))
    assert manifest['lr_sha256']['img1'] == pixel_digest(lr1) and sorted(manifest['lr_sha256']) == manifest['names']
    assert manifest['lr_files']['img1'][0] == os.path.getsize(osp.join(tiny_pairs, 'LR', 'img1.png'))
    assert sorted(os.listdir(out)) == ['img0.png', 'img1.png', 'img2.png', 'img3.png', 'manifest.json']
    assert json.load(open(osp.join(out + '.lmdb', 'manifest.json'))) == manifest
    assert json.load(open(osp.join(out + '.npy', 'manifest.json'))) == manifest
    assert sorted(os.listdir(out + '.npy')) == ['index.json', 'labels.u8', 'manifest.json']
    arrays = LabelArrays(out + '.npy')
    assert os.path.getsize(osp.join(out + '.npy', 'labels.u8')) == 4 * 64 * 64 * 3
    for name in manifest['names']:
        assert np.array_equal(arrays[name], cv2.imread(osp.join(out, f'{name}.png')))
    # each label is the teacher's whole-image x8 output, rounded to 8 bits
    stored = cv2.imread(osp.join(out, 'img1.png'))[:, :, ::-1].astype(np.float32) / 255.0
    expected = whole_image_x8(teacher, osp.join(tiny_pairs, 'LR', 'img1.png'))
    assert stored.shape == (64, 64, 3) and np.abs(stored - expected).max() <= 0.5 / 255 + 1e-6


def _where(patch: np.ndarray, image: np.ndarray) -> tuple[int, int, int, bool]:
    """The position and the rotation/flip ``(top, left, k, flip)`` that cut ``patch`` out of ``image``
    (as ``rot90(flip(image[crop]), k)``)."""
    size = patch.shape[0]
    for flip in (False, True):
        for k in range(4):
            plain = np.rot90(patch, -k)
            plain = plain[:, ::-1] if flip else plain
            for top in range(image.shape[0] - size + 1):
                for left in range(image.shape[1] - size + 1):
                    if np.array_equal(image[top:top + size, left:left + size], plain):
                        return top, left, k, flip
    raise AssertionError('patch not found in its GT image')


def label_dataset(tiny_pairs: str, labels: str, phase: str = 'train'):
    return build_dataset({'name': 't', 'type': 'KDPairedImageDataset', 'phase': phase, 'scale': 2,
                          'io_backend': {'type': 'disk'}, 'dataroot_gt': osp.join(tiny_pairs, 'HR'),
                          'dataroot_lq': osp.join(tiny_pairs, 'LR'), 'dataroot_teacher': labels, 'gt_size': 24,
                          'use_hflip': True, 'use_rot': True})


@pytest.mark.parametrize('store', ['', '.npy'])
def test_the_label_of_a_crop_is_the_whole_image_output_there_flipped_with_the_gt(label_set, tiny_pairs, teacher,
                                                                                  store):
    _, out = label_set
    dataset = label_dataset(tiny_pairs, out + store)
    seen = set()
    np.random.seed(3)
    import random
    random.seed(3)
    for i in range(12):
        sample = dataset[i % 4]
        gt = sample['gt'].permute(1, 2, 0).numpy()
        name = osp.basename(sample['gt_path'])
        full = cv2.imread(osp.join(tiny_pairs, 'HR', name))[:, :, ::-1].astype(np.float32) / 255.0
        top, left, k, flip = _where(gt, full)
        seen.add((k, flip))
        whole = whole_image_x8(teacher, osp.join(tiny_pairs, 'LR', name))[top:top + 24, left:left + 24]
        whole = np.rot90(whole[:, ::-1] if flip else whole, k)
        got = sample['teacher'].permute(1, 2, 0).numpy()
        assert sample['teacher'].shape == sample['gt'].shape == (3, 24, 24)
        assert np.abs(got - whole).max() <= 1 / 255, (name, k, flip)
    assert len(seen) > 2  # the test really saw flips and rotations


@pytest.mark.parametrize('phase', ['train', 'val'])
def test_array_labels_give_the_samples_png_labels_give_bit_for_bit(label_set, tiny_pairs, phase):
    import random

    _, out = label_set
    samples = {}
    for store in ('', '.npy'):
        random.seed(5)
        dataset = label_dataset(tiny_pairs, out + store, phase)
        samples[store] = [dataset[i % 4] for i in range(8)]
    for png, arrays in zip(samples[''], samples['.npy']):
        assert torch.equal(png['gt'], arrays['gt']) and torch.equal(png['lq'], arrays['lq'])
        assert png['teacher'].dtype == arrays['teacher'].dtype == torch.float32
        assert torch.equal(png['teacher'], arrays['teacher'])
        assert arrays['teacher_path'] == osp.join(out + '.npy', osp.splitext(osp.basename(arrays['gt_path']))[0])
    # the memory-mapped file was only read: flips happen on a copy
    assert np.array_equal(LabelArrays(out + '.npy')['img1'], cv2.imread(osp.join(out, 'img1.png')))


def test_array_labels_are_one_map_per_process_and_not_pickled(label_set, tiny_pairs, monkeypatch):
    import pickle
    import random

    from kd_plugin.data import label_arrays

    _, out = label_set
    random.seed(5)
    reference = [label_dataset(tiny_pairs, out)[i % 4]['teacher'] for i in range(8)]
    opened = []
    real_memmap = np.memmap
    monkeypatch.setattr(label_arrays.np, 'memmap', lambda *a, **k: opened.append(a[0]) or real_memmap(*a, **k))
    random.seed(5)
    dataset = label_dataset(tiny_pairs, out + '.npy')
    samples = [dataset[i % 4]['teacher'] for i in range(8)]
    assert all(torch.equal(a, b) for a, b in zip(samples, reference))
    assert opened == [osp.join(out + '.npy', 'labels.u8')]  # one map for every label, opened at the first read
    copy = pickle.loads(pickle.dumps(dataset))
    assert copy.arrays._data is None  # a spawned worker maps the file itself
    assert np.array_equal(copy.arrays['img1'], cv2.imread(osp.join(out, 'img1.png')))


def test_tiled_labels_equal_whole_image_labels():
    torch.manual_seed(0)
    net = build_network({'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 2,
                         'upscale': 2}).eval()
    x = torch.rand(1, 3, 37, 45)
    with torch.no_grad():
        whole = label([net], x, 2, 'x8')
        pieces = label([net], x, 2, 'x8', tile=16, overlap=6)  # 6 LR px cover this EDSR's receptive field
        assert pieces.shape == whole.shape == (1, 3, 74, 90)
        assert (pieces - whole).abs().max() < 1 / 255
        assert (tiled(net, x, 2, 16, 0) - net(x)).abs().max() > 1 / 255  # without context, the cuts show
    with pytest.raises(ValueError, match='--tile 8 must be more than twice --tile-overlap 4'):
        tiled(net, x, 2, 8, 4)


def test_a_cached_label_step_runs_the_teacher_zero_times(teacher, tmp_path):
    losses = {'pixel_opt': all_losses()['pixel_opt'], 'distill_opt': all_losses()['distill_opt']}
    opt = kd_model_options(teacher, losses, str(tmp_path))
    opt['train']['upcycle'] = {'consistency': {'prob': 1.0, 'weight': 1.0}}
    model = build_model(opt)
    calls = []
    model.net_t.register_forward_hook(lambda *a: calls.append(1))
    batch = {'lq': torch.rand(2, 3, 16, 16), 'gt': torch.rand(2, 3, 32, 32)}
    model.feed_data({**batch, 'teacher': torch.rand(2, 3, 32, 32)})
    student = {n: p.clone() for n, p in model.net_g.named_parameters()}
    model.optimize_parameters(1)
    assert calls == [] and set(model.log_dict) == {'l_pix', 'l_dist', 'l_up_cons'}
    assert any(not torch.equal(p, student[n]) for n, p in model.net_g.named_parameters())
    # the distillation target is the label: a label equal to the student's output costs nothing
    with torch.no_grad():
        own = model.net_g(batch['lq'])
    model.feed_data({**batch, 'teacher': own})
    model.optimize_parameters(2)
    assert model.log_dict['l_dist'] == pytest.approx(0, abs=1e-6) and calls == []
    model.feed_data(batch)  # no labels: the teacher runs, once
    model.optimize_parameters(3)
    assert len(calls) == 1
    # a term that needs the live teacher still runs it, with labels present
    with_features = build_model(kd_model_options(teacher, {**losses, 'feature_opt': all_losses()['feature_opt']},
                                                 str(tmp_path)))
    with_features.net_t.register_forward_hook(lambda *a: calls.append(2))
    with_features.feed_data({**batch, 'teacher': torch.rand(2, 3, 32, 32)})
    with_features.optimize_parameters(1)
    assert calls.count(2) == 1
    # zoom-in and zoom-out run the teacher on their own inputs only: no pass on the patch that nothing reads
    zooms = kd_model_options(teacher, losses, str(tmp_path))
    zooms['train']['upcycle'] = {'zoom_in': {'prob': 1.0}, 'zoom_out': {'prob': 1.0}}
    zooming = build_model(zooms)
    inputs = []
    zooming.net_t.register_forward_hook(lambda module, args, out: inputs.append(tuple(args[0].shape)))
    zooming.feed_data({'lq': torch.rand(2, 3, 16, 16), 'gt': torch.rand(2, 3, 32, 32),
                       'teacher': torch.rand(2, 3, 32, 32)})
    zooming.optimize_parameters(1)
    assert sorted(inputs) == [(2, 3, 8, 8), (2, 3, 16, 16)]  # the zoom-out input and the zoom-in tiles
    assert set(zooming.log_dict) == {'l_pix', 'l_dist', 'l_up_in', 'l_up_out'}


def test_a_cached_label_run_trains_resumes_and_runs_under_torchrun(label_set, tiny_pairs, teacher, exp_name,
                                                                   tmp_path):
    _, out = label_set
    opt = cached_options(exp_name, tiny_pairs, teacher, out + '.npy', total_iter=2)
    opt['datasets']['train'].update(num_worker_per_gpu=1, prefetch_mode='cpu', num_prefetch_queue=2)
    path = write_options(str(tmp_path), opt)
    first = train(path)
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = train(path, '--auto_resume', '--force_yml', 'train:total_iter=4')
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    log = train_log(exp_name)
    assert 'Resuming training from epoch: 0, iter: 2' in log and re.search(r'iter:\s+4, lr.*l_dist: ', log)
    assert osp.isfile(experiment(exp_name, 'models', 'net_g_4.pth'))

    ddp = cached_options(f'{exp_name}_ddp', tiny_pairs, teacher, out + '.lmdb', backend='lmdb', total_iter=2)
    ddp['datasets']['train']['num_worker_per_gpu'] = 1
    result = torchrun_train(write_options(str(tmp_path), ddp))
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'l_dist:' in train_log(f'{exp_name}_ddp')


@pytest.mark.parametrize('spoil,needles', [
    ('teacher', ['datasets.train.dataroot_teacher: the labels in', 'not by path.pretrain_network_t']),
    ('scale', ['the labels in', 'are x3, this run is x2']),
    ('names', ['are for other images than dataroot_gt', "only in dataroot_gt: ['img3']"]),
    ('size', ["label 'img2' is 60x64, its GT 64x64"]),
    ('missing', ["no label for 'img0'"]),
    ('arrays_size', ["label 'img2' is 60x64, its GT 64x64"]),
    ('arrays_missing', ["no label for 'img0'"]),
    ('arrays_old', ['an array folder of the earlier kind', '--npy: the arrays are rebuilt from the PNG labels']),
    ('arrays_truncated', ['the label array store', 'is incomplete', 'labels.u8\' holds 24576 bytes and its index 49152',
                          'rebuilds the arrays from the PNG labels']),
    ('lr_other', ["1 of the 4 LR images in dataroot_lq", "(e.g. ['img1']", 'labels of inputs it never sees',
                  '--overwrite']),
    ('param_key', ["made from the checkpoint's 'params_ema' weights, and this run's teacher loads 'params'",
                   'path.param_key_t: params_ema']),
    ('old_manifest', ['built by an earlier kd_plugin', '--overwrite']),
    ('lmdb_on_disk', ["is an LMDB, which is read through io_backend lmdb, and this set's io_backend is disk",
                      'prepare teacher-labels --npy']),
    ('srmodel', ["teacher labels are read by KDModel (or a model registered as a subclass of it) only, and "
                 "model_type is 'SRModel'"]),
    ('unfinished', ['is unfinished']),
])
def test_labels_that_do_not_belong_to_the_run_are_refused_before_anything_is_written(
        label_set, tiny_pairs, teacher, exp_name, tmp_path, spoil, needles):
    _, out = label_set
    store = '.npy' if spoil.startswith('arrays_') else '.lmdb' if spoil == 'lmdb_on_disk' else ''
    labels = str(tmp_path / 'labels') + store
    shutil.copytree(out + store, labels)
    manifest = json.load(open(osp.join(labels, 'manifest.json')))
    opt = cached_options(exp_name, tiny_pairs, teacher, labels)
    if spoil == 'teacher':
        opt['path']['pretrain_network_t'] = save_teacher(str(tmp_path / 'other'), seed=5)
    elif spoil == 'scale':
        manifest['scale'] = 3
    elif spoil == 'names':
        manifest['names'] = manifest['names'][:3]
    elif spoil == 'size':
        cv2.imwrite(osp.join(labels, 'img2.png'), np.zeros((64, 60, 3), np.uint8))
    elif spoil == 'missing':
        os.remove(osp.join(labels, 'img0.png'))
    elif spoil == 'arrays_size':
        index = json.load(open(osp.join(labels, 'index.json')))
        index['labels']['img2'][1:3] = [64, 60]
        json.dump(index, open(osp.join(labels, 'index.json'), 'w'))
    elif spoil == 'arrays_missing':
        index = json.load(open(osp.join(labels, 'index.json')))
        del index['labels']['img0']
        json.dump(index, open(osp.join(labels, 'index.json'), 'w'))
    elif spoil == 'arrays_truncated':  # half copied
        os.truncate(osp.join(labels, 'labels.u8'), 4 * 64 * 64 * 3 // 2)
    elif spoil == 'arrays_old':
        os.remove(osp.join(labels, 'index.json'))  # one .npy per label, as kd_plugin wrote them before
    elif spoil == 'lr_other':  # a degraded copy of the LR images under the same names and sizes
        other = tmp_path / 'LR_other'
        shutil.copytree(osp.join(tiny_pairs, 'LR'), other)
        img = cv2.imread(str(other / 'img1.png'))
        cv2.imwrite(str(other / 'img1.png'), cv2.GaussianBlur(img, (5, 5), 1.0))
        opt['datasets']['train']['dataroot_lq'] = str(other)
    elif spoil == 'param_key':
        manifest['teachers'][0]['param_key'] = 'params_ema'
    elif spoil == 'old_manifest':
        del manifest['lr_sha256']
    elif spoil == 'srmodel':
        opt['model_type'] = 'SRModel'
        opt.pop('network_t')
        opt['train'] = {k: v for k, v in opt['train'].items() if k not in ('distill_opt', 'upcycle')}
    elif spoil == 'unfinished':
        manifest['complete'] = False
    json.dump(manifest, open(osp.join(labels, 'manifest.json'), 'w'))
    err = fails_cleanly(opt, tmp_path, *needles)
    assert 'Fix:' in err


def test_prepare_teacher_labels_resumes_and_never_overwrites_a_finished_set(tiny_pairs, teacher, tmp_path):
    opt_path = write_options(str(tmp_path), kd_options('labels', tiny_pairs, teacher))
    out = str(tmp_path / 'labels')
    assert build_labels(opt_path, out, '--ensemble', 'none').returncode == 0
    before = {n: os.path.getmtime(osp.join(out, n)) for n in os.listdir(out)}
    again = build_labels(opt_path, out, '--ensemble', 'none')
    assert again.returncode == 2 and 'already exists (a finished label set is kept)' in again.stderr
    assert {n: os.path.getmtime(osp.join(out, n)) for n in os.listdir(out)} == before
    # a store missing beside a finished set of the same settings is added from its PNGs; other settings are refused
    refused = build_labels(opt_path, out, '--ensemble', 'x8', '--npy')
    assert refused.returncode == 2 and 'already exists' in refused.stderr and not osp.exists(out + '.npy')
    added = build_labels(opt_path, out, '--ensemble', 'none', '--npy')
    assert added.returncode == 0, added.stderr[-2000:]
    assert {n: os.path.getmtime(osp.join(out, n)) for n in os.listdir(out)} == before
    assert np.array_equal(LabelArrays(out + '.npy')['img2'], cv2.imread(osp.join(out, 'img2.png')))
    twice = build_labels(opt_path, out, '--ensemble', 'none', '--npy')
    assert twice.returncode == 2 and 'already exists (a finished label set is kept)' in twice.stderr

    # an interrupted build: the partial folder holds two labels and an unfinished manifest
    partial = out + '.partial'
    shutil.copytree(out, partial)
    os.remove(osp.join(partial, 'img1.png'))
    os.remove(osp.join(partial, 'img3.png'))
    manifest = json.load(open(osp.join(partial, 'manifest.json')))
    json.dump(dict(manifest, complete=False), open(osp.join(partial, 'manifest.json'), 'w'))
    kept = os.path.getmtime(osp.join(partial, 'img0.png'))
    other = build_labels(opt_path, out, '--ensemble', 'x8', '--overwrite')
    assert other.returncode == 2 and 'unfinished label set made with other ensemble' in other.stderr
    resumed = build_labels(opt_path, out, '--ensemble', 'none', '--overwrite')
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert not osp.exists(partial) and sorted(n for n in os.listdir(out) if n.endswith('.png')) == [
        'img0.png', 'img1.png', 'img2.png', 'img3.png']
    assert os.path.getmtime(osp.join(out, 'img0.png')) == kept  # finished labels were not redone


def test_label_quality_scores_each_kind_of_label_against_the_gt(tiny_pairs, teacher, tmp_path):
    from kd_plugin.benchmark import label_quality
    from kd_plugin.distill.teacher_labels import TeacherRunner

    opt = kd_options('lq', tiny_pairs, teacher)
    nets = {}
    for name, seed in (('a', 0), ('b', 1)):
        net = build_network(dict(TINY_TEACHER))
        net.load_state_dict(torch.load(save_teacher(str(tmp_path / name), seed=seed))['params'])
        nets[name] = TeacherRunner(net)
    result = label_quality.measure(opt, nets, patches=2)
    assert set(result) == {'a', 'b', 'mean of teachers'}
    assert all(20 < v < 60 for cols in result.values() for v in cols.values()), result
    # a 32 px GT patch of a 64 px image at x2 is 16 LR px: the patch label differs from the whole-image one
    assert result['a']['patch'] != result['a']['whole']
    text = label_quality.report(result, 'tiny')
    assert f'| a | {result["a"]["patch"]:.2f} | {result["a"]["whole"]:.2f} (' in text


def test_the_ensemble_a_label_folder_names_is_read_back_and_a_name_without_one_is_refused(tmp_path):
    from kd_plugin.data.label_cache import Teacher, default_output, ensemble_in_name

    train_set = {'dataroot_gt': str(tmp_path / 'X4' / 'HR')}
    teachers = [Teacher({}, '/ckpt/HDRNet_T91_x4_6k.pth', lambda x: x)]
    for ensemble in ('none', 'x8'):
        made = default_output(train_set, teachers, ensemble)
        assert [ensemble_in_name(made + suffix) for suffix in ('', '.npy', '.lmdb', '.npy/')] == [ensemble] * 4
    for bad in ('datasets/X4/labels_HDRNet_T91_x4_6k.npy', 'datasets/X4/teacher_out_x8.npy'):
        with pytest.raises(ValueError, match=r'dataroot_teacher .*: the name does not say which ensemble built it'):
            ensemble_in_name(bad)


def test_prepare_writes_the_labels_where_the_options_file_reads_them_and_training_finds_them(tiny_pairs, teacher,
                                                                                             exp_name, tmp_path):
    """The README's two commands: ``prepare teacher-labels -opt FILE`` then ``train.py -opt FILE``. The labels go
    where FILE's dataroot_teacher points (it used to write labels_<teacher>_<ensemble> beside dataroot_gt, which the
    user's own file did not name); a missing set is named as missing, not as an old store."""
    store = str(tmp_path / 'my_labels' / 'labels_tiny_none.npy')
    opt = cached_options(exp_name, tiny_pairs, teacher, store)
    opt_path = write_options(str(tmp_path), opt)
    missing = fails_cleanly(opt, tmp_path, f"{store!r} does not exist", 'prepare teacher-labels -opt')
    assert 'earlier kind' not in missing
    with pytest.raises(ValueError, match='does not exist. Fix: python -m kd_plugin.cli.prepare teacher-labels'):
        LabelArrays(store)
    wrong = tool_in_process(prepare.main, 'teacher-labels', '-opt', opt_path, '--ensemble', 'x8')
    assert wrong.returncode == 2 and "names a none label set. Fix: --ensemble none" in wrong.stderr
    built = tool_in_process(prepare.main, 'teacher-labels', '-opt', opt_path, '--ensemble', 'none')
    assert built.returncode == 0, built.stderr[-2000:]
    assert sorted(os.listdir(tmp_path / 'my_labels')) == ['labels_tiny_none', 'labels_tiny_none.lock',
                                                         'labels_tiny_none.npy']  # .npy implied by the name
    assert not [n for n in os.listdir(osp.dirname(osp.join(tiny_pairs, 'HR'))) if n.startswith('labels_')]
    result = train(opt_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'l_dist:' in train_log(exp_name)
