"""Distillation on LR-only images (no HR): label sets built for an LR folder, ``MixedKDDataset`` mixing paired and
LR-only sources in stated shares, ``KDModel``'s loss rule on mixed batches (GT losses on the GT samples only,
distillation on every sample), the combinations refused before a run, and the ablation's baselines."""
import json
import os
import random
import shutil
from collections import Counter
from os import path as osp

import cv2
import numpy as np
import pytest
import torch
from basicsr.data import build_dataset
from basicsr.data.data_sampler import EnlargedSampler
from basicsr.models import build_model

from kd_plugin.ablation import runner, variants
from kd_plugin.checkpoint_io import sha256
from kd_plugin.cli import prepare
from kd_plugin.data.bundled_photos import load_photo
from kd_plugin.data.lmdb_builder import build_lmdb
from tests.helpers import fails_cleanly, tool_in_process, train, train_log, write_options
from tests.kd_fixtures import all_losses, kd_model_options, kd_options, save_teacher
from tests.test_teacher_labels import _where, whole_image_x8

#: The LR-only images: 40x36 crops of bundled photos that the tiny pairs do not use, named unlike any pair.
OWN_CROPS = {'own_a': ('immunohistochemistry', 200, 200), 'own_b': ('stereo_motorcycle', 200, 300),
             'own_c': ('retina', 600, 600)}


def mixed_options(name: str, tiny_pairs: str, teacher: str, own_lr: str, labels: dict[str, str],
                  terms: tuple[str, ...] = ('pixel_opt', 'distill_opt'), total_iter: int = 2) -> dict:
    """A tiny x2 KD run on a MixedKDDataset: LR-only source ``own`` (weight 2) before paired source ``pairs``
    (weight 1), each with its labels; ``terms`` of ``all_losses`` under ``train``."""
    opt = kd_options(name, tiny_pairs, teacher, total_iter=total_iter)
    for key in all_losses():
        if key not in terms:
            opt['train'].pop(key)
    train_set = opt['datasets']['train']
    sources = {'own': {'dataroot_lq': own_lr, 'dataroot_teacher': labels['own'], 'weight': 2},
               'pairs': {'dataroot_gt': train_set['dataroot_gt'], 'dataroot_lq': train_set['dataroot_lq'],
                         'dataroot_teacher': labels['pairs'], 'weight': 1}}
    opt['datasets']['train'] = {**{k: v for k, v in train_set.items() if not k.startswith('dataroot_')},
                                'type': 'MixedKDDataset', 'sources': sources}
    return opt


def train_set(opt: dict, **extra) -> dict:
    """``datasets.train`` of ``opt`` as BasicSR's option parser hands it to the dataset (phase, scale)."""
    return {**json.loads(json.dumps(opt['datasets']['train'])), 'phase': 'train', 'scale': opt['scale'], **extra}


@pytest.fixture(scope='module')
def mixed_set(tiny_pairs, teacher, tmp_path_factory):
    """LR-only images, and x8 labels of both sources built by ``prepare teacher-labels`` on a mixed file; returns
    (options, own LR folder, {source: label store}, prepare's stdout)."""
    folder = tmp_path_factory.mktemp('lr_only')
    own_lr = folder / 'own' / 'LR'
    os.makedirs(own_lr)
    for name, (photo, top, left) in OWN_CROPS.items():
        img = cv2.cvtColor(load_photo(photo), cv2.COLOR_RGB2BGR)[top:top + 36, left:left + 40]
        cv2.imwrite(str(own_lr / f'{name}.png'), img)
    labels = {'own': str(folder / 'own' / 'labels_tiny_x8.npy'), 'pairs': str(folder / 'pairs' / 'labels_tiny_x8.npy')}
    opt = mixed_options('mixed_labels', tiny_pairs, teacher, str(own_lr), labels)
    built = tool_in_process(prepare.main, 'teacher-labels', '-opt', write_options(str(folder), opt), '--ensemble',
                            'x8', '--fp32')
    assert built.returncode == 0, built.stderr[-3000:]
    return opt, str(own_lr), labels, built.stdout


