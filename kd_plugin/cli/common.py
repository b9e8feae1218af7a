"""The command-line conventions every tool under ``kd_plugin/cli/`` shares.

* an options file is ``-opt FILE``, as in BasicSR's ``train.py``; an iteration override is
  ``--total-iter N``; an output folder is ``--output DIR`` (relative to the current folder; a tool's
  default output lies under the project's ``results/``);
* flags are spelled with hyphens, and every ``--hyphenated-flag`` also answers to
  ``--hyphenated_flag`` (BasicSR users type ``--auto_resume``);
* ``--device auto|cpu|cuda`` (:func:`add_device`), ``--sets NAME_OR_FOLDER ...`` with
  ``--data-root`` (:func:`add_sets`);
* a usage error or a bad input prints one ``error:`` line and the tool exits with status 2, like
  the pre-run option checks of ``train.py``: :func:`tool` turns the library's ``ValueError``,
  ``FileNotFoundError`` and ``FileExistsError`` into that line; ``main(argv)`` returns the status.
"""
import argparse
import functools
import sys
from collections.abc import Callable
from os import path as osp

from kd_plugin.device import DEVICE_CHOICES
from kd_plugin.runs import project_root


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with the conventions above."""

    def __init__(self, prog: str, description: str | None = None, **kwargs) -> None:
        super().__init__(prog=prog, description=description, **kwargs)

    def add_argument(self, *names: str, **kwargs):
        spellings = list(names)
        for name in names:
            if name.startswith('--'):
                for other in ('--' + name[2:].replace('-', '_'), '--' + name[2:].replace('_', '-')):
                    if other not in spellings:
                        spellings.append(other)
        return super().add_argument(*spellings, **kwargs)

    def add_subparsers(self, **kwargs):
        kwargs.setdefault('parser_class', Parser)
        return super().add_subparsers(**kwargs)

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(2, f'error: {message}\n')


def fail(message: str) -> int:
    """Print ``error: message`` on stderr; returns 2 (for ``return fail(...)`` in a ``main``)."""
    print(f'error: {message}', file=sys.stderr, flush=True)
    return 2


def tool(prog: str) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Decorate a tool's ``main(argv)``: a ``ValueError``/``FileNotFoundError``/``FileExistsError`` raised by
    the library becomes ``error: <prog>: <message>`` and status 2."""

    def wrap(main: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(main)
        def run(argv: list[str] | None = None) -> int:
            try:
                return main(argv)
            except (ValueError, FileNotFoundError, FileExistsError) as err:
                return fail(f'{prog}: {err}')

        return run

    return wrap


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--device', default='auto', choices=DEVICE_CHOICES,
                        help='auto: CUDA when available, else the CPU (default: auto)')


def add_sets(parser: argparse.ArgumentParser, default: list[str]) -> None:
    parser.add_argument('--sets', nargs='+', default=default,
                        help='test sets: names under --data-root or folders with HR/ (and LR_bicubic/X{s}/) '
                             f'(default: {" ".join(default)})')
    parser.add_argument('--data-root', default='datasets', help='where set names are looked up (default: datasets)')


def output_dir(given: str | None, default_name: str) -> str:
    """``--output`` as given (relative to the current folder), else ``<project>/results/<default_name>``."""
    return given or osp.join(project_root(), 'results', default_name)
