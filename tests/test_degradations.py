"""BI, BD and DN (RDN's degradation models): each checked against a hand computation of its definition."""
import json
import math

import numpy as np
import pytest

from kd_plugin.data.degradations import (
    bd_indices,
    bd_kernel_size,
    blur_downscale,
    degrader,
    gaussian_kernel,
    imfilter_replicate,
    nearest_indices,
    noise_seed,
    noisy_downscale,
)
from kd_plugin.data.image_io import read_image, write_image
from kd_plugin.data.matlab_bicubic import bicubic_downscale
from tests.test_prepare import prepare


def test_gaussian_kernel_is_fspecial_gaussian_7_1_6():
    # fspecial: exp(-(x^2 + y^2) / (2 sigma^2)) on -3..3, normalised; the 1-D factors by hand
    g = [math.exp(-k * k / (2 * 1.6 ** 2)) for k in range(-3, 4)]
    total = sum(g) ** 2
    kernel = gaussian_kernel(7)
    assert kernel.shape == (7, 7) and kernel.sum() == pytest.approx(1, abs=1e-15)
    assert kernel[3, 3] == pytest.approx(1 / total, rel=1e-12)  # 0.0655556
    assert kernel[0, 0] == pytest.approx(g[0] * g[0] / total, rel=1e-12)
    assert kernel[3, 3] == pytest.approx(0.0655556, abs=1e-7)
    assert np.array_equal(kernel, kernel.T) and np.array_equal(kernel, kernel[::-1])


def test_imfilter_replicates_the_border_and_rounds_like_matlab():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    kernel = gaussian_kernel(7)
    out = imfilter_replicate(img, kernel)
    assert out.dtype == np.uint8 and out.shape == img.shape
    h, w = img.shape[:2]
    for y, x in ((0, 0), (4, 5), (8, 10), (1, 9)):
        for c in range(3):
            total = sum(kernel[i, j] * float(img[min(max(y + i - 3, 0), h - 1), min(max(x + j - 3, 0), w - 1), c])
                        for i in range(7) for j in range(7))
            assert out[y, x, c] == math.floor(total + 0.5)
    flat = np.full((8, 8), 200, np.uint8)  # a flat image stays flat: the kernel sums to one
    assert np.array_equal(imfilter_replicate(flat, kernel), flat)


@pytest.mark.parametrize('scale, first', [(2, [1, 3, 5]), (3, [1, 4, 7]), (4, [2, 6, 10])])
def test_nearest_downscale_picks_matlabs_rows(scale, first):
    # u = s*x + (1 - s)/2, rounded half away from zero, 1-based: x3 -> 2, 5, 8; x4 -> 2.5, 6.5 -> 3, 7; x2 -> 2, 4
    assert nearest_indices(scale * 3, scale).tolist() == first


def test_gaussian_kernel_of_even_side_is_fspecial_gaussian_12_1_6():
    # fspecial at an even side: the taps sit at half-integer offsets -5.5 ... 5.5
    g = [math.exp(-(k + 0.5) ** 2 / (2 * 1.6 ** 2)) for k in range(-6, 6)]
    kernel = gaussian_kernel(12)
    assert kernel.shape == (12, 12) and kernel.sum() == pytest.approx(1, abs=1e-15)
    assert kernel[0, 5] == pytest.approx(g[0] * g[5] / sum(g) ** 2, rel=1e-12)
    assert kernel[5, 6] == pytest.approx(g[5] * g[6] / sum(g) ** 2, rel=1e-12)