def test_prepare_labels_lr_only_images_as_whole_images_named_after_them(mixed_set, teacher, tmp_path):
    opt, own_lr, labels, stdout = mixed_set
    assert 'own: ' in stdout and 'pairs: ' in stdout  # each source into the set its dataroot_teacher names
    own = json.load(open(osp.join(labels['own'], 'manifest.json')))
    assert own['complete'] and own['gt'] is False and own['count'] == 3
    assert own['names'] == sorted(OWN_CROPS) and sorted(own['lr_sha256']) == own['names']
    assert own['lr_source'] == {'dataroot_lq': own_lr, 'io_backend': 'disk'}
    assert [t['sha256'] for t in own['teachers']] == [sha256(teacher)]
    assert json.load(open(osp.join(labels['pairs'], 'manifest.json')))['gt'] is True
    pngs = labels['own'][:-len('.npy')]
    assert sorted(os.listdir(pngs)) == ['manifest.json'] + [f'{name}.png' for name in sorted(OWN_CROPS)]
    for name in OWN_CROPS:  # the teacher's x8 output on the whole LR image, rounded to 8 bits, at s times its size
        stored = cv2.imread(osp.join(pngs, f'{name}.png'))[:, :, ::-1].astype(np.float32) / 255.0
        expected = whole_image_x8(teacher, osp.join(own_lr, f'{name}.png'))
        assert stored.shape == expected.shape == (72, 80, 3)
        assert np.abs(stored - expected).max() <= 0.5 / 255 + 1e-6, name
    # several label sets: one --output cannot name them all
    refused = tool_in_process(prepare.main, 'teacher-labels', '-opt', write_options(str(tmp_path), opt), '--output',
                              str(tmp_path / 'one'))
    assert refused.returncode == 2 and 'has 2 sources (own, pairs)' in refused.stderr and 'Fix:' in refused.stderr


@pytest.mark.parametrize('spoil,needles', [
    ('size', ["datasets.train.sources.own.dataroot_teacher: label 'own_b' is 60x72, its LR image times the scale 2 "
              '80x72']),
    ('missing', ["datasets.train.sources.own.dataroot_teacher: no label for 'own_a'"]),
    ('teacher', ['datasets.train.sources.own.dataroot_teacher: the labels in', 'not by path.pretrain_network_t']),
    ('lr_changed', ['datasets.train.sources.own.dataroot_teacher: 1 of the 3 LR images in dataroot_lq',
                    "(e.g. ['own_b']", 'labels of inputs it never sees']),
    ('names', ['are for other images than dataroot_lq', "only in dataroot_lq: ['own_d']"]),
])
def test_lr_only_labels_that_do_not_belong_to_the_run_are_refused(mixed_set, tiny_pairs, teacher, exp_name,
                                                                   tmp_path, spoil, needles):
    opt, own_lr, labels, _ = mixed_set
    store = str(tmp_path / 'labels.npy')
    shutil.copytree(labels['own'], store)
    opt = mixed_options(exp_name, tiny_pairs, teacher, own_lr, dict(labels, own=store))
    manifest_path, index_path = osp.join(store, 'manifest.json'), osp.join(store, 'index.json')
    manifest, index = json.load(open(manifest_path)), json.load(open(index_path))
    if spoil == 'size':
        index['labels']['own_b'][1:3] = [72, 60]
    elif spoil == 'missing':
        del index['labels']['own_a']
    elif spoil == 'teacher':  # this source's labels only: the paired source's still match the run's teacher
        other = save_teacher(str(tmp_path / 'other'), seed=5)
        manifest['teachers'][0].update(checkpoint=other, sha256=sha256(other))
    elif spoil in ('lr_changed', 'names'):  # a degraded copy under the same names, or one more image
        changed = tmp_path / 'LR_other'
        shutil.copytree(own_lr, changed)
        img = cv2.imread(str(changed / 'own_b.png'))
        if spoil == 'lr_changed':
            cv2.imwrite(str(changed / 'own_b.png'), cv2.GaussianBlur(img, (5, 5), 1.0))
        else:
            cv2.imwrite(str(changed / 'own_d.png'), img)
        opt['datasets']['train']['sources']['own']['dataroot_lq'] = str(changed)
    json.dump(manifest, open(manifest_path, 'w'))
    json.dump(index, open(index_path, 'w'))
    err = fails_cleanly(opt, tmp_path, *needles)
    assert 'Fix:' in err


