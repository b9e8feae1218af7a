"""The classical SR degradation models BI, BD and DN (Zhang et al., RDN, CVPR 2018), on uint8 images.

Each maps a modcropped HR image to its LR image exactly as RDN's MATLAB data scripts do
(``Prepare_TrainData_HR_LR_{BI,BD,DN}.m``):

* **BI**: ``imresize(HR, 1/s, 'bicubic')`` (:func:`kd_plugin.data.matlab_bicubic.bicubic_downscale`).
* **BD** (``imresize_BD`` of RDN's ``Prepare_TestData_HR_LR.m``): ``imfilter(HR, fspecial('gaussian', k, 1.6),
  'replicate')`` on uint8 (rounded half away from zero and saturated, as imfilter does for integer images),
  then a sampling whose rule depends on the scale's parity:

  - odd ``s``: ``k = ceil(3 sigma) * 2 + 1`` (11), except ``k = 7`` at x3 (RDN's x3 sets, which its tables
    report), then ``imresize(..., 1/s, 'nearest')``, which has no antialiasing and keeps input pixel
    ``round(s*x + (1 - s)/2)`` (1-based, halves away from zero): rows and columns 2, 5, 8, ... at x3;
  - even ``s``: ``k = ceil(3 sigma) * 2 + 2`` (a 12x12 kernel), then the samples ``s/2 : s : end - s/2``
    (1-based): rows and columns 1, 3, 5, ... at x2 and 2, 6, 10, ... at x4.

  (kd_plugin before 2026-12-07 used the x3 rule at every scale: its x4 BD sets were not RDN's.)
* **DN**: BI, then ``uint8(single(LR) + 30*randn)``: Gaussian noise of sigma 30 added in float32, rounded and
  saturated. The noise is drawn from ``(seed, image name)``, so an image's LR is the same in every build
  whatever the order or the other images, and a label set made from it stays paired with it.
"""
import hashlib
import math
from collections.abc import Callable

import numpy as np

from kd_plugin.data.matlab_bicubic import bicubic_downscale, modcrop

#: The degradations ``prepare lr --degradation`` makes.
DEGRADATIONS = ('bi', 'bd', 'dn')
BD_SIGMA = 1.6
#: What ``degradation.json`` records of BD's rule (sets written before it was recorded followed the x3 rule at
#: every scale).
BD_RULE = 'rdn_parity'
DN_SIGMA = 30.0


def _round_saturate(x: np.ndarray) -> np.ndarray:
    # MATLAB's conversion to uint8: halves away from zero, then [0, 255]; below 0 both rules give 0
    return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


def gaussian_kernel(size: int, sigma: float = BD_SIGMA) -> np.ndarray:
    """MATLAB ``fspecial('gaussian', size, sigma)``: ``[size, size]`` float64, entries below ``eps * max`` set
    to 0, normalised to sum 1."""
    half = (size - 1) / 2
    y, x = np.mgrid[-half:half + 1, -half:half + 1]
    h = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    h[h < np.finfo(np.float64).eps * h.max()] = 0
    return h / h.sum()


def imfilter_replicate(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """MATLAB ``imfilter(img, kernel, 'replicate')`` of a uint8 ``[H, W]`` or ``[H, W, C]`` image: correlation
    in float64 with the border replicated, rounded and saturated to uint8; same shape."""
    kh, kw = kernel.shape
    planar = img.reshape(*img.shape[:2], -1).astype(np.float64)
    top, left = (kh - 1) // 2, (kw - 1) // 2
    padded = np.pad(planar, ((top, kh - 1 - top), (left, kw - 1 - left), (0, 0)), mode='edge')
    h, w = img.shape[:2]
    out = np.zeros_like(planar)
    for i in range(kh):
        for j in range(kw):
            if kernel[i, j]:
                out += kernel[i, j] * padded[i:i + h, j:j + w]
    return _round_saturate(out).reshape(img.shape)


def nearest_indices(in_len: int, scale: int) -> np.ndarray:
    """0-based input indices that MATLAB ``imresize(..., 1/scale, 'nearest')`` keeps along an axis of
    ``in_len`` (a multiple of ``scale``): output ``x`` (1-based) reads ``u = scale*x + (1 - scale)/2``,
    rounded half away from zero."""
    x = np.arange(1, in_len // scale + 1, dtype=np.float64)
    u = scale * x + 0.5 * (1 - scale)
    return np.clip(np.floor(u + 0.5).astype(np.int64) - 1, 0, in_len - 1)


def bd_kernel_size(scale: int, sigma: float = BD_SIGMA) -> int:
    """The side of BD's Gaussian at ``scale``: ``ceil(3 sigma) * 2 + 2`` for even scales, ``ceil(3 sigma) * 2 + 1``
    for odd ones, and 7 at x3 with sigma 1.6 (RDN's x3 sets)."""
    if scale % 2 == 0:
        return math.ceil(3 * sigma) * 2 + 2
    if scale == 3 and sigma == BD_SIGMA:
        return 7
    return math.ceil(3 * sigma) * 2 + 1


def bd_indices(in_len: int, scale: int) -> np.ndarray:
    """0-based input indices BD keeps along an axis of ``in_len`` (a multiple of ``scale``): MATLAB's nearest
    downscale for odd scales, the samples ``s/2 : s : end - s/2`` (1-based) for even ones."""
    if scale % 2:
        return nearest_indices(in_len, scale)
    return np.arange(scale // 2 - 1, in_len - scale // 2, scale)


def blur_downscale(hr: np.ndarray, scale: int) -> np.ndarray:
    """BD: the modcropped ``hr`` blurred by the Gaussian of sigma 1.6 and side :func:`bd_kernel_size`, then
    sampled at :func:`bd_indices` along both axes."""
    blurred = imfilter_replicate(modcrop(hr, scale), gaussian_kernel(bd_kernel_size(scale)))
    h, w = blurred.shape[:2]
    return blurred[bd_indices(h, scale)][:, bd_indices(w, scale)]


def noise_seed(seed: int, name: str) -> np.random.SeedSequence:
    """The noise stream of image ``name`` (its file stem) under ``seed``: independent of every other image."""
    digest = hashlib.sha256(name.encode()).digest()
    return np.random.SeedSequence([seed, int.from_bytes(digest[:8], 'little')])


def noisy_downscale(hr: np.ndarray, scale: int, seed: int, name: str, sigma: float = DN_SIGMA) -> np.ndarray:
    """DN: the BI image of ``hr`` plus Gaussian noise of ``sigma`` (``name``'s stream under ``seed``), summed in
    float32, rounded and saturated to uint8."""
    lr = bicubic_downscale(hr, scale)
    noise = (sigma * np.random.default_rng(noise_seed(seed, name)).standard_normal(lr.shape)).astype(np.float32)
    return _round_saturate(lr.astype(np.float32) + noise)


def degrader(degradation: str, seed: int = 0) -> Callable[[np.ndarray, int, str], np.ndarray]:
    """``f(hr, scale, name) -> lr`` for ``degradation`` (``bi``, ``bd`` or ``dn``; ``seed`` is DN's)."""
    if degradation == 'bi':
        return lambda hr, scale, name: bicubic_downscale(hr, scale)
    if degradation == 'bd':
        return lambda hr, scale, name: blur_downscale(hr, scale)
    if degradation == 'dn':
        return lambda hr, scale, name: noisy_downscale(hr, scale, seed, name)
    raise ValueError(f'--degradation {degradation!r}: choose one of {", ".join(DEGRADATIONS)}')
