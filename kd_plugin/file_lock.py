"""An exclusive lock between processes on one machine, for writers of the same folder."""
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def exclusive(path: str, what: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on file ``path`` (created if missing, and left in place: removing it could
    let a waiting process lock a file nobody else sees) for the ``with`` block. While another process holds
    it, print one line saying so (``what``: the thing being written) and wait. The kernel releases the lock
    when its process ends, however it ends."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f'{what}: another process is writing it (lock {path}); waiting for it to finish', flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
