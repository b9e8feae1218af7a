"""``KDModel``: BasicSR's ``SRModel`` with a frozen teacher and the three distillation losses."""
from collections import OrderedDict
from contextlib import nullcontext
from copy import deepcopy
from os import path as osp

import torch
import torch.distributed as dist
from basicsr.losses import build_loss
from basicsr.metrics import calculate_metric
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger, tensor2img
from basicsr.utils.registry import MODEL_REGISTRY
from torch import nn

from kd_plugin.archs.build import build_network
from kd_plugin.archs.window_padding import crop_to_input, pad_to_multiple
from kd_plugin.distill.recorder import FeatureRecorder
from kd_plugin.distill.substitution import replaced_output
from kd_plugin.distill.wiring import wire
from kd_plugin.models.kd_options import (
    LOSS_KEYS,
    check_option_keys,
    check_teacher_checkpoint,
    probe_input,
    teacher_dtype,
    teacher_pad_to,
)

ADAPTER_LABEL = 'net_adapters'


@MODEL_REGISTRY.register()
class KDModel(SRModel):
    """Distil ``network_t`` (frozen, from ``path.pretrain_network_t``) into ``network_g``.

    Loss (every term optional, each configured under ``train:`` like ``pixel_opt``)::

        L = w_pix L_pix(S(x), y) + w_dist L_dist(S(x), T(x))
            + w_feat sum_k w_k crit(A_k(F_S^{m_k}), F_T^{l_k}) + w_fwd crit(T_{>l}(A(F_S^m)), T(x))

    The teacher runs once per step under ``no_grad`` (optionally bf16/fp16 autocast and
    channels_last, ``train.teacher``); all losses share that pass. It is never wrapped in DDP.
    Student features are captured by forward hooks on dotted layer names. ``net_g`` checkpoints hold
    the plain student; the adapters have their own ``net_adapters_<iter>.pth`` and optimizer and are
    restored on resume, while the teacher always reloads from its own path.
    """

    # ----------------------------------------------------------------- set-up
    def init_training_settings(self) -> None:
        self.net_g.train()
        train_opt = self.opt['train']
        self._setup_ema(train_opt.get('ema_decay', 0))
        self._build_teacher()
        self.cri_pix = build_loss(train_opt['pixel_opt']).to(self.device) if train_opt.get('pixel_opt') else None
        self.cri_perceptual = (build_loss(train_opt['perceptual_opt']).to(self.device)
                               if train_opt.get('perceptual_opt') else None)
        self.cri_dist, self.cri_feat, self.cri_fwd = (
            build_loss(train_opt[key]).to(self.device) if train_opt.get(key) else None for key in LOSS_KEYS[2:])
        if not any((self.cri_pix, self.cri_perceptual, self.cri_dist, self.cri_feat, self.cri_fwd)):
            raise ValueError('KDModel: no loss configured. Fix: set at least one of train.pixel_opt, '
                             'train.distill_opt, train.feature_opt, train.forward_opt')
        student = self.get_bare_model(self.net_g)
        plan = wire(student, self.net_t, self.opt['scale'], self.cri_feat, self.cri_fwd,
                    probe_input(self.opt, self.device))
        self.net_adapters = nn.ModuleDict({
            'features': self.cri_feat.adapters if self.cri_feat else nn.ModuleList(),
            'forward_adaptation': self.cri_fwd.adapter if self.cri_fwd else nn.Identity(),
        }).to(self.device)
        self.student_recorder = FeatureRecorder(student, list(plan.student), 'student layer')
        self.teacher_recorder = FeatureRecorder(self.net_t, [p['teacher'] for p in self.cri_feat.pairs]
                                                if self.cri_feat else [], 'teacher layer')
        self._load_adapters()
        self.setup_optimizers()
        self.setup_schedulers()

    def _setup_ema(self, decay: float) -> None:
        self.ema_decay = decay
        if decay <= 0:
            return
        get_root_logger().info(f'Use Exponential Moving Average with decay: {decay}')
        self.net_g_ema = build_network(self.opt['network_g']).to(self.device)
        load_path = self.opt['path'].get('pretrain_network_g')
        if load_path is not None:
            self.load_network(self.net_g_ema, load_path, self.opt['path'].get('strict_load_g', True), 'params_ema')
        else:
            self.model_ema(0)
        self.net_g_ema.eval()

    def _build_teacher(self) -> None:
        path = check_teacher_checkpoint(self.opt)
        check_option_keys(self.opt)
        self.net_t = build_network(deepcopy(self.opt['network_t'])).to(self.device)
        self.load_network(self.net_t, path, self.opt['path'].get('strict_load_t', True),
                          self.opt['path'].get('param_key_t', 'params'))
        self.net_t.eval().requires_grad_(False)
        teacher_opt = self.opt['train'].get('teacher') or {}
        self.teacher_dtype = teacher_dtype(teacher_opt, self.device)
        self.teacher_channels_last = bool(teacher_opt.get('channels_last', False))
        self.teacher_pad_to = teacher_pad_to(self.opt)
        if self.teacher_channels_last:
            self.net_t.to(memory_format=torch.channels_last)
        self.print_network(self.net_t)
        self._teacher_results: dict[str, dict[str, float]] = {}

    def _load_adapters(self) -> None:
        path = self.opt['path'].get('pretrain_network_adapters')
        resume = self.opt['path'].get('resume_state')
        if path is None and resume:
            stem = osp.splitext(osp.basename(resume))[0]
            path = osp.join(self.opt['path']['models'], f'{ADAPTER_LABEL}_{stem}.pth')
        if path is not None and any(True for _ in self.net_adapters.parameters()):
            self.load_network(self.net_adapters, path, True, 'params')

    def setup_optimizers(self) -> None:
        adapter_optim = deepcopy(self.opt['train'].get('optim_adapters') or self.opt['train']['optim_g'])
        super().setup_optimizers()
        params = [p for p in self.net_adapters.parameters() if p.requires_grad]
        self.optimizer_adapters = None
        if params:
            optim_type = adapter_optim.pop('type')
            self.optimizer_adapters = self.get_optimizer(optim_type, params, **adapter_optim)
            self.optimizers.append(self.optimizer_adapters)

    # ----------------------------------------------------------------- training
    def teacher_forward(self, lq: torch.Tensor) -> torch.Tensor:
        """The teacher's SR output ``[B, C, s*h, s*w]`` for ``lq`` ``[B, C, h, w]`` in the configured fast
        path (no autograd context is set here). Sides that are not multiples of ``train.teacher.pad_to``
        are reflect-padded for the teacher and the output cropped back, as BasicSR's SwinIRModel does
        at test time; training patches are multiples already, so hooked features keep their shapes."""
        padded = pad_to_multiple(lq, self.teacher_pad_to)
        if self.teacher_channels_last:
            padded = padded.contiguous(memory_format=torch.channels_last)
        context = torch.autocast(self.device.type, dtype=self.teacher_dtype) if self.teacher_dtype else nullcontext()
        with context:
            out = self.net_t(padded)
        return crop_to_input(out, padded, *lq.shape[-2:])

    def optimize_parameters(self, current_iter: int) -> None:
        self.optimizer_g.zero_grad()
        if self.optimizer_adapters is not None:
            self.optimizer_adapters.zero_grad()
        with self.student_recorder.recording():
            self.output = self.net_g(self.lq)
        with torch.no_grad(), self.teacher_recorder.recording():
            teacher_out = self.teacher_forward(self.lq).float()

        losses = OrderedDict()
        if self.cri_pix:
            losses['l_pix'] = self.cri_pix(self.output, self.gt)
        if self.cri_perceptual:
            l_percep, l_style = self.cri_perceptual(self.output, self.gt)
            for key, value in (('l_percep', l_percep), ('l_style', l_style)):
                if value is not None:
                    losses[key] = value
        if self.cri_dist:
            losses['l_dist'] = self.cri_dist(self.output, teacher_out)
        if self.cri_feat:
            losses['l_feat'] = self.cri_feat([self.student_recorder.get(p['student']) for p in self.cri_feat.pairs],
                                             [self.teacher_recorder.get(p['teacher']) for p in self.cri_feat.pairs])
        self.teacher_recorder.clear()
        if self.cri_fwd:
            losses['l_fwd'] = self.cri_fwd(self._forward_adaptation(), teacher_out)
        self.student_recorder.clear()

        total = sum(losses.values())
        if not torch.isfinite(total):
            if self._skip_non_finite(losses, current_iter):
                return
        total.backward()
        self._sync_adapter_grads()
        self.optimizer_g.step()
        if self.optimizer_adapters is not None:
            self.optimizer_adapters.step()
        self.log_dict = self.reduce_loss_dict(losses)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def _skip_non_finite(self, losses: dict[str, torch.Tensor], current_iter: int) -> bool:
        """A NaN/Inf loss: ``train.nan_policy: stop`` (default) raises before any weight changes, so
        the last saved checkpoint stays the last good one; ``skip`` drops this step and goes on."""
        terms = ', '.join(f'{k}={v.item():.4g}' for k, v in losses.items())
        if self.opt['train'].get('nan_policy', 'stop') == 'skip':
            get_root_logger().warning(f'iteration {current_iter}: non-finite loss ({terms}); step skipped '
                                      '(train.nan_policy: skip)')
            self.student_recorder.clear()
            self.log_dict = self.reduce_loss_dict(losses)
            return True
        message = (f'iteration {current_iter}: non-finite loss ({terms}); training stopped before updating any '
                   'weight, the last saved checkpoint is intact. Fix: lower the learning rate or a loss weight, check '
                   'the data, then resume with --auto_resume; or set train.nan_policy: skip to drop such steps')
        get_root_logger().error(message)
        raise FloatingPointError(message)

    def _forward_adaptation(self) -> torch.Tensor:
        """``T_{>l}(A(F_S^m))``: the teacher's tail run on the adapted student feature (autograd on)."""
        feat = self.student_recorder.get(self.cri_fwd.student_layer)
        layer = dict(self.net_t.named_modules())[self.cri_fwd.teacher_layer]

        def replace(teacher_feat: torch.Tensor) -> torch.Tensor:
            return self.cri_fwd.adapter(feat, teacher_feat.shape[-2:]).to(teacher_feat.dtype)

        with replaced_output(layer, replace):
            return self.teacher_forward(self.lq).float()

    def _sync_adapter_grads(self) -> None:
        """Average adapter gradients over ranks (adapters are called directly, not through DDP)."""
        if not self.opt['dist']:
            return
        world = dist.get_world_size()
        for p in self.net_adapters.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= world

    # ----------------------------------------------------------------- checkpoints
    def save(self, epoch: int, current_iter: int) -> None:
        # adapters before the training state: a state file implies all its networks were written
        if any(True for _ in self.net_adapters.parameters()):
            self.save_network(self.net_adapters, ADAPTER_LABEL, current_iter)
        super().save(epoch, current_iter)

    # ----------------------------------------------------------------- validation
    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img) -> None:
        if hasattr(self, 'net_t'):
            self._log_teacher_metrics(dataloader, tb_logger)
        super().nondist_validation(dataloader, current_iter, tb_logger, save_img)

    @torch.no_grad()
    def _log_teacher_metrics(self, dataloader, tb_logger) -> None:
        """The teacher's metrics on this validation set, computed once and logged for reference."""
        name = dataloader.dataset.opt['name']
        metrics = (self.opt.get('val') or {}).get('metrics')
        if not metrics or name in self._teacher_results:
            return
        totals = dict.fromkeys(metrics, 0.0)
        for data in dataloader:
            sr = tensor2img([self.teacher_forward(data['lq'].to(self.device)).float().cpu()])
            gt = tensor2img([data['gt']])
            for metric, metric_opt in metrics.items():
                totals[metric] += calculate_metric({'img': sr, 'img2': gt}, metric_opt)
        results = {metric: total / len(dataloader) for metric, total in totals.items()}
        self._teacher_results[name] = results
        get_root_logger().info(f'Teacher on {name} (computed once): ' +
                               ', '.join(f'{m}: {v:.4f}' for m, v in results.items()))
        if tb_logger:
            for metric, value in results.items():
                tb_logger.add_scalar(f'metrics/{name}/teacher_{metric}', value, 0)
