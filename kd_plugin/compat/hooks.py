"""The plugin's two hooks into BasicSR: not fixes of upstream traps, but kept here so that every
rebinding of a BasicSR name lives in ``compat/`` (a test checks that nothing else rebinds one).

* ``build_network`` with ``init_weights``: each BasicSR model module binds ``build_network`` at import
  (``from basicsr.archs import build_network``: ``basicsr/models/sr_model.py:6``, ``srgan_model.py:4``,
  ...), so replacing ``basicsr.archs.build_network`` alone would not reach them: every bound name is
  rebound. The model modules must already be imported for that, so this imports ``basicsr.models``
  (which imports each ``*_model.py``) itself rather than rely on an earlier import.
* The option checks right after ``parse_options``: the pipelines call it through the name bound in
  their own module (``basicsr/train.py:14``, ``basicsr/test.py:8``), which is rebound for the run.
"""
import importlib
import sys
from collections.abc import Callable
from typing import Any

from kd_plugin.compat.record import applied


def rebind_build_network(replacement: Callable[[dict], Any]) -> list[str]:
    """Point every ``build_network`` bound in ``basicsr.archs`` and ``basicsr.models.*`` at ``replacement``;
    returns the modules changed."""
    import basicsr.archs
    import basicsr.models  # noqa: F401  (imports every basicsr/models/*_model.py)

    original = getattr(basicsr.archs.build_network, '__wrapped__', basicsr.archs.build_network)
    patched = []
    for name, module in list(sys.modules.items()):
        if (name == 'basicsr.archs' or name.startswith('basicsr.models.')) and \
                getattr(module, 'build_network', None) is original:
            module.build_network = replacement
            patched.append(name)
    if patched:
        applied('build_network with init_weights in BasicSR models')
    return patched


def pipeline_with_checks(kind: str, wrap: Callable[[Callable], Callable]) -> Callable[[str], None]:
    """``basicsr.<kind>.<kind>_pipeline`` (kind: train or test) whose ``parse_options`` is ``wrap(parse_options)``."""
    module = importlib.import_module(f'basicsr.{kind}')
    original = getattr(module.parse_options, '__wrapped__', module.parse_options)
    module.parse_options = wrap(original)
    return getattr(module, f'{kind}_pipeline')
