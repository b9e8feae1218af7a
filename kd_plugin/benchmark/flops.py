"""FLOP counting with ``torch.utils.flop_counter``, extended to everything an SR network computes.

torch's counter covers matrix products and convolutions only. A bilateral-grid network spends most of
its time outside them, at full resolution (slicing, interpolation, the affine apply), so those are
counted too. Per call, with FLOPs counting a multiply-add as 2 (MACs = FLOPs / 2):

* ``torchvision::deform_conv2d`` (input ``[B, Cin, H, W]``, weight ``[Cout, Cin/g, kh, kw]``, output
  ``[B, Cout, Ho, Wo]``): the convolution proper ``2 * B * Cout * Ho * Wo * (Cin/g) * kh * kw`` plus
  bilinear sampling of every tap, ``B * Cin * kh * kw * Ho * Wo`` samples of 4 weighted reads (8) and
  the mask multiply (1): 9 per sample;
* ``grid_sampler_3d`` (trilinear, the bilateral slice): 8 corners per output value, a multiply-add
  each: ``16 * N * C * Do * Ho * Wo``, plus the per-location weights (3 fractions, 8 products of 3:
  ``30 * N * Do * Ho * Wo``, shared by the channels); ``grid_sampler_2d`` (bilinear): ``8 * N * C *
  Ho * Wo + 12 * N * Ho * Wo``;
* ``upsample_bicubic2d``: separable 4-tap kernels, ``(4 + 4) * 2 = 16`` per output value;
  ``upsample_bilinear2d``: ``(2 + 2) * 2 = 8``; nearest: 0;
* element-wise ops, per output element: ``add``/``sub``/``mul``/``div``/``relu``/``leaky_relu``/
  ``clamp``/``neg``/``rsub`` 1, ``addcmul``/``lerp``/``prelu`` 2, ``sigmoid`` 4, ``tanh``/``gelu`` 8, ``mean``/
  ``sum`` over an input: 1 per input element;
* data movement (``pixel_shuffle``, ``cat``, views, copies, padding) is 0.
"""
import math

import torch
import torchvision  # noqa: F401  (registers torch.ops.torchvision)
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def deform_conv2d_flops(input_shape, weight_shape, offset_shape, mask_shape, bias_shape, *args, out_shape=None,
                        **kwargs) -> int:
    """FLOPs of one ``torchvision::deform_conv2d`` call (see the module docstring)."""
    b, c_in = input_shape[0], input_shape[1]
    c_out, c_in_per_group, kh, kw = weight_shape
    ho, wo = offset_shape[-2], offset_shape[-1]
    conv = 2 * b * c_out * ho * wo * c_in_per_group * kh * kw
    sampling = 9 * b * c_in * kh * kw * ho * wo
    return conv + sampling


def _deform(*args, out_shape=None, **kwargs) -> int:
    input_shape, weight_shape, offset_shape, mask_shape, bias_shape = args[:5]
    return deform_conv2d_flops(input_shape, weight_shape, offset_shape, mask_shape, bias_shape)


def _grid_sampler_3d(input_shape, grid_shape, *args, out_shape=None, **kwargs) -> int:
    n, c = input_shape[:2]
    locations = n * math.prod(grid_shape[1:4])
    return 16 * c * locations + 30 * locations


def _grid_sampler_2d(input_shape, grid_shape, *args, out_shape=None, **kwargs) -> int:
    n, c = input_shape[:2]
    locations = n * math.prod(grid_shape[1:3])
    return 8 * c * locations + 12 * locations


def _per_output(flops_per_element: int):
    def formula(*args, out_shape=None, **kwargs) -> int:
        return flops_per_element * math.prod(out_shape) if out_shape is not None else 0
    return formula


def _per_input(*args, out_shape=None, **kwargs) -> int:
    return math.prod(args[0]) if args and isinstance(args[0], (list, tuple, torch.Size)) else 0


_PER_OUTPUT = ((1, ('add', 'sub', 'mul', 'div', 'relu', 'leaky_relu', 'clamp', 'clamp_min', 'clamp_max', 'neg', 'rsub',
                    'hardtanh')),
               (2, ('addcmul', 'lerp', 'prelu', '_prelu_kernel')), (4, ('sigmoid',)),
               (8, ('tanh', 'gelu', 'upsample_bilinear2d')),
               (16, ('upsample_bicubic2d',)))


def _custom_mapping() -> dict:
    aten = torch.ops.aten
    mapping = {torch.ops.torchvision.deform_conv2d: _deform, aten.grid_sampler_3d: _grid_sampler_3d,
               aten.grid_sampler_2d: _grid_sampler_2d, aten.mean: _per_input, aten.sum: _per_input}
    for flops, names in _PER_OUTPUT:
        for name in names:
            for variant in (name, f'{name}_'):
                packet = getattr(aten, variant, None)
                if packet is not None:
                    mapping[packet] = _per_output(flops)
    return mapping


# FlopCounterMode looks formulas up by overload packet.
CUSTOM_FLOPS = _custom_mapping()


@torch.no_grad()
def count_flops(model: nn.Module, *inputs: torch.Tensor) -> int:
    """Total forward FLOPs of ``model(*inputs)``: convolutions, matrix products, deformable convolutions,
    grid sampling, interpolation and element-wise ops (see the module docstring for the formulas)."""
    with FlopCounterMode(display=False, custom_mapping=CUSTOM_FLOPS) as counter:
        model(*inputs)
    return counter.get_total_flops()


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
