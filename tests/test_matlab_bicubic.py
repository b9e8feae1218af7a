"""MATLAB-style bicubic: bit-exact against the standard LR files, and the properties it relies on."""
import numpy as np
import pytest
from basicsr.utils.matlab_functions import imresize as basicsr_imresize

from kd_plugin.data.image_io import list_images, read_image
from kd_plugin.data.matlab_bicubic import bicubic_downscale, imresize_uint8, modcrop, resize_matrix
from tests.helpers import shared_data


@pytest.mark.parametrize('test_set', ['Set5', 'Set14', 'BSD100'])
@pytest.mark.parametrize('scale', [2, 3, 4])
def test_reproduces_standard_lr_files_bit_for_bit(test_set, scale):
    hr_dir = shared_data(test_set, 'HR')
    lr_dir = shared_data(test_set, 'LR_bicubic', f'X{scale}')
    names = list_images(hr_dir)
    assert len(names) in (5, 14, 100)
    for name in names:
        expected = read_image(f'{lr_dir}/{name}')
        got = bicubic_downscale(read_image(f'{hr_dir}/{name}'), scale)
        assert got.shape == expected.shape, name
        assert np.array_equal(got, expected), f'{test_set} x{scale} {name}: {(got != expected).mean():.2%} differ'


def test_basicsr_float_imresize_is_not_bit_exact():
    """The reason this module exists: BasicSR's imresize (float, one rounding) misses ±1 often."""
    hr = read_image(shared_data('Set5', 'HR', 'baby.png'))
    expected = read_image(shared_data('Set5', 'LR_bicubic', 'X4', 'baby.png'))
    theirs = np.clip(np.round(basicsr_imresize(hr.astype(np.float32) / 255, 0.25) * 255), 0, 255).astype(np.uint8)
    assert 0.05 < (theirs != expected).mean()
    assert np.array_equal(bicubic_downscale(hr, 4), expected)


def test_resize_matrix_rows_are_normalised_and_border_is_replicated():
    m = resize_matrix(10, 5, 0.5)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-12)
    # a constant image stays constant, edges included (replication, not zero padding)
    img = np.full((10, 10), 200, np.uint8)
    assert np.array_equal(imresize_uint8(img, 0.5), np.full((5, 5), 200, np.uint8))


def test_shapes_grey_and_modcrop():
    grey = (np.arange(37 * 53) % 251).astype(np.uint8).reshape(37, 53)
    assert modcrop(grey, 4).shape == (36, 52)
    assert bicubic_downscale(grey, 4).shape == (9, 13)
    assert imresize_uint8(grey, 3.0).shape == (111, 159)
    with pytest.raises(ValueError, match='uint8'):
        imresize_uint8(grey.astype(np.float32), 0.5)
