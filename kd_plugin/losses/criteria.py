"""The comparison functions the three distillation losses are built from.

All reduce to a scalar mean. ``x`` is the student-side tensor, ``y`` the teacher-side target.
"""
import torch
import torch.nn.functional as F

OUTPUT_CRITERIA = ('l1', 'l2', 'charbonnier', 'relative')
FEATURE_CRITERIA = ('l1', 'l2', 'fakd', 'at')


def l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``mean |x - y|``."""
    return (x - y).abs().mean()


def l2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``mean (x - y)^2`` (FitNet's hint loss on features)."""
    return (x - y).square().mean()


def charbonnier(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """``mean sqrt((x - y)^2 + eps^2)``."""
    return torch.sqrt((x - y).square() + eps * eps).mean()


def relative(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Relative difference ``mean |x - y| / (|y| + eps)``: errors count more where the target is dark."""
    return ((x - y).abs() / (y.abs() + eps)).mean()


def spatial_affinity(feat: torch.Tensor) -> torch.Tensor:
    """FAKD (He et al. 2020) affinity ``[B, HW, HW]``: cosine similarity of every pair of pixels'
    channel vectors, ``A_ij = <f_i, f_j> / (|f_i| |f_j|)``. Independent of the channel count."""
    flat = F.normalize(feat.flatten(2), dim=1, eps=1e-12)  # [B, C, HW], unit vectors per pixel
    return flat.transpose(1, 2) @ flat


def fakd(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``mean |A(x) - A(y)|`` over the spatial affinity matrices (student and teacher C may differ)."""
    return (spatial_affinity(x.float()) - spatial_affinity(y.float())).abs().mean()


def attention_map(feat: torch.Tensor) -> torch.Tensor:
    """AT (Zagoruyko & Komodakis 2017) map ``[B, HW]``: ``mean_c f_c^2`` per pixel, L2-normalised."""
    return F.normalize(feat.float().square().mean(dim=1).flatten(1), dim=1, eps=1e-12)


def attention(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``mean (Q(x) - Q(y))^2`` over the normalised attention maps, as in the AT reference code."""
    return (attention_map(x) - attention_map(y)).square().mean()


_FUNCTIONS = {'l1': l1, 'l2': l2, 'charbonnier': charbonnier, 'relative': relative, 'fakd': fakd, 'at': attention}


def get_criterion(name: str, allowed: tuple[str, ...], option: str):
    """The criterion function called ``name``; anything outside ``allowed`` is a ``ValueError`` naming ``option``."""
    if name not in allowed:
        raise ValueError(f'{option}: unknown criterion {name!r}; choose one of {", ".join(allowed)}')
    return _FUNCTIONS[name]


def needs_same_channels(name: str) -> bool:
    """Element-wise criteria compare channel by channel (an adapter maps C); FAKD and AT do not."""
    return name in ('l1', 'l2')
