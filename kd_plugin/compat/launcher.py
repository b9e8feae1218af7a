"""Entry-point hooks into BasicSR's ``train_pipeline`` / ``test_pipeline``.

* ``torch.distributed.launch`` passes ``--local-rank``; BasicSR's parser only declares
  ``--local_rank`` (``basicsr/utils/options.py:88``) and rejects the hyphenated form.
* The pipelines call ``parse_options`` through the name bound in their own module
  (``basicsr/train.py:14``, ``basicsr/test.py:8``); the plugin's pre-run checks run right after it by
  rebinding that name for the run.
"""
import importlib
from collections.abc import Callable

from kd_plugin.compat.record import applied


def normalise_argv(argv: list[str]) -> list[str]:
    """``argv`` with ``--local-rank`` spelled as BasicSR's parser expects."""
    fixed = [a.replace('--local-rank', '--local_rank', 1) if a.startswith('--local-rank') else a for a in argv]
    if fixed != argv:
        applied('--local-rank accepted')
    return fixed


def pipeline_with_checks(kind: str, wrap: Callable[[Callable], Callable]) -> Callable[[str], None]:
    """``basicsr.<kind>.<kind>_pipeline`` (kind: train or test) whose ``parse_options`` is ``wrap(parse_options)``."""
    module = importlib.import_module(f'basicsr.{kind}')
    original = getattr(module.parse_options, '__wrapped__', module.parse_options)
    module.parse_options = wrap(original)
    return getattr(module, f'{kind}_pipeline')
