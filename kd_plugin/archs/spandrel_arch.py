"""``SpandrelNet``: a published SR checkpoint of any architecture that spandrel recognises, as a BasicSR arch.

spandrel (MIT) tells 40+ SR architectures (SPAN, Real-ESRGAN Compact, SwinIR, HAT, DAT, OmniSR, ...) apart
by their checkpoint's keys and builds the module with the hyper-parameters the tensor shapes imply, so a
released file serves as a KD teacher without its arch being written here::

    network_t: {type: SpandrelNet}                     # the file: path.pretrain_network_t
    path: {pretrain_network_t: 2x_SPAN.safetensors}

    network_t: {type: SpandrelNet, checkpoint: 2x_SPAN.safetensors, upscale: 2, num_in_ch: 3, num_out_ch: 3}

The arch reads its weights itself (``loads_own_weights``; :mod:`kd_plugin.archs.self_loading` fills
``checkpoint`` in from ``path.pretrain_network_<x>``, ``param_key`` from ``path.param_key_<x>`` and ``upscale``
from the run's ``scale``). The file is read as every checkpoint of the plugin is (:mod:`kd_plugin.checkpoint_io`:
weights-only unpickling or safetensors, never code, so a TorchScript ``.pt`` is refused), and its state dict is
picked by the same rule (``param_key``, else ``params_ema``, else ``params``, else the top level), so its
SHA-256 and entry identify the teacher to the label cache as for any teacher.
"""
import inspect
import logging

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from spandrel import ImageModelDescriptor, ModelLoader, UnsupportedModelError, canonicalize_state_dict
from spandrel import __version__ as spandrel_version
from torch import nn

from kd_plugin.checkpoint_io import load_weights_only, pick_state_dict

#: ``ImageModelDescriptor.__call__`` without its ``torch.inference_mode()`` decorator: the same padding to the
#: model's size requirements, model-specific call, clamp to [0, 1] and crop, but its outputs and hooked features
#: are ordinary tensors. Inference-mode tensors cannot be saved for backward (an MSE distillation target is),
#: and forward adaptation needs gradients through the teacher's tail.
_DESCRIPTOR_CALL = inspect.unwrap(ImageModelDescriptor.__call__)


@ARCH_REGISTRY.register()
class SpandrelNet(nn.Module):
    """The network of a checkpoint file that spandrel recognises, with its weights.

    Args:
        checkpoint: ``.pth``, ``.ckpt``, ``.pt`` (weights only) or ``.safetensors`` file.
        upscale, num_in_ch, num_out_ch: when given, the scale and channel counts the file must have
            (``ValueError`` naming both values otherwise); spandrel's detection decides them in any case.
        param_key: the checkpoint entry holding the weights (``path.param_key_<x>``'s rule).

    Forward: ``[B, C_in, h, w]`` in [0, 1] (RGB) -> ``[B, C_out, s*h, s*w]``, clamped to [0, 1], run as
    spandrel's descriptor runs it: inputs padded to the model's size requirements (reflect, then replicate;
    e.g. multiples of 8 for SAFMN) and the output cropped back. The wrapped module always runs in eval mode
    (spandrel's call puts it there): this arch is a frozen teacher; as a student it would train without
    dropout/drop-path and without gradients for clamped pixels.

    The wrapped module is the child ``model``: its layers are ``model.<name>`` in ``named_modules()`` (e.g.
    ``model.conv_cat`` of SPAN), the names that feature matching and forward adaptation take.
    ``state_dict()`` keys carry the same ``model.`` prefix, unlike the file's. ``architecture``, ``scale``,
    ``num_in_ch``, ``num_out_ch`` and ``descriptor`` (spandrel's ``ImageModelDescriptor``) describe it.
    """

    #: it reads its weights from ``checkpoint`` while it is built: a loader must not load a state dict into it
    #: (:mod:`kd_plugin.archs.self_loading`)
    loads_own_weights = True

    def __init__(self, checkpoint: str | None = None, upscale: int | None = None, num_in_ch: int | None = None,
                 num_out_ch: int | None = None, param_key: str | None = None) -> None:
        super().__init__()
        if not checkpoint:
            raise ValueError('SpandrelNet: no checkpoint. Fix: set path.pretrain_network_t (network_g: '
                             'path.pretrain_network_g) or the section\'s `checkpoint:` to the model file')
        descriptor = describe(checkpoint, param_key)
        check_detected(checkpoint, descriptor, upscale=upscale, num_in_ch=num_in_ch, num_out_ch=num_out_ch)
        name = descriptor.architecture.name
        self.model = descriptor.model  # a child module, so hooks and .to() reach its layers
        self.descriptor = descriptor   # not a module: holds the same model, and the call that pads for it
        self.architecture, self.scale = name, descriptor.scale
        self.num_in_ch, self.num_out_ch = descriptor.input_channels, descriptor.output_channels
        # the 'basicsr' logger as it stands, not get_root_logger(): the pre-run checks build this arch before
        # train.py configures that logger with the run's log file, and configuring it first would lose the file
        logging.getLogger('basicsr').info(
            f'SpandrelNet: {checkpoint} is a x{self.scale} {name} (spandrel {spandrel_version}, id '
            f'{descriptor.architecture.id}), {self.num_in_ch} -> {self.num_out_ch} channels, '
            f'{sum(p.numel() for p in self.model.parameters()):,} parameters')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _DESCRIPTOR_CALL(self.descriptor, x)


