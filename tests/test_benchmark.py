"""``python -m kd_plugin.cli.benchmark``: the metric pipeline matches the literature; bad input stays in its row."""
import importlib.util
import json
import os
from os import path as osp

import cv2
import numpy as np
import pytest
import torch
import yaml
from basicsr.metrics import calculate_psnr

from kd_plugin.benchmark import compare
from kd_plugin.benchmark.quality import bicubic_upscaler, evaluate, load_test_set, score, to_grey
from kd_plugin.checkpoint_io import pick_state_dict
from kd_plugin.cli import benchmark as benchmark_tool
from kd_plugin.model_loading import parse_model
from tests.helpers import shared_data, tiny_model

# Published Y-channel bicubic figures (PSNR, SSIM) of the SR literature (e.g. Kim et al. 2016, Lim et al. 2017)
PUBLISHED_BICUBIC = {
    (4, 'Set5'): (28.42, 0.8104), (4, 'Set14'): (26.00, 0.7027), (4, 'BSD100'): (25.96, 0.6675),
    (2, 'Set5'): (33.66, 0.9299), (2, 'Set14'): (30.24, 0.8688), (2, 'BSD100'): (29.56, 0.8431),
}


@pytest.mark.parametrize('scale,name', sorted(PUBLISHED_BICUBIC), ids=lambda v: str(v))
def test_bicubic_row_reproduces_the_published_tables(scale, name):
    result = evaluate(bicubic_upscaler(scale), load_test_set(shared_data(name), scale), scale)
    psnr, ssim = PUBLISHED_BICUBIC[scale, name]
    assert abs(result['psnr'] - psnr) <= 0.02 and abs(result['ssim'] - ssim) <= 0.001, result


def test_grey_image_is_scored_on_its_own_channel_not_inflated_by_y():
    images = {im.name: im for im in load_test_set(shared_data('Set14'), 4)}
    bridge = images['bridge']
    assert bridge.hr.ndim == 2
    sr = bicubic_upscaler(4)(bridge.lr)
    ours = score(sr, bridge.hr, 4)[0]
    as_basicsr = calculate_psnr(np.repeat(sr[..., None], 3, 2), np.repeat(bridge.hr[..., None], 3, 2), 4,
                                test_y_channel=True)
    assert 1.25 < as_basicsr - ours < 1.40  # the 1.32 dB the published tables do not have


def test_to_grey_keeps_grey_and_uses_rgb2gray_weights():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert to_grey(grey) is grey
    assert np.array_equal(to_grey(np.repeat(grey[..., None], 3, 2)), grey)
    bgr = np.array([[[255, 0, 0], [0, 0, 255]]], dtype=np.uint8)  # blue, red
    assert to_grey(bgr).tolist() == [[29, 76]]  # 0.114 * 255, 0.299 * 255


def test_pareto_front_keeps_only_undominated_points():
    pts = [(10, 30.0), (5, 29.0), (20, 29.5), (40, 31.0), (5, 28.0)]
    assert compare.pareto(pts) == [1, 0, 3]


def test_parameter_key_prefers_ema_like_basicsr_releases():
    """One picker for benchmark models and KD teachers."""
    w, v = {'w': torch.zeros(1)}, {'w': torch.ones(1)}
    assert pick_state_dict({'params': w, 'params_ema': v}, None, 'm') == (v, 'params_ema')
    assert pick_state_dict({'params': w}, None, 'm') == (w, 'params')
    assert pick_state_dict(w, None, 'm') == (w, None)  # a bare state dict
    assert pick_state_dict({'params': w, 'params_ema': v}, 'params', 'm') == (w, 'params')  # the key given wins
    assert pick_state_dict({'params': w}, 'params_ema', 'm') == (w, 'params')  # BasicSR's load_network fallback
    with pytest.raises(ValueError, match=r"m: no parameter key 'params_x' or 'params' in the checkpoint \(it has "
                                         r"\['weights'\]\)"):
        pick_state_dict({'weights': w}, 'params_x', 'm')



