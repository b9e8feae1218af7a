"""Fixes that make the unmodified PyPI BasicSR 1.4.2 run on today's stack.

Every fix is a small function in one of the modules below, names the upstream ``file:line``
it works around, checks first whether the trap is really there (so it does nothing where
upstream is already fine) and records its name in :data:`APPLIED` when it changes anything.
BasicSR's files on disk are never edited.

``apply_import_fixes()`` must run before the first ``import basicsr`` (three of BasicSR's
modules fail to import otherwise); ``apply_runtime_fixes()`` patches functions of the imported
package. ``import kd_plugin`` calls both.
"""
from kd_plugin.compat.import_shims import alias_functional_tensor, alias_ndimage_filters, provide_distutils
from kd_plugin.compat.record import APPLIED


def apply_import_fixes() -> None:
    """Make ``import basicsr`` succeed (module aliases; no BasicSR import happens here)."""
    alias_functional_tensor()
    alias_ndimage_filters()
    provide_distutils()


def apply_runtime_fixes() -> None:
    """Patch BasicSR functions whose behaviour is wrong on this stack (imports basicsr)."""
    from kd_plugin.compat import checkpoints, distributed, lmdb_envs, prefetch_exit, resume

    resume.patch_load_resume_state()
    resume.patch_check_resume()
    lmdb_envs.patch_lmdb_backend()
    distributed.patch_init_dist_pytorch()
    distributed.patch_model_to_device()
    checkpoints.patch_atomic_checkpoints()
    prefetch_exit.patch_prefetch_generator()


__all__ = ['APPLIED', 'apply_import_fixes', 'apply_runtime_fixes']
