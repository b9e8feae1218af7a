"""Connect a student and a teacher for the configured losses: check layer names and scales,
probe feature shapes with one dummy forward, and size the adapters.

Used twice with the same code: by the option checks before a run starts (on CPU, untrained
networks) and by ``KDModel`` when it builds the real networks.
"""
from dataclasses import dataclass, field

import torch
from torch import nn

from kd_plugin.distill.layer_names import resolve_layer
from kd_plugin.distill.recorder import FeatureRecorder


@dataclass
class LayerPlan:
    """Which layers each side records, and the option that named each one (for error messages)."""
    student: dict[str, str] = field(default_factory=dict)   # layer -> option
    teacher: dict[str, str] = field(default_factory=dict)


def plan_layers(feature_loss: nn.Module | None, forward_loss: nn.Module | None) -> LayerPlan:
    plan = LayerPlan()
    if feature_loss is not None:
        for i, pair in enumerate(feature_loss.pairs):
            plan.student.setdefault(pair['student'], f'train.feature_opt.pairs[{i}].student')
            plan.teacher.setdefault(pair['teacher'], f'train.feature_opt.pairs[{i}].teacher')
    if forward_loss is not None:
        plan.student.setdefault(forward_loss.student_layer, 'train.forward_opt.student')
        plan.teacher.setdefault(forward_loss.teacher_layer, 'train.forward_opt.teacher')
    return plan


@torch.no_grad()
def probe(net: nn.Module, layers: dict[str, str], x: torch.Tensor) -> tuple[torch.Size, dict[str, torch.Size]]:
    """Output shape of ``net(x)`` and the output shape of every layer in ``layers``."""
    for name, option in layers.items():
        resolve_layer(net, name, option)
    recorder = FeatureRecorder(net, list(layers), 'layer')
    try:
        with recorder.recording():
            out = net(x)
            shapes = {name: recorder.get(name).shape for name in layers}
    finally:
        recorder.remove()
    return out.shape, shapes


def wire(student: nn.Module, teacher: nn.Module, scale: int, feature_loss: nn.Module | None,
         forward_loss: nn.Module | None, lq: torch.Tensor) -> LayerPlan:
    """Validate names and scales and build the losses' adapters from shapes probed on ``lq``.

    Raises ``ValueError`` naming the option at fault. Networks are left in the mode they had.
    """
    plan = plan_layers(feature_loss, forward_loss)
    modes = student.training, teacher.training
    student.eval()
    teacher.eval()
    try:
        s_out, s_shapes = probe(student, plan.student, lq)
        t_out, t_shapes = probe(teacher, plan.teacher, lq)
    finally:
        student.train(modes[0])
        teacher.train(modes[1])
    for who, out, option in (('student', s_out, 'network_g'), ('teacher', t_out, 'network_t')):
        got = out[-1] / lq.shape[-1]
        if out[-2:] != (lq.shape[-2] * scale, lq.shape[-1] * scale):
            raise ValueError(f'{option}: the {who} upscales x{got:g}, but scale: {scale}. Fix: set the {who} '
                             f'arch\'s upscale to {scale} (teacher and student must share the scale)')
    if feature_loss is not None:
        feature_loss.build_adapters([s_shapes[p['student']] for p in feature_loss.pairs],
                                    [t_shapes[p['teacher']] for p in feature_loss.pairs])
    if forward_loss is not None:
        forward_loss.build_adapter(s_shapes[forward_loss.student_layer], t_shapes[forward_loss.teacher_layer])
    return plan
