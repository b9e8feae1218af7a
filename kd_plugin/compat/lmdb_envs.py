"""One LMDB environment per database per process (py-lmdb >= 2 refuses a second open).

LMDB allows one open environment per database per process, and an environment must not be used
across ``fork()`` (LMDB's documentation: "use an MDB_env* in the process which opened it, without
fork()ing"). BasicSR opens a new environment for every dataset instance, and its DataLoader workers
are forked from the process that may already hold one. Here environments are cached by (process,
database): datasets of one process share one, a forked worker closes the lock-free environments it
inherited (only its own mappings go) and opens its own, and each process closes its environments at
exit.
"""
import atexit
import inspect
import os
from os import path as osp
from typing import Any

from kd_plugin.compat.record import applied

#: (pid, real path) -> (environment, the options it was opened with)
_OPEN_ENVS: dict[tuple[int, str], tuple[Any, dict[str, Any]]] = {}


def _forget_inherited(pid: int) -> None:
    """Close the environments a forked child inherited from its parent (before it opens its own).

    py-lmdb's "already open" guard is inherited too, so the child could not open the database
    otherwise. Closing in the child only unmaps the child's copy when the environment has no lock
    table (``lock=False``, as BasicSR opens them); one with locks is left alone, since closing it
    would clear the parent's reader slots, and the child then gets py-lmdb's own error."""
    for key in [k for k in _OPEN_ENVS if k[0] != pid]:
        env, options = _OPEN_ENVS.pop(key)
        if not options.get('lock', True):
            env.close()


def open_shared_env(path: str, **options: Any) -> Any:
    """The read-only LMDB environment at ``path`` for this process, opened with ``options`` on first use.

    A second dataset on the same database in the same process shares the environment; if it asks for
    different options, that is a ``ValueError`` (LMDB cannot hold two differently opened copies)."""
    import lmdb

    pid = os.getpid()
    _forget_inherited(pid)
    key = (pid, osp.realpath(path))
    if key not in _OPEN_ENVS:
        _OPEN_ENVS[key] = (lmdb.open(path, **options), dict(options))
    env, first = _OPEN_ENVS[key]
    if first != options:
        raise ValueError(f'io_backend: the LMDB {path!r} is already open in this process with {first}, and another '
                         f'dataset asks for {options}; LMDB allows one environment per database per process. Fix: give '
                         'every dataset that reads this LMDB the same io_backend options')
    return env


@atexit.register
def close_envs() -> None:
    """Close this process's environments (those inherited from a parent are not this process's)."""
    pid = os.getpid()
    for key in [k for k in _OPEN_ENVS if k[0] == pid]:
        _OPEN_ENVS.pop(key)[0].close()


def _lmdb_backend_init(self, db_paths, client_keys='default', readonly=True, lock=False, readahead=False,
                       **kwargs):
    if isinstance(client_keys, str):
        client_keys = [client_keys]
    self.db_paths = [str(v) for v in db_paths] if isinstance(db_paths, list) else [str(db_paths)]
    if len(client_keys) != len(self.db_paths):
        raise ValueError(f'client_keys and db_paths should have the same length, '
                         f'but received {len(client_keys)} and {len(self.db_paths)}.')
    self._client = {
        client: open_shared_env(path, readonly=readonly, lock=lock, readahead=readahead, **kwargs)
        for client, path in zip(client_keys, self.db_paths)
    }


def patch_lmdb_backend() -> None:
    """``basicsr/utils/file_client.py:112`` calls ``lmdb.open`` for every dataset instance.

    Train and validation on the same LMDB, or workers forked after validation opened it, then
    crash with "The environment ... is already open in this process" on py-lmdb >= 2.
    """
    import lmdb
    from basicsr.utils.file_client import LmdbBackend

    if int(lmdb.__version__.split('.')[0]) < 2 or 'lmdb.open' not in inspect.getsource(LmdbBackend.__init__):
        return
    LmdbBackend.__init__ = _lmdb_backend_init
    applied('shared LMDB environments')
