"""Connect a student and a teacher for the configured losses: check layer names and scales,
probe feature shapes with one dummy forward, and build the adapters.

Used twice with the same code: by the pre-run checks (on CPU, untrained networks) and by
``KDModel`` when it builds the real networks. The :class:`Wiring` it returns is the one plan both
sides follow: which layers each side records (and which of them must be recorded as copies), and
the adapters between them.
"""
from dataclasses import dataclass, field

import torch
from torch import nn

from kd_plugin.distill.adapters import build_adapters
from kd_plugin.distill.layer_names import resolve_layer
from kd_plugin.distill.recorder import FeatureRecorder
from kd_plugin.losses.criteria import needs_same_channels


@dataclass
class Wiring:
    """What a KD run records and adapts.

    ``student``/``teacher`` map each recorded layer to the option that named it (for messages);
    ``*_clone`` are the layers whose output the network modifies in place later in its forward pass,
    so they are recorded as copies; ``adapters`` is the run's ``net_adapters`` module."""
    student: dict[str, str] = field(default_factory=dict)
    teacher: dict[str, str] = field(default_factory=dict)
    student_clone: set[str] = field(default_factory=set)
    teacher_clone: set[str] = field(default_factory=set)
    adapters: nn.ModuleDict | None = None


def plan_layers(feature_loss: nn.Module | None, forward_loss: nn.Module | None) -> Wiring:
    """The layers each side records for the configured losses (no shapes yet)."""
    plan = Wiring()
    if feature_loss is not None:
        for i, pair in enumerate(feature_loss.pairs):
            plan.student.setdefault(pair['student'], f'train.feature_opt.pairs[{i}].student')
            plan.teacher.setdefault(pair['teacher'], f'train.feature_opt.pairs[{i}].teacher')
    if forward_loss is not None:
        plan.student.setdefault(forward_loss.student_layer, 'train.forward_opt.student')
    return plan


@torch.no_grad()
def probe(net: nn.Module, layers: dict[str, str], x: torch.Tensor) -> tuple[torch.Size, dict[str, torch.Size], set]:
    """Output shape of ``net(x)``, the output shape of every layer in ``layers`` (``name -> option``),
    and the layers whose output the forward pass modifies in place after they return."""
    for name, option in layers.items():
        resolve_layer(net, name, option)
    recorder = FeatureRecorder(net, list(layers), 'layer')
    try:
        with recorder.recording():
            out = net(x)
        shapes = {name: recorder.get(name, allow_modified=True).shape for name in layers}
        changed = set(recorder.modified_in_place())
    finally:
        recorder.remove()
    return out.shape, shapes, changed


def wire(student: nn.Module, teacher: nn.Module, scale: int, feature_loss: nn.Module | None,
         forward_loss: nn.Module | None, lq: torch.Tensor) -> Wiring:
    """Validate names and scales, probe shapes on ``lq`` and build the adapters.

    Raises ``ValueError`` naming the option at fault. Networks are left in the mode they had.
    """
    plan = plan_layers(feature_loss, forward_loss)
    teacher_probe = dict(plan.teacher)
    if forward_loss is not None:
        teacher_probe.setdefault(forward_loss.teacher_layer, 'train.forward_opt.teacher')
    modes = student.training, teacher.training
    student.eval()
    teacher.eval()
    try:
        s_out, s_shapes, plan.student_clone = probe(student, plan.student, lq)
        t_out, t_shapes, teacher_changed = probe(teacher, teacher_probe, lq)
    finally:
        student.train(modes[0])
        teacher.train(modes[1])
    plan.teacher_clone = teacher_changed & set(plan.teacher)
    for who, out, option in (('student', s_out, 'network_g'), ('teacher', t_out, 'network_t')):
        got = out[-1] / lq.shape[-1]
        if out[-2:] != (lq.shape[-2] * scale, lq.shape[-1] * scale):
            raise ValueError(f'{option}: the {who} upscales x{got:g}, but scale: {scale}. Fix: set the {who} '
                             f'arch\'s upscale to {scale} (teacher and student must share the scale)')
    feature_pairs = []
    if feature_loss is not None:
        feature_pairs = [(f'train.feature_opt.pairs[{i}] ({p["student"]} -> {p["teacher"]})',
                          s_shapes[p['student']], t_shapes[p['teacher']]) for i, p in enumerate(feature_loss.pairs)]
    forward_pair = None
    if forward_loss is not None:
        forward_pair = (f'train.forward_opt ({forward_loss.student_layer} -> {forward_loss.teacher_layer})',
                        s_shapes[forward_loss.student_layer], t_shapes[forward_loss.teacher_layer])
    plan.adapters = build_adapters(feature_pairs, feature_loss is None or needs_same_channels(feature_loss.criterion),
                                   getattr(feature_loss, 'resize', True), forward_pair,
                                   getattr(forward_loss, 'resize', True))
    return plan
