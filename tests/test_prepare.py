"""`python -m kd_plugin.cli.prepare`: LR pairs, LMDBs BasicSR can read, sub-images, the no-download photos."""
import os
import sys
from os import path as osp

import cv2
import lmdb
import numpy as np
import pytest
from basicsr.data.paired_image_dataset import PairedImageDataset
from basicsr.utils.lmdb_util import make_lmdb_from_imgs

from kd_plugin.cli import prepare as prepare_cli
from kd_plugin.data.image_io import read_image
from kd_plugin.data.matlab_bicubic import bicubic_downscale
from tests.helpers import run, shared_data, tool_in_process


def prepare(*args: str, as_script: bool = False):
    """``python -m kd_plugin.cli.prepare *args``: in this process, or as that command with ``as_script``."""
    if as_script:
        return run([sys.executable, '-m', 'kd_plugin.cli.prepare', *args])
    return tool_in_process(prepare_cli.main, *args)


def _noise(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_lr_command_writes_modcropped_hr_and_standard_lr(tmp_path):
    src = shared_data('Set5', 'HR')
    result = prepare('lr', '--input', src, '--output', str(tmp_path), '--scales', '3', '4')
    assert result.returncode == 0, result.stderr
    for scale in (3, 4):
        hr = read_image(str(tmp_path / f'X{scale}' / 'HR' / 'woman.png'))
        lr = read_image(str(tmp_path / f'X{scale}' / 'LR' / 'woman.png'))
        assert hr.shape[0] % scale == 0 and hr.shape[1] % scale == 0
        assert np.array_equal(lr, read_image(shared_data('Set5', 'LR_bicubic', f'X{scale}', 'woman.png')))
    again = prepare('lr', '--input', src, '--output', str(tmp_path), '--scales', '4')
    assert again.returncode == 2 and '--overwrite' in again.stderr


def test_lr_command_takes_jpeg_and_writes_png_pairs_of_the_decoded_image(tmp_path):
    """BSD400 ships as the original JPEG files: the pairs are PNG, the LR the bicubic of the decoded JPEG."""
    src = tmp_path / 'jpeg'
    src.mkdir()
    photo = cv2.imread(shared_data('Set5', 'HR', 'baby.png'))
    for name, (top, left) in (('a.jpg', (0, 0)), ('b.jpeg', (100, 37))):
        assert cv2.imwrite(str(src / name), photo[top:top + 83, left:left + 61], [cv2.IMWRITE_JPEG_QUALITY, 75])
    result = prepare('lr', '--input', str(src), '--output', str(tmp_path / 'out'), '--scales', '4')
    assert result.returncode == 0, result.stderr
    for stem, name in (('a', 'a.jpg'), ('b', 'b.jpeg')):
        decoded = cv2.imread(str(src / name))
        hr, lr = (read_image(str(tmp_path / 'out' / 'X4' / kind / f'{stem}.png')) for kind in ('HR', 'LR'))
        assert np.array_equal(hr, decoded[:80, :60]) and np.array_equal(lr, bicubic_downscale(decoded, 4))
    assert sorted(os.listdir(tmp_path / 'out' / 'X4' / 'LR')) == ['a.png', 'b.png']

    cv2.imwrite(str(src / 'a.png'), photo[:40, :40])  # a second image with stem 'a'
    clash = prepare('lr', '--input', str(src), '--output', str(tmp_path / 'other'), '--scales', '4')
    assert clash.returncode == 2 and "holds 'a.jpg' and 'a.png': both would become a.png" in clash.stderr
    assert not (tmp_path / 'other').exists()


def test_lmdb_pairs_read_by_basicsr_paired_dataset(tmp_path):
    for folder, (h, w) in (('HR', (64, 96)), ('LR', (32, 48))):
        (tmp_path / folder).mkdir()
        for i in range(3):
            cv2.imwrite(str(tmp_path / folder / f'im{i}.png'), _noise(h, w, i))
    result = prepare('lmdb', '--input', str(tmp_path / 'HR'), '--output', str(tmp_path / 'HR.lmdb'),
                     '--input', str(tmp_path / 'LR'), '--output', str(tmp_path / 'LR.lmdb'))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / 'HR.lmdb' / 'meta_info.txt').read_text().splitlines()[0] == 'im0.png (64,96,3) 1'
    ds = PairedImageDataset({'phase': 'val', 'scale': 2, 'io_backend': {'type': 'lmdb'},
                             'dataroot_gt': str(tmp_path / 'HR.lmdb'), 'dataroot_lq': str(tmp_path / 'LR.lmdb')})
    item = ds[2]
    assert item['gt'].shape == (3, 64, 96) and item['lq'].shape == (3, 32, 48)
    expected = cv2.cvtColor(_noise(64, 96, 2), cv2.COLOR_BGR2RGB).transpose(2, 0, 1) / 255
    np.testing.assert_allclose(item['gt'].numpy(), expected, atol=1e-6)