def test_the_mixture_gives_each_source_its_share_and_every_sample_the_same_keys(mixed_set, tiny_pairs, teacher):
    opt, own_lr, labels, _ = mixed_set
    dataset = build_dataset(train_set(opt))
    assert dataset.counts == {'own': 8, 'pairs': 4} and len(dataset) == 12  # 2:1; every pair shown once
    random.seed(0)
    samples = [dataset[i] for i in range(len(dataset))]
    assert Counter(s['source'] for s in samples) == {'own': 8, 'pairs': 4}
    keys = {'lq', 'gt', 'teacher', 'has_gt', 'lq_path', 'gt_path', 'teacher_path', 'source'}
    assert all(set(s) == keys for s in samples)
    for s in samples:
        assert s['lq'].shape == (3, 16, 16) and s['gt'].shape == s['teacher'].shape == (3, 32, 32)
        assert s['has_gt'] is (s['source'] == 'pairs')
        if s['source'] == 'own':  # a placeholder of the label's shape, and the label named after the LR image
            assert not s['gt'].any() and s['gt_path'] == ''
            assert osp.basename(s['teacher_path']) == osp.splitext(osp.basename(s['lq_path']))[0]
        else:
            assert s['gt'].any()
    own_images = Counter(osp.basename(s['lq_path']) for s in samples if s['source'] == 'own')
    assert set(own_images) == {f'{n}.png' for n in OWN_CROPS} and min(own_images.values()) >= 2
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=12, shuffle=True)))  # the default collate
    assert batch['has_gt'].dtype == torch.bool and int(batch['has_gt'].sum()) == 4
    assert batch['gt'].shape == batch['teacher'].shape == (12, 3, 32, 32) and len(batch['source']) == 12


def test_lr_only_images_in_an_lmdb_give_the_samples_of_the_folder(mixed_set, tiny_pairs, tmp_path):
    opt, own_lr, labels, _ = mixed_set
    build_lmdb(own_lr, str(tmp_path / 'own.lmdb'))
    lmdb_opt = train_set(opt, io_backend={'type': 'lmdb'})
    lmdb_opt['sources']['own']['dataroot_lq'] = str(tmp_path / 'own.lmdb')
    lmdb_opt['sources']['pairs'].update(dataroot_gt=osp.join(tiny_pairs, 'HR.lmdb'),
                                        dataroot_lq=osp.join(tiny_pairs, 'LR.lmdb'))
    samples = {}
    for backend, options in (('disk', train_set(opt)), ('lmdb', lmdb_opt)):
        dataset = build_dataset(options)
        random.seed(7)
        samples[backend] = [dataset[i] for i in range(len(dataset))]
    # the LR-only block (first) lists its images by name in both; BasicSR lists a pair folder in directory order
    for disk, lmdb in zip(samples['disk'][:8], samples['lmdb'][:8]):
        assert disk['source'] == lmdb['source'] == 'own' and lmdb['has_gt'] is False
        assert lmdb['lq_path'] == osp.splitext(osp.basename(disk['lq_path']))[0]  # an LMDB key, as BasicSR has it
        assert all(torch.equal(disk[key], lmdb[key]) for key in ('lq', 'gt', 'teacher'))
    assert Counter(s['source'] for s in samples['lmdb']) == {'own': 8, 'pairs': 4}
    assert all(s['gt'].any() for s in samples['lmdb'][8:])


