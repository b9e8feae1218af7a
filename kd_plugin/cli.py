"""The command-line conventions of every ``python -m kd_plugin.*`` tool.

* an options file is ``-opt FILE``, as in BasicSR's ``train.py``; an iteration override is
  ``--total_iter N``; an output folder is ``--output DIR``;
* every ``--hyphenated-flag`` also answers to ``--hyphenated_flag`` (BasicSR users type
  ``--auto_resume``), and the reverse;
* a usage error prints the usage and one ``error:`` line and exits with status 2, like the pre-run
  option checks of ``train.py``; ``main(argv)`` returns the exit status.
"""
import argparse
import sys


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
