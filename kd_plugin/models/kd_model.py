"""``KDModel``: BasicSR's ``SRModel`` with a frozen teacher and the three distillation losses."""
from collections import OrderedDict
from contextlib import nullcontext
from copy import deepcopy
from os import path as osp

import torch
from basicsr.losses import build_loss
from basicsr.metrics import calculate_metric
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger, tensor2img
from basicsr.utils.registry import MODEL_REGISTRY

from kd_plugin.archs.build import build_network
from kd_plugin.archs.self_loading import load_weights, loads_own_weights, with_checkpoint
from kd_plugin.distill.eco import eco_input, eco_target
from kd_plugin.distill.rank_sync import average_gradients, broadcast_from_rank0, finite_on_all_ranks
from kd_plugin.distill.recorder import FeatureRecorder
from kd_plugin.distill.substitution import TailRunner
from kd_plugin.distill.teacher_labels import TeacherRunner
from kd_plugin.distill.upcycling import LOSS_NAMES as UPCYCLE_LOGS
from kd_plugin.distill.upcycling import augment, iteration_rng, undo, zoom_in_tiles, zoom_out
from kd_plugin.distill.wiring import wire
from kd_plugin.losses.criteria import OUTPUT_CRITERIA, get_criterion
from kd_plugin.models.kd_config import KD_LOSS_LOGS, KDConfig, native_bf16, precision_name, probe_input, task_teacher

ADAPTER_LABEL = 'net_adapters'


def adapter_checkpoint(opt: dict, resume_state: str) -> str:
    """``models/net_adapters_<iter>.pth`` that belongs to training state ``<iter>.state``."""
    stem = osp.splitext(osp.basename(resume_state))[0]
    return osp.join(opt['path']['models'], f'{ADAPTER_LABEL}_{stem}.pth')


def is_kd_model(model_type: object) -> bool:
    """Whether ``model_type`` (an options file's ``model_type``) names ``KDModel`` or a model registered in
    BasicSR's ``MODEL_REGISTRY`` as a subclass of it (a researcher's own loss schedule, say), which gets every
    check and feature ``KDModel`` gets. Resolved through the registry, so the subclass's package must be
    imported first (as its own training entry point does)."""
    if not isinstance(model_type, str) or model_type not in MODEL_REGISTRY:
        return False
    cls = MODEL_REGISTRY.get(model_type)
    return isinstance(cls, type) and issubclass(cls, KDModel)


