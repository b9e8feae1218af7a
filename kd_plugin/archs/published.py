"""Which network a published model file is, so that a user can name only the file (``kd-demo --teacher FILE``).

The archs this plugin writes from published papers (:data:`PUBLISHED`: IMDN, RLFN, each with the defaults of the
authors' released models) are tried first, at the run's scale: the first whose state dict the file fits exactly,
key for key and shape for shape, is the one. Any other file goes to
:class:`~kd_plugin.archs.spandrel_arch.SpandrelNet`, which recognises the architecture from the checkpoint itself
(spandrel knows over 40, among them SwinIR, HAT, SPAN, SAFMN, RCAN) and refuses a scale other than the run's.
"""
from typing import Any

from kd_plugin.archs.build import build_network
from kd_plugin.archs.spandrel_arch import SpandrelNet
from kd_plugin.checkpoint_io import load_weights_only, pick_state_dict, state_dict_mismatch

#: registered archs written from published papers, tried in this order
PUBLISHED = ('IMDN', 'RLFN')
#: the scales at which a published file of another scale is recognised, to say so
OTHER_SCALES = (2, 3, 4, 8)


def network_for_file(checkpoint: str, scale: int, option: str = '--teacher') -> dict[str, Any]:
    """The options section (``network_t``) of the model in ``checkpoint`` at x``scale``: ``{type: IMDN, upscale}``
    or ``{type: RLFN, upscale}`` when the file's weights (a plain state dict, or its ``params_ema``/``params``
    entry) fit that arch exactly, else ``{type: SpandrelNet}`` when spandrel recognises the file as a x``scale``
    model. ``ValueError`` naming ``option`` otherwise: an unreadable file, a scale other than ``scale``, or an
    architecture neither knows."""
    params, _ = pick_state_dict(load_weights_only(checkpoint, option), None, option)
    for arch in PUBLISHED:
        for s in (scale, *(s for s in OTHER_SCALES if s != scale)):
            if state_dict_mismatch(params, build_network({'type': arch, 'upscale': s}, option, init=False)) is None:
                if s != scale:
                    raise ValueError(f'{option} {checkpoint}: a x{s} {arch}, and this run is x{scale}. Fix: give the '
                                     f'x{scale} {arch} file')
                return {'type': arch, 'upscale': scale}
    try:
        SpandrelNet(checkpoint, upscale=scale)
    except ValueError as error:  # spandrel's refusal names the file, not the option that gave it
        raise ValueError(f'{option} {checkpoint}: neither {" nor ".join(PUBLISHED)}, and {error}') from error
    return {'type': 'SpandrelNet'}
