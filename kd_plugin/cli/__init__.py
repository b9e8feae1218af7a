"""The command-line tools: each module parses its arguments and calls the library (``common`` holds the
conventions they share). ``python kd_plugin/cli/train.py -opt FILE`` and ``python -m kd_plugin.cli.<tool>``."""
