"""Module aliases so that ``import basicsr`` works on torchvision >= 0.17, SciPy 2 and Python 3.12.

Each function is a no-op when the module BasicSR asks for still exists.
"""
import importlib
import sys

from kd_plugin.compat.record import applied


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def alias_functional_tensor() -> None:
    """``basicsr/data/degradations.py:8`` imports ``torchvision.transforms.functional_tensor``.

    torchvision 0.17 renamed that module to ``_functional_tensor`` (same ``rgb_to_grayscale``).
    """
    name = 'torchvision.transforms.functional_tensor'
    if _importable(name):
        return
    sys.modules[name] = importlib.import_module('torchvision.transforms._functional_tensor')
    applied('torchvision functional_tensor alias')


def alias_ndimage_filters() -> None:
    """``basicsr/metrics/niqe.py:5`` imports ``scipy.ndimage.filters`` (removed in SciPy 2).

    The public ``scipy.ndimage`` namespace has had the same ``convolve`` since SciPy 1.0.
    """
    name = 'scipy.ndimage.filters'
    if _importable(name):
        return
    sys.modules[name] = importlib.import_module('scipy.ndimage')
    applied('scipy.ndimage.filters alias')


def provide_distutils() -> None:
    """``basicsr/archs/arch_util.py:6`` imports ``distutils.version`` (gone from Python 3.12).

    setuptools ships a complete ``distutils``; importing setuptools installs it as ``distutils``.
    """
    if _importable('distutils.version'):
        return
    try:
        import setuptools  # noqa: F401  (its import hook provides `distutils`)
    except ImportError:
        pass
    if not _importable('distutils.version'):
        raise ImportError('BasicSR needs `distutils`, which Python >= 3.12 no longer ships. '
                          'Fix: pip install "setuptools>=68" (kd_plugin lists it as a dependency).')
    applied('distutils from setuptools')
