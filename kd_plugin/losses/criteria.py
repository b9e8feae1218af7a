"""The comparison functions the three distillation losses are built from.

All reduce to a scalar mean. ``x`` is the student-side tensor, ``y`` the teacher-side target.
"""
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

OUTPUT_CRITERIA = ('l1', 'l2', 'charbonnier', 'relative')
FEATURE_CRITERIA = ('l1', 'l2', 'fakd', 'at')


def pointwise(name: str, x: torch.Tensor, y: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """The unreduced output criterion ``name`` (one value per element), for per-pixel weighting:
    ``l1`` ``|x - y|``, ``l2`` ``(x - y)^2``, ``charbonnier`` ``sqrt((x - y)^2 + eps^2)``, ``relative``
    ``|x - y| / (|y| + eps)``."""
    d = x - y
    if name == 'l1':
        return d.abs()
    if name == 'l2':
        return d.square()
    if name == 'charbonnier':
        return torch.sqrt(d.square() + eps * eps)
    if name == 'relative':
        return d.abs() / (y.abs() + eps)
    raise ValueError(f'no pointwise form of criterion {name!r}')


def l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``mean |x - y|``."""
    return pointwise('l1', x, y).mean()


def l2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``mean (x - y)^2`` (FitNet's hint loss on features)."""
    return pointwise('l2', x, y).mean()


def charbonnier(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``mean sqrt((x - y)^2 + eps^2)``, eps = 1e-3."""
    return pointwise('charbonnier', x, y).mean()


def relative(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Relative difference ``mean |x - y| / (|y| + eps)``, eps = 1e-3: errors count more where the target is dark."""
    return pointwise('relative', x, y).mean()


def spatial_affinity(feat: torch.Tensor) -> torch.Tensor:
    """FAKD (He et al. 2020) affinity ``[B, HW, HW]``: cosine similarity of every pair of pixels'
    channel vectors, ``A_ij = <f_i, f_j> / (|f_i| |f_j|)``. Independent of the channel count."""
    flat = F.normalize(feat.flatten(2), dim=1, eps=1e-12)  # [B, C, HW], unit vectors per pixel
    return flat.transpose(1, 2) @ flat


#: FAKD compares ``(H*W)^2`` affinities per image; above this many positions both maps are average-pooled.
FAKD_MAX_POSITIONS = 4096


def pooled_for_affinity(feat: torch.Tensor, max_positions: int = FAKD_MAX_POSITIONS) -> torch.Tensor:
    """``feat`` ``[B, C, H, W]`` average-pooled by the smallest integer factor ``k`` that brings ``ceil(H/k) *
    ceil(W/k)`` to at most ``max_positions`` (unchanged when already there): the affinity matrix then
    has at most ``max_positions^2`` entries per image (4096 -> 64 MiB in fp32) whatever the patch size."""
    h, w = feat.shape[-2:]
    k = 1
    while math.ceil(h / k) * math.ceil(w / k) > max_positions:
        k += 1
    return feat if k == 1 else F.avg_pool2d(feat, k, ceil_mode=True)


def fakd(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``mean |A(x) - A(y)|`` over the spatial affinity matrices (student and teacher C may differ), of
    the features pooled to at most :data:`FAKD_MAX_POSITIONS` positions."""
    x, y = pooled_for_affinity(x.float()), pooled_for_affinity(y.float())
    return (spatial_affinity(x) - spatial_affinity(y)).abs().mean()


def attention_map(feat: torch.Tensor) -> torch.Tensor:
    """AT (Zagoruyko & Komodakis 2017) map ``[B, HW]``: ``mean_c f_c^2`` per pixel, L2-normalised."""
    return F.normalize(feat.float().square().mean(dim=1).flatten(1), dim=1, eps=1e-12)


def attention(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``mean (Q(x) - Q(y))^2`` over the normalised attention maps, as in the AT reference code."""
    return (attention_map(x) - attention_map(y)).square().mean()


_FUNCTIONS = {'l1': l1, 'l2': l2, 'charbonnier': charbonnier, 'relative': relative, 'fakd': fakd, 'at': attention}


def get_criterion(name: str, allowed: tuple[str, ...], option: str) -> Callable[..., torch.Tensor]:
    """The criterion function called ``name``; anything outside ``allowed`` is a ``ValueError`` naming ``option``."""
    if name not in allowed:
        raise ValueError(f'{option}: unknown criterion {name!r}; choose one of {", ".join(allowed)}')
    return _FUNCTIONS[name]


#: Teacher channels whose standard deviation is below this fraction of the feature's typical one (the
#: root mean square of its per-channel deviations) are left out of standardised feature matching.
NEAR_CONSTANT = 0.1


def standardise_by_teacher(student: torch.Tensor, teacher: torch.Tensor,
                           near_constant: float = NEAR_CONSTANT) -> tuple[torch.Tensor, torch.Tensor]:
    """Both features ``[B, C, ...]`` standardised by the teacher feature's per-channel mean and standard
    deviation (over every dimension but the channels, no gradient), ``(f - mu_T) / sigma_T``, keeping only
    the channels where ``sigma_T >= near_constant * rms(sigma_T)``: ``[B, C', ...]``.

    The same loss weight then fits features on any scale (EDSR's 0-255 features, HDRNet's grids).
    Near-constant teacher channels are left out instead of being divided by almost zero: the shipped
    HDRNet teacher has 36 of 64 dead ReLU channels (``sigma = 0``) at ``coeffs.splat``, and dividing by
    ``sigma + 1e-6`` made a student within 0.01 of it cost ``1e7``. Such a channel carries nothing to
    learn: the adapted student feature only feeds this loss, so matching a constant would train the
    adapter, not the student. A feature with no varying channel is only centred."""
    dims = [d for d in range(teacher.dim()) if d != 1]
    with torch.no_grad():
        mean = teacher.mean(dim=dims, keepdim=True)
        std = teacher.std(dim=dims, keepdim=True, unbiased=False)
        keep = (std >= near_constant * std.square().mean().sqrt()).flatten() & (std.flatten() > 0)
    if not keep.any():
        return student - mean, teacher - mean
    mean, std = mean[:, keep], std[:, keep]  # before dividing: a 0 in std would put NaN in the gradient
    return (student[:, keep] - mean) / std, (teacher[:, keep] - mean) / std


def needs_same_channels(name: str) -> bool:
    """Element-wise criteria compare channel by channel (an adapter maps C); FAKD and AT do not."""
    return name in ('l1', 'l2')