def check_detected(checkpoint: str, descriptor: ImageModelDescriptor, **wanted: int | None) -> None:
    """``ValueError`` naming both values when an option given in ``wanted`` (``upscale``, ``num_in_ch``,
    ``num_out_ch``; None: not given) disagrees with what spandrel detected in ``checkpoint``."""
    name = descriptor.architecture.name
    detected = {'upscale': (descriptor.scale, f'a x{descriptor.scale} {name}', 'a x{}'),
                'num_in_ch': (descriptor.input_channels,
                              f'a {name} taking {descriptor.input_channels}-channel images', 'a {}-channel'),
                'num_out_ch': (descriptor.output_channels,
                               f'a {name} giving {descriptor.output_channels}-channel images', 'a {}-channel')}
    for option, value in wanted.items():
        found, what, other = detected[option]
        if value is not None and value != found:
            run = f' and the options\' scale: {found}' if option == 'upscale' else ''
            raise ValueError(f'SpandrelNet: {checkpoint} is {what} (detected by spandrel), and {option} is {value}. '
                             f'Fix: use {other.format(value)} checkpoint, or {option}: {found}{run}')


def describe(checkpoint: str, param_key: str | None = None) -> ImageModelDescriptor:
    """spandrel's descriptor of ``checkpoint``'s image-to-image model, weights loaded, on the CPU.
    ``ValueError`` naming the file when it cannot be read, spandrel does not recognise its architecture, or
    the model is not image-to-image (an inpainting model takes a mask as well)."""
    option = f'SpandrelNet checkpoint {checkpoint}'
    params, _ = pick_state_dict(load_weights_only(checkpoint, 'SpandrelNet checkpoint'), param_key, option)
    try:
        # a copy: an arch's loader may add entries (SPAN adds `no_norm`) to the dict it is given
        descriptor = ModelLoader().load_from_state_dict(canonicalize_state_dict(dict(params)))
    except UnsupportedModelError as err:
        raise ValueError(f'SpandrelNet: spandrel {spandrel_version} does not recognise the architecture of '
                         f'{checkpoint} ({len(params)} tensors, first keys {list(params)[:3]}). Fix: use a checkpoint '
                         'of an architecture spandrel supports, or a registered arch (type: <arch>) with this file '
                         'as path.pretrain_network_<x>') from err
    except Exception as err:  # noqa: BLE001  (an arch's loader raises whatever its shape arithmetic meets)
        raise ValueError(f'SpandrelNet: spandrel {spandrel_version} recognised {checkpoint} but cannot build it '
                         f'({type(err).__name__}: {err}). Fix: check that the file is complete and unmodified') \
            from err
    if not isinstance(descriptor, ImageModelDescriptor):
        raise ValueError(f'SpandrelNet: {checkpoint} is a {descriptor.architecture.name} {descriptor.purpose} model, '
                         'which takes an image and a mask; a teacher maps an LR image to its SR image. Fix: use an '
                         'image-to-image (super-resolution) checkpoint')
    return descriptor