def test_lmdb_refuses_to_overwrite_and_mismatched_pairs_write_nothing(tmp_path):
    (tmp_path / 'HR').mkdir()
    (tmp_path / 'LR').mkdir()
    cv2.imwrite(str(tmp_path / 'HR' / 'a.png'), _noise(8, 8))
    cv2.imwrite(str(tmp_path / 'LR' / 'b.png'), _noise(4, 4))
    mismatch = prepare('lmdb', '--input', str(tmp_path / 'HR'), '--output', str(tmp_path / 'HR.lmdb'),
                       '--input', str(tmp_path / 'LR'), '--output', str(tmp_path / 'LR.lmdb'))
    assert mismatch.returncode == 2 and "only in the first: ['a']" in mismatch.stderr
    assert not (tmp_path / 'HR.lmdb').exists()

    assert prepare('lmdb', '--input', str(tmp_path / 'HR'), '--output', str(tmp_path / 'HR.lmdb')).returncode == 0
    before = (tmp_path / 'HR.lmdb' / 'data.mdb').read_bytes()
    cv2.imwrite(str(tmp_path / 'HR' / 'c.png'), _noise(8, 8, 1))
    again = prepare('lmdb', '--input', str(tmp_path / 'HR'), '--output', str(tmp_path / 'HR.lmdb'))
    assert again.returncode == 2 and 'already exists; pass --overwrite' in again.stderr
    assert (tmp_path / 'HR.lmdb' / 'data.mdb').read_bytes() == before
    assert prepare('lmdb', '--input', str(tmp_path / 'HR'), '--output', str(tmp_path / 'HR.lmdb'),
                   '--overwrite').returncode == 0
    assert len((tmp_path / 'HR.lmdb' / 'meta_info.txt').read_text().splitlines()) == 2


def test_lmdb_map_size_fits_mixed_image_sizes(tmp_path):
    """A tiny first image makes BasicSR's own estimate (10x the first image) far too small."""
    (tmp_path / 'mixed').mkdir()
    cv2.imwrite(str(tmp_path / 'mixed' / 'a_small.png'), _noise(4, 4))
    cv2.imwrite(str(tmp_path / 'mixed' / 'b_large.png'), _noise(600, 800))
    names = ['a_small.png', 'b_large.png']
    with pytest.raises(lmdb.MapFullError):
        make_lmdb_from_imgs(str(tmp_path / 'mixed'), str(tmp_path / 'basicsr.lmdb'), names, ['a_small', 'b_large'])
    result = prepare('lmdb', '--input', str(tmp_path / 'mixed'), '--output', str(tmp_path / 'ours.lmdb'))
    assert result.returncode == 0, result.stderr
    env = lmdb.open(str(tmp_path / 'ours.lmdb'), readonly=True, lock=False)
    with env.begin() as txn:
        assert cv2.imdecode(np.frombuffer(txn.get(b'b_large'), np.uint8), cv2.IMREAD_UNCHANGED).shape == (600, 800, 3)
    env.close()


def test_lmdb_rejects_file_stems_basicsr_would_mangle(tmp_path):
    (tmp_path / 'HR').mkdir()
    cv2.imwrite(str(tmp_path / 'HR' / 'img.001.png'), _noise(8, 8))
    result = prepare('lmdb', '--input', str(tmp_path / 'HR'), '--output', str(tmp_path / 'HR.lmdb'))
    assert result.returncode == 2 and 'img.001.png' in result.stderr and 'without dots' in result.stderr


