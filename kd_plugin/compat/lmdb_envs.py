"""One LMDB environment per database per process (py-lmdb >= 2 refuses a second open)."""
import inspect
from os import path as osp
from typing import Any

from kd_plugin.compat.record import applied

_OPEN_ENVS: dict[str, Any] = {}


def open_shared_env(path: str, **kwargs: Any):
    """Open the read-only LMDB at ``path``, or return the environment this process already has.

    The cache is inherited by forked DataLoader workers, so a worker forked after validation
    opened the database in the parent reuses that (read-only, lock-free) environment instead of
    tripping py-lmdb's "already open in this process" guard.
    """
    import lmdb

    key = osp.realpath(path)
    if key not in _OPEN_ENVS:
        _OPEN_ENVS[key] = lmdb.open(path, **kwargs)
    return _OPEN_ENVS[key]


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
