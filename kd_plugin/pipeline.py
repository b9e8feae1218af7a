"""BasicSR's train and test pipelines with the plugin loaded and its option checks first (the start-up of
``kd_plugin/cli/train.py`` and ``kd_plugin/cli/test.py``)."""
import sys

import torch

from kd_plugin.compat.hooks import pipeline_with_checks
from kd_plugin.compat.launcher import normalise_argv
from kd_plugin.heap import steady_heap
from kd_plugin.preflight import OptionError, checked_parse_options


def run_pipeline(kind: str, root_path: str) -> int:
    """Run BasicSR's ``train_pipeline`` (``kind='train'``) or ``test_pipeline`` with option checks first.

    A bad option prints one ``error:`` line naming it and returns 2, before anything is written; a
    run stopped at a non-finite loss (``train.nan_policy: stop``) returns 1. The heap policy of
    :mod:`kd_plugin.heap` is set first, so every run steps at the same speed whatever it loads.
    """
    steady_heap()
    sys.argv = normalise_argv(sys.argv)
    pipeline = pipeline_with_checks(kind, checked_parse_options)
    try:
        pipeline(root_path)
    except OptionError as err:
        print(f'error: {err}', file=sys.stderr, flush=True)
        return 2
    except FloatingPointError as err:
        print(f'error: {err}', file=sys.stderr, flush=True)
        return 1
    finally:
        # BasicSR never ends the process group its launcher started; left to interpreter exit, gloo's worker
        # threads are destroyed still running and a finished rank can abort ("terminate called without an
        # active exception")
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0
