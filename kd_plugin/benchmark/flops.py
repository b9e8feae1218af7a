"""FLOP counting with ``torch.utils.flop_counter``, extended to ``torchvision::deform_conv2d``.

torch's counter knows nothing of torchvision's deformable convolution and would count DCN layers
as free. Our formula for a modulated deformable conv with input ``[B, Cin, H, W]``, weight
``[Cout, Cin/g, kh, kw]`` and output ``[B, Cout, Ho, Wo]``:

* the convolution proper: ``2 * B * Cout * Ho * Wo * (Cin/g) * kh * kw`` (as for ``conv2d``);
* bilinear sampling of every tap: ``B * Cin * kh * kw * Ho * Wo`` samples of 4 weighted reads
  (8 FLOPs) plus the mask multiply (1 FLOP).

FLOPs count a multiply-add as 2; MACs are FLOPs / 2.
"""
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


def _formula(*args, out_shape=None, **kwargs) -> int:
    input_shape, weight_shape, offset_shape, mask_shape, bias_shape = args[:5]
    return deform_conv2d_flops(input_shape, weight_shape, offset_shape, mask_shape, bias_shape)


# FlopCounterMode looks formulas up by overload packet.
CUSTOM_FLOPS = {torch.ops.torchvision.deform_conv2d: _formula}


@torch.no_grad()
def count_flops(model: nn.Module, *inputs: torch.Tensor) -> int:
    """Total forward FLOPs of ``model(*inputs)``, deformable convolutions included."""
    with FlopCounterMode(display=False, custom_mapping=CUSTOM_FLOPS) as counter:
        model(*inputs)
    return counter.get_total_flops()


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
