"""A fixed glibc heap policy for training processes, so that a run's speed does not depend on what the
process happened to allocate before its first step.

glibc serves an allocation above ``M_MMAP_THRESHOLD`` (128 KiB at start) with its own ``mmap``, and, while
no threshold was set explicitly, raises that threshold to the size of the largest mmapped block freed so
far (at most 32 MiB on 64-bit) and the trim threshold to twice it. A training step allocates and frees
activations and gradients of several MiB each. In a process that freed no large block before training,
those are fresh mappings whose pages fault in zeroed at every step, and the freed heap top is handed
back to the kernel; a process that loaded a checkpoint first (a KD run's teacher) had its thresholds
raised on the way and reuses its heap. So the same student step ran at different speeds depending on
what else the process had loaded: on the 2-core development machine, DeformableHDRNet's x4 iteration
(batch 32 × 64 px, LMDB data) took 0.231 s in a student-alone process and 0.177 s with the thresholds
fixed, while a KD process that had loaded its teacher took 0.20 s. The student alone trained alone then
ran 1.22× as long as the equal-time measurement (one process, both models loaded) had allotted it.

Fixing both thresholds (``mallopt``) turns the dynamic adjustment off, so every training process, with or
without a teacher, reuses its heap from the first step. The cost is that the heap keeps its peak size
until the process ends, which a training process reaches in its first steps anyway.
"""
import ctypes
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: glibc's upper bound for ``M_MMAP_THRESHOLD`` on 64-bit (``DEFAULT_MMAP_THRESHOLD_MAX``); larger blocks
#: are still mapped on their own.
MMAP_THRESHOLD = 32 << 20
#: Free heap top kept before any is returned to the kernel.
TRIM_THRESHOLD = 512 << 20


def steady_heap() -> bool:
    """Fix glibc's mmap and trim thresholds for this process (and the data-loader workers it forks).
    Returns whether it applied: True on Linux with glibc, False elsewhere (nothing changes there)."""
    if not sys.platform.startswith('linux'):
        return False
    try:
        libc = ctypes.CDLL('libc.so.6')
    except OSError:  # not glibc (e.g. musl)
        return False
    mallopt = getattr(libc, 'mallopt', None)
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
