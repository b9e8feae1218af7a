"""``--launcher pytorch`` without CUDA: gloo backend, DDP without ``device_ids``."""
import inspect
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DataParallel, DistributedDataParallel

from kd_plugin.compat.record import applied


def _init_dist_pytorch(backend: str = 'nccl', **kwargs) -> None:
    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        local_rank = int(os.environ.get('LOCAL_RANK', os.environ['RANK']))
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
    else:
        backend = 'gloo'
    dist.init_process_group(backend=backend, **kwargs)


def patch_init_dist_pytorch() -> None:
    """``basicsr/utils/dist_util.py:24`` divides by ``torch.cuda.device_count()`` (0 on CPU) and
    hard-codes nccl. We pick gloo without CUDA, and the device from ``LOCAL_RANK`` (not the
    global rank) with it, which also makes multi-node runs pick valid devices."""
    from basicsr.utils import dist_util

    if 'torch.cuda.device_count()' not in inspect.getsource(dist_util._init_dist_pytorch):
        return
    dist_util._init_dist_pytorch = _init_dist_pytorch
    applied('distributed init on CPU (gloo)')


def _model_to_device(self, net: torch.nn.Module) -> torch.nn.Module:
    net = net.to(self.device)
    if self.opt['dist']:
        device_ids = [torch.cuda.current_device()] if self.device.type == 'cuda' else None
        net = DistributedDataParallel(net, device_ids=device_ids,
                                      find_unused_parameters=self.opt.get('find_unused_parameters', False))
    elif self.opt['num_gpu'] > 1:
        net = DataParallel(net)
    return net


def patch_model_to_device() -> None:
    """``basicsr/models/base_model.py:97`` passes ``device_ids=[torch.cuda.current_device()]``,
    which fails without CUDA; a CPU module must be wrapped with ``device_ids=None``."""
    from basicsr.models.base_model import BaseModel

    if 'device_ids=[torch.cuda.current_device()]' not in inspect.getsource(BaseModel.model_to_device):
        return
    BaseModel.model_to_device = _model_to_device
    applied('DDP on CPU')
