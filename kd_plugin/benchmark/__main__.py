"""``python -m kd_plugin.benchmark``: see :mod:`kd_plugin.benchmark.compare`."""
import sys

from kd_plugin.benchmark.compare import main

sys.exit(main())
