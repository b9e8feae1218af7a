"""The fused CPU slice + apply kernel (``csrc/slice_apply.cpp``): built at first use, cached, optional.

:func:`kernel` compiles the C++ source with torch's extension loader (ninja and the machine's C++ compiler) the
first time a process needs it and caches the build under torch's extensions folder, named for this source, what
the compiler's ``-march=native`` resolves to on this CPU and the torch version (so a machine with another CPU
builds its own, even under a shared home folder). Where it cannot be built (no compiler, no ninja) the archs keep
the PyTorch fast path, and one logged line says why. ``KD_PLUGIN_FUSED_SLICE=0`` turns the kernel off;
:func:`disabled` does it for a block (the benchmark times both paths in one run).
"""
import hashlib
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from os import path as osp
from types import ModuleType

import torch
from basicsr.utils import get_root_logger

from kd_plugin.device import speed_facts

SOURCE = osp.join(osp.dirname(osp.abspath(__file__)), 'csrc', 'slice_apply.cpp')
#: Set to 0 to keep the PyTorch path.
SWITCH = 'KD_PLUGIN_FUSED_SLICE'

_state: dict[str, object] = {'module': None, 'failure': None, 'disabled': 0}


def compiler_target() -> str:
    """What the C++ compiler torch's loader uses (``$CXX``, else ``c++``) makes of ``-march=native`` here: its
    ``-###`` dry run, which spells out the CPU it resolves and every instruction-set flag it turns on or off (gcc's
    ``-march=znver3 -mavx512f ... -mno-avx512er``, clang's ``-target-cpu`` and ``-target-feature`` list), and its
    version. Two machines whose CPUs differ in anything the build may use get different strings, even where the
    CPU's model name and the common flags agree."""
    cxx = os.environ.get('CXX', 'c++')
    result = subprocess.run([cxx, '-###', '-march=native', '-E', '-x', 'c++', os.devnull], capture_output=True,
                            text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise RuntimeError(f'{cxx} -march=native failed: {result.stderr.strip()[-300:]}')
    return result.stdout + result.stderr


def _build_name() -> str:
    """An extension name unique to this source, what the compiler targets on this CPU (:func:`compiler_target`:
    the build is ``-march=native``, so a home folder shared by machines with other CPUs must not serve one's build
    to another) and this torch."""
    facts = speed_facts(torch.device('cpu'))
    with open(SOURCE, 'rb') as f:
        key = f.read() + repr((facts['cpu'], compiler_target(), torch.__version__)).encode()
    return f'kd_plugin_slice_apply_{hashlib.sha256(key).hexdigest()[:12]}'


def kernel() -> ModuleType | None:
    """The compiled extension (``slice_apply(grid, guide, inputs)``), or None where it is off or cannot be built
    (said once, in one logged line, with the reason)."""
    if _state['disabled'] or os.environ.get(SWITCH, '1') == '0':
        return None
    if _state['module'] is None and _state['failure'] is None:
        try:
            # late, and quiet: importing the loader warns that no CUDA runtime is found (this is a CPU build)
            quiet = logging.getLogger('torch.utils.cpp_extension')
            level = quiet.level
            quiet.setLevel(logging.ERROR)
            try:
                from torch.utils import cpp_extension
            finally:
                quiet.setLevel(level)
            if shutil.which('ninja') is None:  # pip's ninja (a dependency) lies beside the interpreter
                os.environ['PATH'] = osp.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', '')
            _state['module'] = cpp_extension.load(name=_build_name(), sources=[SOURCE],
                                                  extra_cflags=['-O3', '-march=native'], verbose=False)
        except Exception as err:  # noqa: BLE001  (a missing compiler, ninja or header: keep the PyTorch path)
            reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            _state['failure'] = reason
            get_root_logger().warning(
                f'kd_plugin: the fused CPU slice kernel could not be built ({type(err).__name__}: {reason[:300]}); '
                'the bilateral-grid archs use the PyTorch path (same results, slower on the CPU)')
    return _state['module']


def failure() -> str | None:
    """Why the kernel could not be built in this process (None: built, or not tried yet)."""
    return _state['failure']


@contextmanager
def disabled() -> Iterator[None]:
    """Keep the PyTorch path inside the block."""
    _state['disabled'] += 1
    try:
        yield
    finally:
        _state['disabled'] -= 1
