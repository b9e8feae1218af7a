"""``prefetch_mode: cpu`` ends a finished run with an abort: its loader thread is stopped before exit.

``basicsr/data/prefetch_dataloader.py:7`` (``PrefetchGenerator``) runs the DataLoader iterator in a daemon
thread (``prefetch_dataloader.py:22``) that ``basicsr/train.py``'s ``CPUPrefetcher`` never stops, one per
epoch. At interpreter exit CPython ends daemon threads with ``pthread_exit`` when they next take the GIL;
a thread that is inside torch's C++ code then (receiving a batch from a worker) is unwound through C++
frames, and the process aborts with "terminate called without an active exception" (exit status -6)
after the run finished and saved. With labels that load fast (memory-mapped arrays) this happened in
most 2-iteration test runs.

The generator here is BasicSR's with one change: ``run`` waits for queue space in short timeouts and
returns once asked to stop. An exit handler, registered when the first generator starts (so that it runs
before multiprocessing's own exit handler stops the DataLoader workers), asks every live generator to
stop and joins it, so no loader thread is left inside C++ code when the interpreter finalises.
"""
import atexit
import inspect
import queue
import threading
import weakref
from typing import Any

from kd_plugin.compat.record import applied

#: Seconds to wait for a loader thread at exit: one batch from the workers at most.
JOIN_SECONDS = 60.0

_LIVE: 'weakref.WeakSet[Any]' = weakref.WeakSet()
_HANDLER = []


def stop_prefetch_threads() -> None:
    """Ask every live prefetch generator to stop and wait for its thread (the exit handler)."""
    generators = list(_LIVE)
    for generator in generators:
        generator.stopping.set()
    for generator in generators:
        generator.join(JOIN_SECONDS)


def _stoppable(base: type) -> type:
    class StoppablePrefetchGenerator(base):
        """BasicSR's ``PrefetchGenerator`` whose thread returns when ``stopping`` is set."""

        def __init__(self, generator: Any, num_prefetch_queue: int) -> None:
            self.stopping = threading.Event()
            _LIVE.add(self)
            if not _HANDLER:
                _HANDLER.append(atexit.register(stop_prefetch_threads))
            super().__init__(generator, num_prefetch_queue)  # starts the thread

        def _put(self, item: Any) -> bool:
            while not self.stopping.is_set():
                try:
                    self.queue.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def run(self) -> None:
            for item in self.generator:
                if not self._put(item):
                    return
            self._put(None)

    return StoppablePrefetchGenerator


def patch_prefetch_generator() -> None:
    from basicsr.data import prefetch_dataloader

    current = prefetch_dataloader.PrefetchGenerator
    if getattr(current, '_kd_plugin_stoppable', False):
        return
    source = inspect.getsource(current.run)
    if 'self.daemon = True' in inspect.getsource(current.__init__) and 'stop' not in source:
        replacement = _stoppable(current)
        replacement._kd_plugin_stoppable = True
        prefetch_dataloader.PrefetchGenerator = replacement
        applied('prefetch thread stopped at exit (prefetch_dataloader.py)')