def test_crop_covers_every_pixel(tmp_path):
    (tmp_path / 'in').mkdir()
    img = _noise(100, 130)
    cv2.imwrite(str(tmp_path / 'in' / 'big.png'), img)
    result = prepare('crop', '--input', str(tmp_path / 'in'), '--output', str(tmp_path / 'out'),
                     '--size', '64', '--step', '48')
    assert result.returncode == 0 and result.stdout.startswith('6 sub-images')  # rows {0,36} x cols {0,48,66}
    assert np.array_equal(read_image(str(tmp_path / 'out' / 'big_s006.png')), img[36:100, 66:130])


def test_photos_dataset_is_built_once(tmp_path):
    out = str(tmp_path / 'photos')
    result = prepare('photos', '--output', out, '--scales', '4', '--lmdb')
    assert result.returncode == 0, result.stderr
    hr = read_image(osp.join(out, 'val', 'X4', 'HR', 'coffee.png'))
    assert hr.shape == (400, 600, 3)
    assert np.array_equal(read_image(osp.join(out, 'val', 'X4', 'LR', 'coffee.png')), bicubic_downscale(hr, 4))
    assert osp.isfile(osp.join(out, 'train', 'X4', 'LR.lmdb', 'data.mdb'))
    crops = os.listdir(osp.join(out, 'train', 'X4', 'HR'))
    assert 'astronaut_s001.png' in crops and len(crops) > 100
    assert read_image(osp.join(out, 'train', 'X4', 'LR', 'astronaut_s001.png')).shape == (48, 48, 3)
    assert 'already prepared' in prepare('photos', '--output', out, '--scales', '4', '--lmdb').stdout

    # an older layout (whole photos in train/X4) is archived, not deleted
    os.remove(osp.join(out, '.complete-v2-x4-lmdb'))
    open(osp.join(out, 'train', 'X4', 'HR', 'mine.png'), 'w').close()
    assert prepare('photos', '--output', out, '--scales', '4').returncode == 0
    archived = [d for d in os.listdir(osp.join(out, 'train')) if d.startswith('X4_archived_')]
    assert len(archived) == 1 and osp.isfile(osp.join(out, 'train', archived[0], 'HR', 'mine.png'))
    assert not osp.exists(osp.join(out, 'train', 'X4', 'HR', 'mine.png'))


def test_split_holds_out_pairs_reproducibly_and_never_overwrites(tmp_path):
    src = tmp_path / 'X4'
    for kind in ('HR', 'LR'):
        (src / kind).mkdir(parents=True)
        for i in range(6):
            cv2.imwrite(str(src / kind / f'im{i}.png'), np.full((8, 8, 3), i * 10, np.uint8))
    out = tmp_path / 'split'
    result = prepare('split', '--input', str(src), '--output', str(out), '--holdout', '2', '--seed', '3')
    assert result.returncode == 0, result.stderr
    val = sorted(os.listdir(out / 'val' / 'HR'))
    train = sorted(os.listdir(out / 'train' / 'HR'))
    assert len(val) == 2 and len(train) == 4 and not set(val) & set(train)
    assert sorted(os.listdir(out / 'val' / 'LR')) == val and sorted(os.listdir(out / 'train' / 'LR')) == train
    from kd_plugin.data.holdout import split_pairs

    assert split_pairs(str(src), str(tmp_path / 'again'), 2, seed=3)['val'] == val  # same seed, same split
    again = prepare('split', '--input', str(src), '--output', str(out))
    assert again.returncode == 2 and f'error: prepare: {out} exists' in again.stderr
    (src / 'LR' / 'im0.png').unlink()
    bad = prepare('split', '--input', str(src), '--output', str(tmp_path / 'x'), as_script=True)  # the real exit
    assert bad.returncode == 2 and "only in HR: ['im0.png']" in bad.stderr