def test_an_lr_only_crop_is_cut_from_its_label_at_the_same_place_with_the_same_flips(mixed_set):
    opt, own_lr, labels, _ = mixed_set
    dataset = build_dataset(train_set(opt, gt_size=24))  # 12 LR px of 40x36 images: many places
    pngs = labels['own'][:-len('.npy')]
    seen = set()
    random.seed(3)
    for i in range(16):
        sample = dataset[i % 8]  # the LR-only block comes first
        assert sample['source'] == 'own'
        name = osp.splitext(osp.basename(sample['lq_path']))[0]
        whole_lr = cv2.imread(sample['lq_path'])[:, :, ::-1].astype(np.float32) / 255.0
        top, left, k, flip = _where(sample['lq'].permute(1, 2, 0).numpy(), whole_lr)
        seen.add((k, flip))
        label = cv2.imread(osp.join(pngs, f'{name}.png'))[:, :, ::-1].astype(np.float32) / 255.0
        crop = label[top * 2:top * 2 + 24, left * 2:left * 2 + 24]
        expected = np.rot90(crop[:, ::-1] if flip else crop, k)
        assert sample['teacher'].shape == (3, 24, 24)
        assert np.array_equal(sample['teacher'].permute(1, 2, 0).numpy(), expected), (name, top, left, k, flip)
    assert len(seen) > 2  # the test really saw flips and rotations


def test_two_ddp_ranks_draw_disjoint_samples_that_cover_the_pass(mixed_set):
    opt, *_ = mixed_set
    dataset = build_dataset(train_set(opt))
    drawn = []
    for rank in range(2):
        sampler = EnlargedSampler(dataset, num_replicas=2, rank=rank, ratio=1)
        sampler.set_epoch(0)
        drawn.append(list(sampler))
    assert len(drawn[0]) == len(drawn[1]) == 6
    assert not set(drawn[0]) & set(drawn[1]) and sorted(drawn[0] + drawn[1]) == list(range(12))
    sources = Counter(dataset.locate(i)[0] for indices in drawn for i in indices)
    assert sources == {'own': 8, 'pairs': 4}  # together the ranks keep the shares


def mixed_batch(has_gt: list[bool]) -> dict:
    torch.manual_seed(0)
    n = len(has_gt)
    return {'lq': torch.rand(n, 3, 16, 16), 'gt': torch.rand(n, 3, 32, 32), 'teacher': torch.rand(n, 3, 32, 32),
            'has_gt': torch.tensor(has_gt)}


def output_gradients(model) -> list[torch.Tensor]:
    """The gradient of each step's total loss with respect to the student's output (filled as it arrives)."""
    grads = []

    def watch(module, args, out) -> None:  # returns None: the output itself is left as it is
        out.register_hook(grads.append)

    model.net_g.register_forward_hook(watch)
    return grads


def test_the_pixel_loss_counts_the_gt_samples_only_and_distillation_every_sample(teacher, tmp_path):
    losses = {key: all_losses()[key] for key in ('pixel_opt', 'distill_opt')}
    model = build_model(kd_model_options(teacher, losses, str(tmp_path)))
    batch = mixed_batch([True, False, True, False])
    with torch.no_grad():
        out = model.net_g(batch['lq'])
    gt_rows = batch['has_gt']
    l_pix = (out[gt_rows] - batch['gt'][gt_rows]).abs().mean()  # the mean over the GT samples alone
    l_dist = (out - batch['teacher']).abs().mean()  # over every sample
    assert abs(l_pix - (out - batch['gt']).abs().mean()) > 1e-3  # counting the placeholders would show
    grads = output_gradients(model)
    model.feed_data(batch)
    model.optimize_parameters(1)
    assert set(model.log_dict) == {'l_pix', 'l_dist'}
    assert model.log_dict['l_pix'] == pytest.approx(float(l_pix), rel=1e-5)
    assert model.log_dict['l_dist'] == pytest.approx(float(l_dist), rel=1e-5)
    # d/d out of mean |out - y| is sign(out - y) / (elements averaged over): l_pix reaches the GT rows only
    grad = grads[0]
    dist_part = torch.sign(out - batch['teacher']) / out.numel()
    pix_part = torch.sign(out - batch['gt']) / out[gt_rows].numel()
    assert torch.allclose(grad[~gt_rows], dist_part[~gt_rows], atol=1e-9)
    assert torch.allclose(grad[gt_rows], dist_part[gt_rows] + pix_part[gt_rows], atol=1e-9)
    # each term alone: the pixel loss gives the LR-only samples no gradient at all, distillation every sample one
    pixel_only = build_model(kd_model_options(teacher, {'pixel_opt': losses['pixel_opt']}, str(tmp_path)))
    grads = output_gradients(pixel_only)
    pixel_only.feed_data(batch)
    pixel_only.optimize_parameters(1)
    assert torch.count_nonzero(grads[0][~gt_rows]) == 0 and torch.count_nonzero(grads[0][gt_rows]) > 0
    distill_only = build_model(kd_model_options(teacher, {'distill_opt': losses['distill_opt']}, str(tmp_path)))
    grads = output_gradients(distill_only)
    distill_only.feed_data(batch)
    distill_only.optimize_parameters(1)
    assert all(torch.count_nonzero(g) > 0 for g in grads[0])


