"""Tiny teacher/student configurations and KDModel options for the KD tests."""
import os
from os import path as osp

import torch
from basicsr.archs import build_network

TINY_TEACHER = {'type': 'HDRNet', 'upscale': 2, 'num_feat': 12, 'num_block': 2, 'coeff_feat': 8}
TINY_STUDENT = {'type': 'DeformableHDRNet', 'upscale': 2, 'num_feat': 6, 'num_block': 2, 'coeff_feat': 6}


def save_teacher(folder: str, arch: dict = TINY_TEACHER, seed: int = 0) -> str:
    """A random teacher checkpoint in BasicSR's format (``{'params': state_dict}``).

    An untrained bilateral-grid net outputs almost the bicubic image; its grid head is scaled up
    so that the teacher's output differs from the student's and there is something to distil.
    """
    torch.manual_seed(seed)
    path = osp.join(folder, f'teacher_{arch["type"]}.pth')
    os.makedirs(folder, exist_ok=True)
    net = build_network(arch)
    if hasattr(net, 'coeffs'):
        with torch.no_grad():
            net.coeffs.grid.conv.weight.mul_(300)
    torch.save({'params': net.state_dict()}, path)
    return path


def all_losses() -> dict:
    return {
        'pixel_opt': {'type': 'L1Loss', 'loss_weight': 1.0},
        'distill_opt': {'type': 'OutputDistillLoss', 'loss_weight': 1.0, 'criterion': 'l1'},
        'feature_opt': {'type': 'FeatureMatchingLoss', 'loss_weight': 1.0, 'criterion': 'l2',
                        'pairs': [{'student': 'coeffs.grid', 'teacher': 'coeffs.grid'},
                                  {'student': 'trunk.1', 'teacher': 'trunk.1'}]},
        'forward_opt': {'type': 'ForwardAdaptationLoss', 'loss_weight': 1.0, 'student': 'trunk.1',
                        'teacher': 'trunk.1'},
    }


def kd_model_options(teacher_path: str, losses: dict, models_dir: str, **top) -> dict:
    """In-process KDModel options (no datasets): x2, CPU."""
    opt = {
        'name': 'kd_unit', 'model_type': 'KDModel', 'scale': 2, 'num_gpu': 0, 'is_train': True, 'dist': False,
        'rank': 0, 'world_size': 1,
        'network_g': dict(TINY_STUDENT), 'network_t': dict(TINY_TEACHER),
        'path': {'pretrain_network_t': teacher_path, 'models': models_dir, 'resume_state': None},
        'train': {'optim_g': {'type': 'Adam', 'lr': 1e-2},
                  'scheduler': {'type': 'MultiStepLR', 'milestones': [100], 'gamma': 0.5}, **losses},
    }
    opt.update(top)
    return opt


def kd_options(name: str, data: str, teacher: str, backend: str = 'disk', total_iter: int = 4) -> dict:
    """Options of a tiny x2 KD run through train.py with all three losses (a ``tiny_pairs`` folder)."""
    from tests.helpers import sr_options

    opt = sr_options(name, data, backend=backend, total_iter=total_iter, model_type='KDModel')
    opt['network_g'] = dict(TINY_STUDENT)
    opt['network_t'] = dict(TINY_TEACHER)
    opt['path']['pretrain_network_t'] = teacher
    opt['train'].pop('pixel_opt')
    opt['train'].update(all_losses())
    return opt