def _pairs(root, names, size=8):
    for kind, side in (('HR', size), ('LR', size // 2)):
        (root / kind).mkdir(parents=True)
        for name in names:
            cv2.imwrite(str(root / kind / name), np.full((side, side + 4, 3), len(name), np.uint8))


def test_merge_links_pairs_leaves_out_small_ones_and_refuses_clashes(tmp_path):
    _pairs(tmp_path / 'a', ['t1.png', 't2.png'], size=8)
    _pairs(tmp_path / 'b', ['100.png'], size=16)
    out = tmp_path / 'merged'
    result = prepare('merge', '--input', str(tmp_path / 'a'), '--input', str(tmp_path / 'b'), '--output', str(out),
                     '--min-size', '12')
    assert result.returncode == 0, result.stderr
    assert 'left out (HR under 12 px): t1.png, t2.png' in result.stdout
    assert os.listdir(out / 'HR') == ['100.png'] and os.listdir(out / 'LR') == ['100.png']
    assert osp.islink(out / 'LR' / '100.png')
    assert np.array_equal(read_image(str(out / 'LR' / '100.png')), read_image(str(tmp_path / 'b' / 'LR' / '100.png')))

    again = prepare('merge', '--input', str(tmp_path / 'a'), '--output', str(out))
    assert again.returncode == 2 and f'{out} exists' in again.stderr
    _pairs(tmp_path / 'c', ['t2.png'])
    clash = prepare('merge', '--input', str(tmp_path / 'a'), '--input', str(tmp_path / 'c'), '--output',
                    str(tmp_path / 'x'))
    assert clash.returncode == 2 and "'t2.png' is in both" in clash.stderr and not (tmp_path / 'x').exists()


def _make_data_commands(target: str) -> list[str]:
    """The ``kd_plugin.cli.prepare`` lines of the Makefile's ``data`` recipe that mention ``target``."""
    with open(osp.join(osp.dirname(__file__), '..', 'Makefile')) as f:
        return [line for line in f if 'kd_plugin.cli.prepare' in line and target in line]


def test_bsd400_held_out_images_are_in_no_training_list(tmp_path):
    """`make data`'s BSD400 split and merge, run on stand-ins named like the real files: the 20 held-out
    images are in neither training list; the T91 + BSD400 set is everything else that fits 128 px."""
    import re

    bsd = sorted(osp.splitext(n)[0] + '.png' for n in os.listdir(shared_data('BSD400')) if n.endswith('.jpg'))
    t91 = sorted(os.listdir(shared_data('T91')))
    assert len(bsd) == 400 and len(t91) == 91
    _pairs(tmp_path / 'BSD400' / 'X4', bsd, size=128)
    _pairs(tmp_path / 'T91' / 'X4', t91, size=128)
    holdout = re.search(r'^BSD400_HOLDOUT \?= (\d+)', open(osp.join(osp.dirname(__file__), '..', 'Makefile')).read(),
                        re.M).group(1)
    for line in _make_data_commands('BSD400_split/X$$s'):
        args = line.split('kd_plugin.cli.prepare ')[1].split(' ||')[0].replace('$$s', '4')
        args = args.replace('$(BSD400_HOLDOUT)', holdout).replace('datasets/', f'{tmp_path}/').split()
        result = prepare(*args)
        assert result.returncode == 0, result.stderr
    val = set(os.listdir(tmp_path / 'BSD400_split' / 'X4' / 'val' / 'HR'))
    train = set(os.listdir(tmp_path / 'BSD400_split' / 'X4' / 'train' / 'HR'))
    merged = set(os.listdir(tmp_path / 'T91_BSD400' / 'X4' / 'HR'))
    assert len(val) == 20 and not val & train and not val & merged
    assert merged == train | set(t91)



def test_t91_bsd400_files_train_on_the_merged_set_and_choose_on_the_held_out_images():
    import glob

    import yaml

    # Files named for their training set, *_T91_BSD400_x<scale>*; a teacher trained there and distilled on
    # T91 (*_T91_BSD400_to_*_T91_x4_*) trains on T91.
    files = sorted(glob.glob(osp.join(osp.dirname(__file__), '..', 'options', '**', '*T91_BSD400_x*.yml'),
                             recursive=True))
    assert len(files) >= 3
    for path in files:
        with open(path) as f:
            opt = yaml.safe_load(f)
        train = opt['datasets']['train']
        assert train['dataroot_gt'].startswith('datasets/T91_BSD400/') and train['dataroot_lq'].startswith(
            'datasets/T91_BSD400/'), path
        vals = [d for k, d in opt['datasets'].items() if k.startswith('val')]
        assert vals[0]['dataroot_gt'] == 'datasets/BSD400_split/X4/val/HR', path  # the first: where settings are chosen
        assert not any('BSD400_split/X4/val' in str(v) for v in train.values()), path