def _bd_by_hand(hr: np.ndarray, side: int, rows: list[int], cols: list[int]) -> np.ndarray:
    """BD computed pixel by pixel: fspecial('gaussian', side, 1.6), correlation with the border replicated and the
    kernel's centre at floor((side + 1) / 2) (MATLAB's rule, 1-based), rounded half away from zero, then the
    1-based rows and columns given."""
    half = (side - 1) / 2
    taps = [math.exp(-(k - half) ** 2 / (2 * 1.6 ** 2)) for k in range(side)]
    norm = sum(taps) ** 2
    before = (side + 1) // 2 - 1  # taps before the centre
    h, w, c = hr.shape
    out = np.zeros((len(rows), len(cols), c), np.uint8)
    for a, r in enumerate(rows):
        for b, q in enumerate(cols):
            for ch in range(c):
                total = sum(taps[i] * taps[j] / norm
                            * float(hr[min(max(r - 1 + i - before, 0), h - 1), min(max(q - 1 + j - before, 0), w - 1),
                                       ch]) for i in range(side) for j in range(side))
                out[a, b, ch] = math.floor(total + 0.5)
    return out


@pytest.mark.parametrize('scale, side, first_rows', [(2, 12, [1, 3, 5]), (3, 7, [2, 5, 8]), (4, 12, [2, 6, 10])])
def test_bd_is_rdns_imresize_bd_at_each_scale(scale, side, first_rows):
    """RDN's imresize_BD: odd scales a 7x7 (x3) Gaussian and MATLAB's nearest downscale, even scales a 12x12
    Gaussian and the samples s/2 : s : end - s/2 (1-based)."""
    assert bd_kernel_size(scale) == side
    assert (bd_indices(scale * 3, scale) + 1).tolist() == first_rows
    rng = np.random.default_rng(scale)
    hr = rng.integers(0, 256, (5 * scale - 1, 3 * scale + 1, 3), dtype=np.uint8)  # modcropped to 4s x 3s
    rows = [first_rows[0] + scale * k for k in range(4)]
    cols = [first_rows[0] + scale * k for k in range(3)]
    lr = blur_downscale(hr, scale)
    assert lr.shape == (4, 3, 3)
    assert np.array_equal(lr, _bd_by_hand(hr[:4 * scale, :3 * scale], side, rows, cols))


def test_bd_odd_scales_past_three_use_the_ceil_3_sigma_kernel():
    assert bd_kernel_size(5) == 11 and bd_kernel_size(3, sigma=1.0) == 7 and bd_kernel_size(3, sigma=2.0) == 13


def test_dn_adds_seeded_noise_to_bi_in_float32_and_saturates():
    hr = np.full((64, 64, 3), 128, np.uint8)
    hr[:, :8] = 3  # near black: the noise saturates at 0
    lr = noisy_downscale(hr, 4, seed=7, name='img')
    bi = bicubic_downscale(hr, 4)
    noise = (30.0 * np.random.default_rng(noise_seed(7, 'img')).standard_normal(bi.shape)).astype(np.float32)
    expected = np.clip(np.floor(bi.astype(np.float32) + noise + 0.5), 0, 255).astype(np.uint8)
    assert np.array_equal(lr, expected)
    mid = lr[:, 4:].astype(np.float64) - 128
    assert abs(mid.std() - 30) < 2.5 and abs(mid.mean()) < 2.5
    assert (lr[:, :2] == 0).mean() > 0.3
    assert np.array_equal(noisy_downscale(hr, 4, seed=7, name='img'), lr)
    assert not np.array_equal(noisy_downscale(hr, 4, seed=8, name='img'), lr)
    assert not np.array_equal(noisy_downscale(hr, 4, seed=7, name='other'), lr)


def test_unknown_degradation_is_refused():
    with pytest.raises(ValueError, match="--degradation 'jpeg': choose one of bi, bd, dn"):
        degrader('jpeg')


