"""``kd_plugin/cli/train.py`` with probes, for the multi-process tests (run under ``torchrun``).

Environment variables switch the probes on:

* ``KD_PROBE_DIR``: each rank appends every checkpoint file it writes to ``rank<r>_writes.txt``, and
  at the end of training dumps its student and adapter weights to ``rank<r>_state.pth``;
* ``KD_PROBE_NAN=<rank>:<iter>``: that rank's ground truth is NaN at that iteration (one rank only);
* ``KD_PROBE_RAISE=<rank>:<iter>``: that rank raises ``RuntimeError('injected failure on rank <r>')`` there.
"""
import os
import sys
from os import path as osp

ROOT = osp.abspath(osp.join(osp.dirname(__file__), osp.pardir))
sys.path[0] = ROOT

import torch  # noqa: E402

import kd_plugin  # noqa: E402,F401
from kd_plugin.compat import checkpoints  # noqa: E402
from kd_plugin.models.kd_model import KDModel  # noqa: E402
from kd_plugin.pipeline import run_pipeline  # noqa: E402

RANK = int(os.environ.get('RANK', '0'))
PROBE_DIR = os.environ.get('KD_PROBE_DIR')


def install_probes() -> None:
    real_save, real_model_save, real_step = checkpoints.atomic_save, KDModel.save, KDModel.optimize_parameters

    def counted_save(obj, path, retries=3):
        with open(osp.join(PROBE_DIR, f'rank{RANK}_writes.txt'), 'a') as f:
            f.write(path + '\n')
        real_save(obj, path, retries)

    def save_and_dump(self, epoch, current_iter):
        real_model_save(self, epoch, current_iter)
        if current_iter == -1:
            state = {'net_g': self.get_bare_model(self.net_g).state_dict(), 'adapters': self.net_adapters.state_dict()}
            torch.save(state, osp.join(PROBE_DIR, f'rank{RANK}_state.pth'))

    def at(variable: str, current_iter: int) -> bool:
        rank, _, iteration = os.environ.get(variable, '-1:-1').partition(':')
        return (RANK, current_iter) == (int(rank), int(iteration))

    def step(self, current_iter):
        if at('KD_PROBE_NAN', current_iter):
            self.gt = self.gt * float('nan')
        if at('KD_PROBE_RAISE', current_iter):
            raise RuntimeError(f'injected failure on rank {RANK}')
        real_step(self, current_iter)

    if PROBE_DIR:
        checkpoints.atomic_save = counted_save
        KDModel.save = save_and_dump
    KDModel.optimize_parameters = step


if __name__ == '__main__':
    install_probes()
    sys.exit(run_pipeline('train', ROOT))