def test_a_batch_without_gt_logs_an_exact_zero_pixel_loss_and_takes_a_finite_step(teacher, tmp_path):
    losses = {key: all_losses()[key] for key in ('pixel_opt', 'distill_opt')}
    model = build_model(kd_model_options(teacher, losses, str(tmp_path)))
    before = {n: p.clone() for n, p in model.net_g.named_parameters()}
    model.feed_data(mixed_batch([False, False]))
    model.optimize_parameters(1)
    assert set(model.log_dict) == {'l_pix', 'l_dist'}  # the same keys as any step, on every rank
    assert model.log_dict['l_pix'] == 0.0 and model.log_dict['l_dist'] > 0
    after = dict(model.net_g.named_parameters())
    assert all(torch.isfinite(p).all() for p in after.values())
    assert any(not torch.equal(p, before[n]) for n, p in after.items())  # distillation still trained the student
    # a batch that is all GT keeps the plain rule: the pixel loss over every sample
    batch = mixed_batch([True, True])
    with torch.no_grad():
        out = model.net_g(batch['lq'])
    model.feed_data(batch)
    model.optimize_parameters(2)
    assert model.log_dict['l_pix'] == pytest.approx(float((out - batch['gt']).abs().mean()), rel=1e-5)


@pytest.mark.parametrize('change,needles', [
    ('eco', ['train.eco: the ECO target lerp(T(x), y, alpha) mixes in the ground truth y, which '
             'datasets.train.sources.own does not have']),
    ('zoom_in', ['train.upcycle.zoom_in: cuts LR-sized tiles out of the HR patch, which datasets.train.sources.own',
                 'remove train.upcycle.zoom_in']),
    ('teacher_better', ['train.distill_opt.weighting: teacher_better', 'datasets.train.sources.own does not have',
                        'weighting: none']),
    ('no_distill', ['train.distill_opt: datasets.train.sources.own has no ground truth (LR-only)',
                    'they would teach nothing', 'set train.distill_opt']),
    ('no_labels', ['datasets.train.sources.own: an LR-only source (dataroot_lq without dataroot_gt) needs '
                   'dataroot_teacher', 'prepare teacher-labels']),
    ('paired_without_labels', ['datasets.train.sources: own have a dataroot_teacher and pairs not',
                               'the LR-only own cannot do without']),
    ('unreadable_lr', ['datasets.train.sources.own.dataroot_lq: folder', 'does not exist']),
    ('small_lr', ['datasets.train.sources.own.gt_size: 80 needs LR images of at least 40 px a side at x2',
                  "'own_a', 'own_b', 'own_c'"]),
    ('validation', ['datasets.val.type: MixedKDDataset is a training set']),
])
def test_combinations_that_need_gt_on_an_lr_only_source_are_refused(mixed_set, tiny_pairs, teacher, exp_name,
                                                                   tmp_path, change, needles):
    _, own_lr, labels, _ = mixed_set
    opt = mixed_options(exp_name, tiny_pairs, teacher, own_lr, labels)
    train_opt, sources = opt['train'], opt['datasets']['train']['sources']
    if change == 'eco':
        train_opt['eco'] = {'end_ratio': 0.5}
    elif change == 'zoom_in':
        train_opt['upcycle'] = {'zoom_in': {'prob': 1.0}}
    elif change == 'teacher_better':
        train_opt['distill_opt']['weighting'] = 'teacher_better'
    elif change == 'no_distill':
        train_opt.pop('distill_opt')
    elif change == 'no_labels':
        sources['own'].pop('dataroot_teacher')
    elif change == 'paired_without_labels':
        sources['pairs'].pop('dataroot_teacher')
    elif change == 'unreadable_lr':
        sources['own']['dataroot_lq'] = str(tmp_path / 'nowhere')
    elif change == 'small_lr':
        sources['own']['gt_size'] = 80  # a source overrides a shared key; 36 LR px x2 cannot give 80
    elif change == 'validation':
        opt['datasets']['val'] = json.loads(json.dumps(opt['datasets']['train']))
    err = fails_cleanly(opt, tmp_path, *needles)
    assert 'Fix:' in err