def test_prepare_lr_degradations_write_their_definition_and_do_not_depend_on_the_other_images(tmp_path):
    rng = np.random.default_rng(3)
    src, alone = tmp_path / 'src', tmp_path / 'alone'
    images = {name: rng.integers(0, 256, (40, 36, 3), dtype=np.uint8) for name in ('a', 'b')}
    for name, img in images.items():
        write_image(str(src / f'{name}.png'), img)
    write_image(str(alone / 'b.png'), images['b'])
    for kind in ('bd', 'dn'):
        both = prepare('lr', '--input', str(src), '--output', str(tmp_path / kind), '--scales', '4',
                       '--degradation', kind, '--seed', '5')
        assert both.returncode == 0, both.stderr
        one = prepare('lr', '--input', str(alone), '--output', str(tmp_path / f'{kind}1'), '--scales', '4',
                      '--degradation', kind, '--seed', '5')
        assert one.returncode == 0, one.stderr
        lr = read_image(str(tmp_path / kind / 'X4' / 'LR' / 'b.png'))
        assert np.array_equal(lr, read_image(str(tmp_path / f'{kind}1' / 'X4' / 'LR' / 'b.png')))
        assert np.array_equal(lr, degrader(kind, 5)(images['b'], 4, 'b'))
        record = json.loads((tmp_path / kind / 'X4' / 'degradation.json').read_text())
        rule = {'rule': 'rdn_parity', 'kernel_size': 12, 'sigma': 1.6} if kind == 'bd' else {}
        assert record == {'degradation': kind, 'scale': 4, 'seed': 5 if kind == 'dn' else None, **rule}
    bad = prepare('lr', '--input', str(src), '--output', str(tmp_path / 'x'), '--degradation', 'jpeg')
    assert bad.returncode == 2 and 'invalid choice' in bad.stderr


def test_bd_and_dn_reproduce_rdns_published_bicubic_baseline_on_set5(tmp_path):
    """RDN's tables (x3, Y-PSNR, Set5): bicubic on BD 28.78 dB, on DN 24.01 dB. BD is deterministic; DN draws
    its own noise, so it agrees to within the spread of one draw."""
    from kd_plugin.benchmark.quality import bicubic_upscaler, evaluate, load_test_set
    from tests.helpers import shared_data

    expected = {'bd': (28.78, 0.02), 'dn': (24.01, 0.1)}
    for kind, (published, tolerance) in expected.items():
        result = prepare('lr', '--degradation', kind, '--input', shared_data('Set5', 'HR'), '--output',
                         str(tmp_path / kind), '--scales', '3')
        assert result.returncode == 0, result.stderr
        psnr = evaluate(bicubic_upscaler(3), load_test_set(str(tmp_path / kind), 3), 3)['psnr']
        assert abs(psnr - published) < tolerance, (kind, psnr)


def test_a_held_out_folder_with_hr_and_lr_is_scored_on_its_own_lr(tmp_path):
    """``prepare split`` writes ``val/HR`` and ``val/LR``; for BD or DN the LR is not bicubic, so the benchmark
    must read it, not make a bicubic one (it once did, and scored BD and DN held-out sets as BI)."""
    from kd_plugin.benchmark.quality import bicubic_upscaler, evaluate, load_test_set
    from tests.helpers import shared_data

    assert prepare('lr', '--degradation', 'bd', '--input', shared_data('Set5', 'HR'), '--output',
                   str(tmp_path / 'bd'), '--scales', '4').returncode == 0
    val = tmp_path / 'val'  # the split's layout: HR/ and LR/ side by side
    (tmp_path / 'bd' / 'X4').rename(val)
    images = load_test_set(str(val), 4)
    for image in images:
        assert np.array_equal(image.lr, read_image(str(val / 'LR' / f'{image.name}.png')))
    bicubic = evaluate(bicubic_upscaler(4), load_test_set(shared_data('Set5'), 4), 4)['psnr']
    assert evaluate(bicubic_upscaler(4), images, 4)['psnr'] < bicubic - 0.5  # blurred LR scores lower
    (val / 'LR' / 'bird.png').unlink()
    with pytest.raises(FileNotFoundError, match='bird.png has no LR image'):
        load_test_set(str(val), 4)