def test_benchmark_end_to_end_with_bad_models_and_sets_in_their_rows(tmp_path, capsys):
    edsr = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 2}
    good = tiny_model(str(tmp_path), 'tiny_edsr', edsr)
    typo = tiny_model(str(tmp_path), 'typo', edsr)
    with open(typo) as f:
        opt = yaml.safe_load(f)
    opt['network_g']['type'] = 'EDSRR'
    with open(typo, 'w') as f:
        yaml.safe_dump(opt, f)
    # registered by BasicSR as SRVGGNetCompact_basicsr; the plain name must work as in options files
    other = tiny_model(str(tmp_path), 'other', {'type': 'SRVGGNetCompact', 'num_feat': 4, 'num_conv': 1,
                                                 'upscale': 2})
    # a test set whose LR file disagrees with the scale
    broken = tmp_path / 'Broken'
    (broken / 'HR').mkdir(parents=True)
    (broken / 'LR_bicubic' / 'X2').mkdir(parents=True)
    cv2.imwrite(str(broken / 'HR' / 'a.png'), np.full((32, 32, 3), 128, np.uint8))
    cv2.imwrite(str(broken / 'LR_bicubic' / 'X2' / 'a.png'), np.full((15, 16, 3), 128, np.uint8))
    out = tmp_path / 'out'
    code = benchmark_tool.main(['--model', 'bicubic', '--model', good, '--model', typo, '--model', other,
                         '--model', f'mismatch={good}@{other[:-4]}.pth', '--model', 'missing.yml',
                         '--sets', shared_data('Set5'), str(broken), str(tmp_path / 'NoSuchSet'),
                         '--scales', '2', '--lr-size', '16', '16', '--runs', '1', '--threads', '1',
                         '--output', str(out)])
    assert code == 0
    printed = capsys.readouterr().out  # a line per model and set, progress bar or not
    assert '[benchmark] x2 Bicubic on Set5: 33.67 dB' in printed and '[benchmark] x2 tiny_edsr on Set5: ' in printed
    assert '[benchmark] x2 tiny_edsr: measuring cost' in printed
    assert '[benchmark] x2 tiny_edsr: cost measured' in printed
    assert {'x2.md', 'benchmark.csv', 'benchmark.json', 'psnr_vs_params_x2.png',
            'psnr_vs_cpu_fp32_x2.png'} <= set(os.listdir(out))
    rows = {r['model']: r for r in json.load(open(out / 'benchmark.json'))['rows']}
    assert abs(rows['Bicubic']['Set5_psnr'] - 33.67) < 0.01
    assert rows['tiny_edsr']['params'] > 0 and rows['tiny_edsr']['gflops'] > 0 and rows['tiny_edsr']['cpu_fp32_ms'] > 0
    assert 'Set5_psnr' in rows['tiny_edsr'] and 'mean_psnr' in rows['tiny_edsr']
    assert "'EDSRR' is not registered in BasicSR's arch registry; did you mean EDSR" in rows['typo']['error']
    assert 'error' not in rows['other'] and rows['other']['Set5_psnr'] > 0
    mismatch = rows['mismatch']['error']
    assert 'does not fit EDSR: missing' in mismatch and 'body.0.conv1.weight' in mismatch
    assert "options file 'missing.yml' does not exist" in rows['missing.yml']['error']
    assert 'test set Broken: a.png: LR (15, 16, 3) x2' in rows['tiny_edsr']['Broken_error']
    assert 'test set NoSuchSet' in rows['Bicubic']['NoSuchSet_error']
    table = open(out / 'x2.md').read()
    assert '| tiny_edsr |' in table and 'Errors:' in table and 'error: model typo' in table
    if importlib.util.find_spec('onnxruntime'):  # the [export] extra: the model exported and timed in onnxruntime
        assert rows['tiny_edsr']['ort_cpu_ms'] > 0 and 'onnxruntime CPU ms (1 thr)' in table


def test_options_file_without_checkpoint_uses_the_runs_latest(tmp_path):
    path = tmp_path / 'o.yml'
    path.write_text(yaml.safe_dump({'name': 'run1', 'scale': 4, 'network_g': {'type': 'HDRNet', 'upscale': 4}}))
    spec = parse_model(str(path), root=str(tmp_path))
    assert spec.label == 'run1' and spec.scale == 4
    assert spec.checkpoint == osp.join(str(tmp_path), 'experiments', 'run1', 'models', 'net_g_latest.pth')
    assert parse_model(f'mine={path}@x.pth').checkpoint == 'x.pth' and parse_model(f'mine={path}').label == 'mine'