@MODEL_REGISTRY.register()
class KDModel(SRModel):
    """Distil ``network_t`` (frozen, from ``path.pretrain_network_t``) into ``network_g``.

    Loss (every term optional, each configured under ``train:`` like ``pixel_opt``)::

        L = w_pix L_pix(S(x), y) + w_dist L_dist(S(x), T(x))
            + w_feat sum_k w_k crit(A_k(F_S^{m_k}), F_T^{l_k}) + w_fwd crit(T_{>l}(A(F_S^m)), T(x))
            + data-upcycling terms (``train.upcycle``: zoom-in, zoom-out, label consistency)

    With ``train.eco`` (:mod:`kd_plugin.distill.eco`) the pixel losses' target ``y`` is replaced by
    ``lerp(T(x), y, alpha)``, ``alpha`` rising linearly to 1, and in mode ``full`` the student's input by
    ``lerp(down(T(x)), x, alpha)``; the step logs ``eco_alpha``.

    A batch with ``has_gt`` (``MixedKDDataset``: paired samples beside LR-only ones, whose ``gt`` is a
    placeholder) has the GT losses (``pixel_opt``, ``perceptual_opt``) computed on its GT samples only, as the
    mean over those samples (its scale does not depend on the LR-only share), and an exact 0, still logged, when
    it has none; every other term runs on every sample (output distillation and label consistency against the
    labels, feature matching, forward adaptation and zoom-out against the live teacher on the LR input). The
    terms that need every sample's GT are refused before such a run (``check_lr_only_terms`` in
    :mod:`kd_plugin.models.kd_config`).

    One optimizer step per iteration, whatever the terms.

    The teacher's forward pass runs once per step under ``no_grad`` (optionally bf16/fp16 autocast
    and channels_last, ``train.teacher``); all losses share it. With cached whole-image labels in the
    batch (``KDPairedImageDataset``'s ``teacher``, from ``prepare teacher-labels``), output distillation
    and label consistency compare with the label instead, and the teacher runs only for the terms that
    need it live (:meth:`needs_live_teacher`): a cached-label recipe without them never runs it in a step.
    Forward adaptation reuses that pass's head and reruns only the teacher's layers after ``l``
    (:class:`TailRunner`). The teacher is never
    wrapped in DDP. Student and teacher features are captured by forward hooks on dotted layer names
    (:class:`FeatureRecorder`); the adapters ``A`` are one module, ``net_adapters``, built by
    :func:`wire`, with its own optimizer and ``net_adapters_<iter>.pth`` checkpoint, kept identical on
    all ranks (broadcast from rank 0 at start, gradients averaged). ``net_g`` checkpoints hold the
    plain student; the teacher always reloads from its own path.

    The options are read through :class:`~kd_plugin.models.kd_config.KDConfig`, the same parse the
    pre-run checks made.
    """

    #: networks of the options that this model never trains or saves: a resumed run reloads them from
    #: their own ``path.pretrain_<network>`` (read by :mod:`kd_plugin.compat.resume`)
    frozen_networks = ('network_t',)
    #: keys under ``train:`` a subclass reads besides ``KDModel``'s own: the pre-run check of option keys accepts
    #: them (and still refuses a misspelt one, with a suggestion)
    extra_train_keys: tuple[str, ...] = ()

    # ----------------------------------------------------------------- set-up
    def init_training_settings(self) -> None:
        self.kd = KDConfig.from_options(self.opt, self.device)
        self.net_g.train()
        train_opt = self.opt['train']
        self._setup_ema(train_opt.get('ema_decay', 0))
        self._build_teacher()
        self.nan_policy = self.kd.nan_policy
        self.cri_pix = build_loss(train_opt['pixel_opt']).to(self.device) if train_opt.get('pixel_opt') else None
        self.cri_perceptual = (build_loss(train_opt['perceptual_opt']).to(self.device)
                               if train_opt.get('perceptual_opt') else None)
        self.cri_dist, self.cri_feat, self.cri_fwd = (
            build_loss(train_opt[key]).to(self.device) if train_opt.get(key) else None for key in KD_LOSS_LOGS)
        student = self.get_bare_model(self.net_g)
        wiring = wire(student, self.net_t, self.opt['scale'], self.cri_feat, self.cri_fwd,
                      probe_input(self.opt, self.device))
        self.net_adapters = wiring.adapters.to(self.device)
        self.student_recorder = FeatureRecorder(student, wiring.student, 'student layer', wiring.student_clone)
        self.teacher_recorder = FeatureRecorder(self.net_t, wiring.teacher, 'teacher layer', wiring.teacher_clone)
        self.teacher_tail = (TailRunner(self.net_t, self.cri_fwd.teacher_layer, 'train.forward_opt.teacher')
                             if self.cri_fwd else None)
        self.upcycle = self.kd.upcycle
        self.upcycle_fn = get_criterion(self.upcycle.criterion, OUTPUT_CRITERIA, 'train.upcycle.criterion') \
            if self.upcycle else None
        self._load_adapters()
        broadcast_from_rank0(self.net_adapters)  # ranks seed differently; a resumed file is the same anyway
        self.setup_optimizers()
        self.setup_schedulers()

    def _setup_ema(self, decay: float) -> None:
        """SRModel's EMA set-up. Not inherited by calling ``SRModel.init_training_settings``: upstream
        (``sr_model.py:66-67``) raises when neither a pixel nor a perceptual loss is set, and a KD run
        may train on distillation terms alone."""
        self.ema_decay = decay
        if decay <= 0:
            return
        get_root_logger().info(f'Use Exponential Moving Average with decay: {decay}')
        self.net_g_ema = build_network(self.opt['network_g'], log=True).to(self.device)
        load_path = self.opt['path'].get('pretrain_network_g')
        if load_path is not None:
            self.load_network(self.net_g_ema, load_path, self.opt['path'].get('strict_load_g', True), 'params_ema')
        else:
            self.model_ema(0)
        self.net_g_ema.eval()

    def _build_teacher(self) -> None:
        teacher = self.kd.teacher
        self.net_t = build_network(deepcopy(teacher.arch), 'network_t', log=True).to(self.device)
        get_root_logger().info(f'Loading {self.net_t.__class__.__name__} model from {teacher.checkpoint}, with param '
                               f'key: [{teacher.param_key}].')
        if not loads_own_weights(self.net_t):  # one that does has read the same file and entry as it was built
            self._print_different_keys_loading(
                self.net_t, {k.removeprefix('module.'): v for k, v in teacher.params.items()}, teacher.strict)
        load_weights(self.net_t, teacher.params, teacher.strict)
        self.net_t.eval().requires_grad_(False)
        self.teacher_runner = TeacherRunner(self.net_t, teacher.dtype, teacher.channels_last, teacher.pad_to)
        log_teacher_precision(self.opt['train'].get('teacher') or {}, teacher.dtype, self.device)
        self.print_network(self.net_t)
        self._teacher_results: dict[str, dict[str, float]] = {}
        self._task_teachers: dict[str, TeacherRunner] = {}

    def _load_adapters(self) -> None:
        """The adapters of the resumed iteration (the pre-run check has made sure that file exists), else
        those of ``path.pretrain_network_adapters`` (initial weights for a new run), else none.

        A resumed state wins, as BasicSR's resume does for ``net_g``: the adapters belong to the student,
        optimizer moments and iteration count that the state restores."""
        resume = self.opt['path'].get('resume_state')
        if resume and self.kd.uses_adapters:
            path = adapter_checkpoint(self.opt, resume)
        else:
            path = self.opt['path'].get('pretrain_network_adapters')
        if path is not None:
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
    def feed_data(self, data: dict[str, torch.Tensor]) -> None:
        """SRModel's ``lq``/``gt``, plus ``teacher``: the batch's cached teacher labels ``[B, C, s*h, s*w]``
        (``KDPairedImageDataset`` with ``dataroot_teacher``), or None; and ``has_gt``: ``[B]`` bool, which samples'
        ``gt`` is real (``MixedKDDataset``), or None when every sample's is."""
        super().feed_data(data)
        self.teacher_label = data['teacher'].to(self.device) if 'teacher' in data else None
        self.has_gt = torch.as_tensor(data['has_gt']).bool().to(self.device) if 'has_gt' in data else None

    def gt_losses(self, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """``l_pix`` (and ``l_percep``/``l_style``) of ``self.output`` against ``target`` on the samples that have
        GT (``has_gt``): the criterion applied to those samples alone, i.e. the mean over them; an exact 0 when
        the batch has none, so that every step (and DDP rank) logs the same keys. A sample without GT gets no
        gradient from these terms."""
        losses = {}
        out = self.output
        if getattr(self, 'has_gt', None) is not None and not bool(self.has_gt.all()):
            out, target = out[self.has_gt], target[self.has_gt]
        zero = self.output.new_zeros(())
        empty = out.shape[0] == 0
        if self.cri_pix:
            losses['l_pix'] = zero if empty else self.cri_pix(out, target)
        if self.cri_perceptual:
            if empty:  # the keys the loss would return: a term whose weight is 0 returns None
                l_percep = zero if getattr(self.cri_perceptual, 'perceptual_weight', 1) > 0 else None
                l_style = zero if getattr(self.cri_perceptual, 'style_weight', 0) > 0 else None
            else:
                l_percep, l_style = self.cri_perceptual(out, target)
            for key, value in (('l_percep', l_percep), ('l_style', l_style)):
                if value is not None:
                    losses[key] = value
        return losses

    def needs_live_teacher(self, eco_alpha: float | None = None) -> bool:
        """Whether this step runs the teacher on the batch's patches: for feature matching and forward
        adaptation always (they read its features), and for output distillation, label consistency and an ECO
        schedule not yet at the ground truth (``eco_alpha < 1``) only without cached labels (with them, they use
        the label). Zoom-in and zoom-out run the teacher on their own inputs, whatever this says."""
        if self.cri_feat or self.cri_fwd:
            return True
        consistency = bool(self.upcycle) and 'consistency' in self.upcycle.parts
        eco = eco_alpha is not None and eco_alpha < 1
        return self.teacher_label is None and bool(self.cri_dist or consistency or eco)

    def teacher_forward(self, lq: torch.Tensor) -> torch.Tensor:
        """The teacher's SR output ``[B, C, s*h, s*w]`` for ``lq`` ``[B, C, h, w]`` in the configured fast
        path (no autograd context is set here). Sides that are not multiples of ``train.teacher.pad_to``
        are reflect-padded for the teacher and the output cropped back, as BasicSR's SwinIRModel does
        at test time; training patches are multiples already, so hooked features keep their shapes."""
        return self.teacher_runner.forward(lq)

    def optimize_parameters(self, current_iter: int) -> None:
        self.optimizer_g.zero_grad()
        if self.optimizer_adapters is not None:
            self.optimizer_adapters.zero_grad()
        eco = self.kd.eco
        alpha = eco.alpha(current_iter, self.opt['train']['total_iter']) if eco else None
        live = None
        if self.needs_live_teacher(alpha):
            tail = self.teacher_tail.recording() if self.teacher_tail else nullcontext()
            with torch.no_grad(), self.teacher_recorder.recording(), tail:
                live = self.teacher_forward(self.lq).float()
        # the output terms take the cached whole-image label when the batch has one; forward adaptation
        # compares the teacher's tail with the teacher's own pass on this patch
        teacher_out = self.teacher_label if self.teacher_label is not None else live
        mixing = alpha is not None and alpha < 1
        student_in = self.lq
        if mixing and eco.mode == 'full':
            student_in = eco_input(teacher_out, self.lq, self.opt['scale'], alpha)
        with self.student_recorder.recording():
            self.output = self.net_g(student_in)
        # ECO moves the pixel losses' target from the teacher's output to the ground truth
        target = eco_target(teacher_out, self.gt, alpha) if mixing else self.gt

        losses = OrderedDict(self.gt_losses(target))
        if self.cri_dist:
            losses['l_dist'] = self.cri_dist(self.output, teacher_out, self.gt if self.cri_dist.needs_gt else None)
        if self.cri_feat:
            losses['l_feat'] = self.cri_feat(*self._adapted_features())
        if self.cri_fwd:
            losses['l_fwd'] = self.cri_fwd(self._forward_adaptation(), live)
        self.teacher_recorder.clear()
        self.student_recorder.clear()
        if self.teacher_tail:
            self.teacher_tail.clear()
        if self.upcycle:
            losses.update(self._upcycled_losses(current_iter, teacher_out))

        total = sum(losses.values())
        if not finite_on_all_ranks(total):
            self._drop_non_finite_step(losses, current_iter)
            return
        total.backward()
        average_gradients(self.net_adapters)
        self.optimizer_g.step()
        if self.optimizer_adapters is not None:
            self.optimizer_adapters.step()
        self.log_dict = self.reduce_loss_dict(losses)
        if eco:
            self.log_dict['eco_alpha'] = alpha
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def _adapted_features(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``(A_k(F_S^{m_k}), F_T^{l_k})`` for every feature pair of this step."""
        adapted, targets = [], []
        for pair, adapter in zip(self.cri_feat.pairs, self.net_adapters['features']):
            target = self.teacher_recorder.get(pair['teacher'])
            adapted.append(adapter(self.student_recorder.get(pair['student']), target.shape[-2:]))
            targets.append(target)
        return adapted, targets

    def _forward_adaptation(self) -> torch.Tensor:
        """``T_{>l}(A(F_S^m))``: the teacher's tail run on the adapted student feature (autograd on),
        reusing the head of this step's teacher pass."""
        feat = self.student_recorder.get(self.cri_fwd.student_layer)
        adapter = self.net_adapters['forward_adaptation']

        def replace(teacher_feat: torch.Tensor) -> torch.Tensor:
            return adapter(feat, teacher_feat.shape[-2:]).to(teacher_feat.dtype)

        return self.teacher_tail.run(lambda: self.teacher_forward(self.lq), replace).float()

    def _upcycled_losses(self, current_iter: int, teacher_out: torch.Tensor) -> dict[str, torch.Tensor]:
        """The data-upcycling terms of this step (:mod:`kd_plugin.distill.upcycling`); a part that is not
        drawn this iteration logs 0, so every step (and every rank) logs the same keys.

        The extra student passes call the bare student: its parameters' gradients still reach DDP's
        all-reduce (which fires once per parameter per backward), while a second forward through the
        DDP wrapper before the backward would not be allowed."""
        rng = iteration_rng(self.opt.get('manual_seed'), current_iter)
        student = self.get_bare_model(self.net_g)
        crit, losses = self.upcycle_fn, {}
        for name, part in self.upcycle.parts.items():
            draw = rng.random()
            loss = self.lq.new_zeros(())
            if draw < part.prob and name == 'zoom_in':
                tiles = zoom_in_tiles(self.gt, tuple(self.lq.shape[-2:]), rng)
                with torch.no_grad():
                    label = self.teacher_forward(tiles).float()
                loss = part.weight * crit(student(tiles), label)
            elif draw < part.prob and name == 'zoom_out':
                small = zoom_out(self.lq, self.opt['scale'])
                with torch.no_grad():
                    label = self.teacher_forward(small).float()
                out = student(small)
                loss = part.weight * crit(out, label)
                if part.gt_weight:
                    loss = loss + part.gt_weight * crit(out, self.lq)
            elif draw < part.prob and name == 'consistency':
                aug = rng.choice(part.augmentations)
                loss = part.weight * crit(undo(student(augment(self.lq, aug)), aug), teacher_out)
            losses[UPCYCLE_LOGS[name]] = loss
        return losses

    def _drop_non_finite_step(self, losses: dict[str, torch.Tensor], current_iter: int) -> None:
        """A NaN/Inf loss on any rank, before any weight changes: ``train.nan_policy: stop`` (default)
        raises, so the last saved checkpoint stays the last good one; ``skip`` drops the step on every
        rank together and goes on."""
        terms = ', '.join(f'{k}={v.item():.4g}' for k, v in losses.items())
        if self.nan_policy == 'skip':
            get_root_logger().warning(f'iteration {current_iter}: non-finite loss on a rank (here: {terms}); step '
                                      'skipped on every rank (train.nan_policy: skip)')
            self.log_dict = self.reduce_loss_dict(losses)
            return
        message = (f'iteration {current_iter}: non-finite loss on a rank (here: {terms}); training stopped before '
                   'updating any weight, the last saved checkpoint is intact. Fix: lower the learning rate or a loss '
                   'weight, check the data, then resume with --auto_resume; or set train.nan_policy: skip to drop '
                   'such steps')
        get_root_logger().error(message)
        raise FloatingPointError(message)

    # ----------------------------------------------------------------- checkpoints
    def save(self, epoch: int, current_iter: int) -> None:
        # adapters before the training state: a state file implies all its networks were written
        if self.kd.uses_adapters:
            self.save_network(self.net_adapters, ADAPTER_LABEL, current_iter)
        super().save(epoch, current_iter)

    # ----------------------------------------------------------------- validation
    def _task_teacher(self, task: str) -> TeacherRunner:
        """The teacher of task ``task`` of a multi-task training set (``datasets.train.tasks.<task>``: its
        ``pretrain_network_t``, the arch of ``network_t``), for a validation set that names it (``task: <task>``);
        built once."""
        tasks = ((self.opt.get('datasets') or {}).get('train') or {}).get('tasks') or {}
        own = tasks.get(task) or {}
        if not own.get('pretrain_network_t'):
            return self.teacher_runner
        if task not in self._task_teachers:
            option = f'datasets.train.tasks.{task}.pretrain_network_t'
            arch = with_checkpoint(self.opt['network_t'], own['pretrain_network_t'], 'network_t', option,
                                   param_key=own.get('param_key_t'), scale=self.opt['scale'])
            net = build_network(arch, f'datasets.train.tasks.{task} teacher')
            _, params, _ = task_teacher(own['pretrain_network_t'], own.get('param_key_t'), option)
            load_weights(net, params)
            teacher = self.kd.teacher
            self._task_teachers[task] = TeacherRunner(net.to(self.device), teacher.dtype, teacher.channels_last,
                                                      teacher.pad_to)
        return self._task_teachers[task]

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
        task = dataloader.dataset.opt.get('task')
        teacher = self._task_teacher(task) if task else self.teacher_runner
        totals = dict.fromkeys(metrics, 0.0)
        for data in dataloader:
            sr = tensor2img([teacher.forward(data['lq'].to(self.device)).float().cpu()])
            gt = tensor2img([data['gt']])
            for metric, metric_opt in metrics.items():
                totals[metric] += calculate_metric({'img': sr, 'img2': gt}, metric_opt)
        results = {metric: total / len(dataloader) for metric, total in totals.items()}
        self._teacher_results[name] = results
        get_root_logger().info(f'Teacher{f" of task {task}" if task else ""} on {name} (computed once): ' +
                               ', '.join(f'{m}: {v:.4f}' for m, v in results.items()))
        if tb_logger:
            for metric, value in results.items():
                tb_logger.add_scalar(f'metrics/{name}/teacher_{metric}', value, 0)


def log_teacher_precision(teacher_opt: dict, dtype: torch.dtype | None, device: torch.device) -> None:
    """Log the precision the teacher's forward runs in, and warn when bf16 was asked for on a device that only
    emulates it (slower than fp32 there)."""
    logger = get_root_logger()
    logger.info(f'Teacher forward in {precision_name(dtype)} (train.teacher.autocast: {teacher_opt.get("autocast")}) '
                f'on {device}.')
    if dtype == torch.bfloat16 and not native_bf16(device):  # `auto` never picks bf16 there
        logger.warning(f'train.teacher.autocast: bf16 on {device}, which has no native bf16 (no AVX-512 BF16 or AMX '
                       'on a CPU): torch emulates it and the teacher runs slower than in fp32 (0.14x for EDSR 64x16 '
                       'on an AVX2 CPU). Fix: autocast: auto (bf16 where the hardware has it, else fp32)')
