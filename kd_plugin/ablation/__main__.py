"""``python -m kd_plugin.ablation``: see :mod:`kd_plugin.ablation`."""
import sys

from kd_plugin.ablation.runner import main

sys.exit(main())