def test_the_ablation_baselines_train_on_the_paired_sources_and_kd_runs_pay_every_label_build(mixed_set, tiny_pairs,
                                                                                              teacher):
    _, own_lr, labels, _ = mixed_set
    recipe = mixed_options('mixed', tiny_pairs, teacher, own_lr, labels,
                           terms=('pixel_opt', 'distill_opt', 'feature_opt'))
    assert variants.label_roots(recipe) == [labels['own'], labels['pairs']]
    available = variants.available_variants(recipe)
    assert 'online_labels' not in available  # an LR-only source cannot do without its labels
    assert not {'eco_hr_only', 'eco_full', 'feature', 'recipe_without_distill_opt'} & set(available)  # need GT
    assert {'no_kd', 'no_kd_equal_time', 'output', 'recipe_without_feature_opt', 'recipe'} <= set(available)
    for baseline in ('no_kd', 'no_kd_equal_time'):
        alone = variants.variant_options(recipe, baseline, 0)
        sources = alone['datasets']['train']['sources']
        assert alone['model_type'] == 'SRModel' and list(sources) == ['pairs']
        assert 'dataroot_teacher' not in sources['pairs'] and variants.label_roots(alone) == []
    assert variants.variant_options(recipe, 'recipe', 0)['datasets'] == recipe['datasets']
    seconds = {s: json.load(open(osp.join(labels[s], 'manifest.json')))['seconds'] for s in labels}
    assert runner.label_seconds(recipe) == pytest.approx(seconds['own'] + seconds['pairs'])
    assert runner.label_seconds(variants.variant_options(recipe, 'output', 0)) == pytest.approx(sum(seconds.values()))
    lr_only = mixed_options('mixed', tiny_pairs, teacher, own_lr, labels)
    lr_only['datasets']['train']['sources'].pop('pairs')
    with pytest.raises(ValueError, match='own are LR-only and no source is paired'):
        variants.variant_options(lr_only, 'no_kd', 0)


def test_a_mixed_file_trains_with_train_py(mixed_set, tiny_pairs, teacher, exp_name, tmp_path):
    """Pixel loss, output distillation and feature matching (live teacher on every sample, LR-only ones too) on
    batches that mix both sources."""
    _, own_lr, labels, _ = mixed_set
    opt = mixed_options(exp_name, tiny_pairs, teacher, own_lr, labels,
                        terms=('pixel_opt', 'distill_opt', 'feature_opt'))
    opt['datasets']['train']['batch_size_per_gpu'] = 6
    result = train(write_options(str(tmp_path), opt))
    assert result.returncode == 0, result.stderr[-3000:]
    log = train_log(exp_name)
    assert 'End of training' in log and all(f'{key}: ' in log for key in ('l_pix', 'l_dist', 'l_feat'))
