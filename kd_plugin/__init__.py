"""kd_plugin: knowledge distillation for image super-resolution, as a BasicSR plugin.

``import kd_plugin`` first makes BasicSR 1.4.2 importable and correct on today's stack
(:mod:`kd_plugin.compat`), then imports every ``*_arch.py``, ``*_model.py`` and ``*_loss.py``
module of this package, and ``data/kd_paired_dataset.py``, ``data/multi_task_dataset.py`` and
``data/mixed_kd_dataset.py``, so that their classes are registered in BasicSR's registries, and has BasicSR's
models build networks through the plugin's builder (``init_weights``; :mod:`kd_plugin.compat.hooks`).
"""
import functools

from kd_plugin.compat import apply_import_fixes, apply_runtime_fixes

apply_import_fixes()
apply_runtime_fixes()

from kd_plugin import archs, losses, models  # noqa: E402,F401  (registration side effects)
from kd_plugin.archs.build import build_network  # noqa: E402
from kd_plugin.compat.hooks import rebind_build_network  # noqa: E402
from kd_plugin.data import kd_paired_dataset, mixed_kd_dataset, multi_task_dataset  # noqa: E402,F401  (registration)

rebind_build_network(functools.partial(build_network, log=True))

__version__ = '0.1.0'
