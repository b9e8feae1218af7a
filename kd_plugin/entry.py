"""Shared start-up of ``kd_plugin/train.py`` and ``kd_plugin/test.py``."""
import importlib
import sys

from kd_plugin.preflight import OptionError, checked_parse_options


def normalise_argv(argv: list[str]) -> list[str]:
    """``torch.distributed.launch`` passes ``--local-rank``; BasicSR's parser only knows ``--local_rank``."""
    return [a.replace('--local-rank', '--local_rank', 1) if a.startswith('--local-rank') else a for a in argv]


def run_pipeline(kind: str, root_path: str) -> int:
    """Run BasicSR's ``train_pipeline`` (``kind='train'``) or ``test_pipeline`` with option checks first.

    A bad option prints one ``error:`` line naming it and returns 2, before anything is written.
    """
    sys.argv = normalise_argv(sys.argv)
    module = importlib.import_module(f'basicsr.{kind}')
    module.parse_options = checked_parse_options(module.parse_options)
    try:
        getattr(module, f'{kind}_pipeline')(root_path)
    except OptionError as err:
        print(f'error: {err}', file=sys.stderr, flush=True)
        return 2
    except FloatingPointError as err:  # KDModel's non-finite-loss stop (train.nan_policy)
        print(f'error: {err}', file=sys.stderr, flush=True)
        return 1
    return 0
