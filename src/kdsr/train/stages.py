"""The three training stages as small classes: each builds its networks, computes its losses for a batch, and names
the extra state it checkpoints. The loop (:mod:`kdsr.train.loop`) owns everything they share: data, degradations,
optimiser, mixed precision, logging, validation, checkpoints and DDP.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kdsr.checkpoint import load_model
from kdsr.data.teacher_targets import TeacherTargets
from kdsr.degradations.counterfactual import jpeg_pair_count
from kdsr.degradations.mixture import MIXTURE_CASES
from kdsr.degradations.sharpen import unsharp_mask
from kdsr.errors import KDSRError
from kdsr.models import KDSRStudent, KDSRTeacher, build_model, create_model
from kdsr.models.discriminator import UNetDiscriminatorSN
from kdsr.train.config import TrainConfig
from kdsr.train.losses import (
    DegradationHead,
    PerceptualLoss,
    degradation_head_loss,
    feature_matching_loss,
    gan_loss,
    group_contrast_loss,
    kd_loss,
    load_vgg19,
    low_frequency_loss,
    spectrum_loss,
    subpixel_uniformity_loss,
)


def _load_role(path: str, teacher: bool) -> KDSRStudent | KDSRTeacher:
    model = load_model(path)
    if isinstance(model, KDSRTeacher) != teacher:
        raise KDSRError(f"{path}: expected a {'teacher' if teacher else 'student'} checkpoint")
    return model


def build_networks(config: TrainConfig, device: torch.device):
    """(trained model, frozen teacher or None) for the stage, initialised as the official code does."""
    torch.manual_seed(config.seed)
    if config.stage == "teacher":
        if config.distill.init:  # a trained teacher continued whole, or a student's G under a fresh teacher encoder
            source = load_model(config.distill.init)
            if isinstance(source, KDSRTeacher):
                return source.to(device), None
            teacher = build_model(dataclasses.replace(source.config, teacher=True, encoder=config.model.encoder))
            teacher.G.load_state_dict(source.G.state_dict())
            return teacher.to(device), None
        m = config.model
        overrides = {k: v for k, v in dataclasses.asdict(m).items() if k != "preset" and v is not None}
        return create_model(m.preset, teacher=True, scale=config.data.scale, **overrides).to(device), None
    if not config.distill.teacher:  # a student continued without distillation (distill.weight 0; see the config)
        student = _load_role(config.distill.init, teacher=False)
        if config.distill.fresh_encoder:  # its G under a new encoder (seeded above)
            fresh = build_model(dataclasses.replace(student.config, encoder=config.model.encoder))
            fresh.G.load_state_dict(student.G.state_dict())
            student = fresh
        return student.to(device), None
    teacher = _load_role(config.distill.teacher, teacher=True).to(device).eval().requires_grad_(False)
    if config.stage == "gan":
        return _load_role(config.distill.init, teacher=False).to(device).train(), teacher
    # Student: G copied from the init checkpoint (default: the teacher), a fresh encoder (official stage 4); an init
    # that is itself a student is continued whole, encoder included (a longer run in several legs).
    student = build_model(dataclasses.replace(teacher.config, teacher=False))
    source = load_model(config.distill.init) if config.distill.init else teacher
    if isinstance(source, KDSRStudent) and not config.distill.fresh_encoder:
        if source.config != student.config:
            raise KDSRError(f"{config.distill.init}: the student's architecture differs from the teacher's")
        student.load_state_dict(source.state_dict())
    else:
        student.G.load_state_dict(source.G.state_dict())
    return student.to(device), teacher


def _conditions(name: str) -> bool:
    """Whether a parameter of a KDSR network is the encoder's compression of D' to D, the IDR that the generator's
    kernels are made of: scaling it up makes the generator more sensitive to the degradation D' carries."""
    return ".compress." in name


def _makes_kernels(name: str) -> bool:
    """Whether a parameter of a KDSR network belongs to an IDR-DCRB's kernel generator (IDR -> depthwise kernels)."""
    return ".da_conv1.kernel." in name


class Stage:
    """One stage: ``model`` is the network it trains (its weights are what the run saves), ``net`` the module the
    forward pass goes through (``model`` itself, or its DDP wrapper), ``teacher`` the frozen teacher if any."""

    def __init__(self, config: TrainConfig, device: torch.device) -> None:
        self.config = config
        model, teacher = build_networks(config, device)
        # channels_last: oneDNN's NHWC convolutions made a bf16 step 1.22x (teacher) / 1.15x (student) faster here
        # (benchmarks/train_speed.py); same results.
        self.model = model.to(memory_format=torch.channels_last).train()
        if config.distill.freeze_encoder:  # D' stays as it is; its compression to D trains with the generator
            self.model.encoder.requires_grad_(False)
            self.model.encoder.compress.requires_grad_(True)
        self.teacher = teacher.to(memory_format=torch.channels_last) if teacher is not None else None
        self.net: nn.Module = self.model
        self.degradation_head: DegradationHead | None = None
        if config.distill.degradation_weight > 0:
            torch.manual_seed(config.seed + 2)
            head = DegradationHead(self.model.config.n_feats, len(MIXTURE_CASES)).to(device)
            self.degradation_head = head
        self.degradation_net: nn.Module | None = self.degradation_head

    @property
    def wants_labels(self) -> bool:
        """Whether :meth:`losses` needs the degradation labels of the batch."""
        return self.degradation_head is not None

    def param_groups(self) -> list[dict]:
        """What the generator's optimiser updates: the network (its D' -> D compression at
        ``optim.conditioning_lr_scale`` and its kernel generators at ``optim.kernel_lr_scale`` times the schedule's
        learning rate), and the degradation head if any, whose learning rate is ``distill.degradation_lr_scale``
        times the schedule's (``lr_scale``)."""
        trained = [(name, p) for name, p in self.model.named_parameters() if p.requires_grad]
        scales = {
            _conditions: self.config.optim.conditioning_lr_scale,
            _makes_kernels: self.config.optim.kernel_lr_scale,
        }
        scaled = {rule: scale for rule, scale in scales.items() if scale != 1.0}
        groups = [{"params": [p for name, p in trained if not any(rule(name) for rule in scaled)], "lr_scale": 1.0}]
        for rule, scale in scaled.items():
            groups.append({"params": [p for name, p in trained if rule(name)], "lr_scale": scale})
        if self.degradation_head is not None:
            scale = self.config.distill.degradation_lr_scale
            groups.append({"params": list(self.degradation_head.parameters()), "lr_scale": scale})
        return groups

    def mix_in(self, lr: torch.Tensor, hr: torch.Tensor, generator: torch.Generator):
        """(LR, target) of a batch after the stage's own pairs (if any) took the place of its last images."""
        return lr, hr

    def degradation_loss(self, d: torch.Tensor, labels: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The weighted degradation-head loss on the IDR's D, when the config asks for it."""
        if self.degradation_net is None:
            return {}
        weight = self.config.distill.degradation_weight
        return {"degradation": weight * degradation_head_loss(self.degradation_net, d, labels)}

    #: whether some trained parameters get no gradient on some steps (DDP must then look for them)
    find_unused_parameters = False

    def distribute(self) -> None:
        """Wrap the trained networks for DistributedDataParallel."""
        self.net = nn.parallel.DistributedDataParallel(self.model, find_unused_parameters=self.find_unused_parameters)
        if self.degradation_head is not None:
            self.degradation_net = nn.parallel.DistributedDataParallel(self.degradation_head)

    def losses(
        self,
        lr: torch.Tensor,
        hr: torch.Tensor,
        step: int,
        labels: torch.Tensor | None = None,
        told: ToldPairs | None = None,
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The weighted losses of one batch (summed into the generator's loss) and the SR output; ``labels`` are the
        batch's degradation labels when :attr:`wants_labels`; ``told``, the told LRs and HRs of the batch's first images
        (counterfactual pairs, student stage: those images are super-resolved with the told LRs' IDR)."""
        raise NotImplementedError

    def after_step(self, hr: torch.Tensor, sr: torch.Tensor, autocast) -> dict[str, torch.Tensor]:
        """Work after the generator's optimiser step (the GAN's discriminator update); losses to log."""
        return {}

    def state_dict(self) -> dict:
        """State beyond the trained network and its optimiser that a resume needs."""
        return {"degradation_head": self.degradation_head.state_dict()} if self.degradation_head is not None else {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`; KeyError/RuntimeError/ValueError mean the state does not fit."""
        if self.degradation_head is not None:
            self.degradation_head.load_state_dict(state["degradation_head"])


class TeacherStage(Stage):
    """KD-IDE_T + SR network on (LR, HR): L1, optionally the degradation head, the grouped IDR and the contrastive
    loss on D'; with ``distill.warmup_steps`` the encoder learns the degradation head's loss alone first."""

    @property
    def find_unused_parameters(self) -> bool:  # the encoder warm-up leaves the generator without gradients
        return self.config.distill.warmup_steps > 0

    def losses(self, lr, hr, step, labels=None, told=None):
        distill, group = self.config.distill, self.config.degradation.group
        if step < distill.warmup_steps and self.net is self.model:  # encoder warm-up: the generator is not needed
            return self.degradation_loss(self.model.encode(lr, hr).d, labels), None
        sr, idr = self.net(lr, hr, return_idr=True, idr_groups=group if distill.group_idr else 1)
        losses = self.degradation_loss(idr.d, labels)
        if step >= distill.warmup_steps:
            losses["l1"] = F.l1_loss(sr.float(), hr)
        if distill.contrast_weight > 0:
            contrast = group_contrast_loss(idr.d_prime, group, distill.contrast_temperature)
            losses["contrast"] = distill.contrast_weight * contrast
        return losses, sr


class ToldPairs(NamedTuple):
    """The counterfactual pairs at the head of a batch: their told LRs (whose IDR super-resolves them), their HRs (in
    the batch, their targets stand in place of the HRs), the told degradations (IDR map units) and whether this step
    tells them through the IDR map instead of the told LRs."""

    lr: torch.Tensor
    hr: torch.Tensor
    values: tuple[dict[str, float], ...] = ()
    by_map: bool = False


class StudentStage(Stage):
    """KD-IDE_S + SR network on the LR: KD towards the frozen teacher's D' plus L1 (after the optional KD-only
    warm-up); without a teacher, L1 alone."""

    def __init__(self, config: TrainConfig, device: torch.device) -> None:
        super().__init__(config, device)
        #: the estimator and IDR map of ``distill.init`` (what --assume / --denoise steer with), for map-told steps
        self.steerer = None
        if config.counterfactual.map_share:
            from kdsr.readout.head import read_head
            from kdsr.readout.steering import Steerer, Steering, read_idr_map

            head, idr_map = read_head(config.distill.init), read_idr_map(config.distill.init)
            if head is None or idr_map is None:
                raise KDSRError("counterfactual.map_share needs distill.init with a degradation estimator and an IDR "
                                "map (kdsr estimate --fit ... --idr-map)")  # fmt: skip
            self.steerer = Steerer(head, idr_map, Steering())

    @property
    def warmup(self) -> bool:
        return self.config.distill.warmup_steps > 0

    @property
    def find_unused_parameters(self) -> bool:  # the KD-only warm-up leaves the generator without gradients
        return self.warmup

    def losses(self, lr, hr, step, labels=None, told=None):
        distill = self.config.distill
        warming_up = self.warmup and step < distill.warmup_steps
        if warming_up and self.net is self.model:  # KD-only warm-up: the generator is not needed
            sr, idr = None, self.model.encode(lr)
        else:
            sr, idr = self.net(lr, return_idr=True, **self._told_idr(lr, told))
        losses = self.degradation_loss(idr.d, labels)
        if self.teacher is not None:
            with torch.no_grad():
                target = self.teacher.encode(lr, hr).d_prime
            losses["kd"] = distill.weight * kd_loss(idr.d_prime, target, distill.loss, distill.temperature)
        if not warming_up:
            losses["l1"] = F.l1_loss(sr.float(), hr)
            if told is not None:
                losses.update(self._counterfactual_losses(lr, hr, sr, told))
        return losses, sr

    def _told_idr(self, lr: torch.Tensor, told: ToldPairs | None) -> dict[str, torch.Tensor]:
        """How the counterfactual pairs get their told IDR: the told LRs' (``idr_from``), or, on a step told through
        the map, their own IDR moved by the map from the estimated to the told degradation (``idr_offset``)."""
        if told is None:
            return {}
        if not told.by_map:
            return {"idr_from": told.lr}
        with torch.no_grad():
            idr = self.model.encode(lr[: len(told.lr)])
        d, d_prime = idr.d.float().cpu().numpy(), idr.d_prime.float().cpu().numpy()
        offsets = []
        for row, row_prime, values in zip(d, d_prime, told.values, strict=True):
            estimated = self.steerer.estimate(row, row_prime)
            offsets.append(self.steerer.shift(estimated, {**estimated, **values})[0])
        return {"idr_offset": torch.from_numpy(np.stack(offsets)).to(lr.device, torch.float32)}

    def _counterfactual_losses(self, lr, hr, sr, told: ToldPairs) -> dict[str, torch.Tensor]:
        """The counterfactual pairs' extra terms (:class:`~kdsr.degradations.counterfactual.CounterfactualConfig`):
        the JPEG pairs' L1 counted ``jpeg_weight`` times in all, and the difference loss."""
        config, n, losses = self.config.counterfactual, len(told.lr), {}
        n_jpeg = jpeg_pair_count(n, config)
        if n_jpeg and config.jpeg_weight != 1:
            share = n_jpeg / len(hr)
            losses["l1_jpeg"] = (config.jpeg_weight - 1) * F.l1_loss(sr[:n_jpeg].float(), hr[:n_jpeg]) * share
        if config.difference_weight:
            with torch.no_grad():
                own = self.net(lr[:n]).float()  # the same LRs with their own IDR: held fixed
            kept = hr[:n] - told.hr  # what the told degradation keeps (the target minus the HR)
            losses["difference"] = config.difference_weight * F.l1_loss(sr[:n].float() - own, kept) * (n / len(hr))
        return losses


class GanStage(StudentStage):
    """The student fine-tuned with L1 + KD + perceptual (VGG19 or discriminator features) + GAN losses against a
    U-Net discriminator with spectral normalisation, which has its own optimiser and loss scaler."""

    def __init__(self, config: TrainConfig, device: torch.device) -> None:
        gan = config.gan  # the VGG weights first, so that a missing file fails before any heavy work
        self.perceptual = None
        if gan.perceptual == "vgg":
            vgg = load_vgg19(gan.vgg_weights, tuple(gan.perceptual_layers)).to(device)
            self.perceptual = PerceptualLoss(vgg, gan.perceptual_layers)
        super().__init__(config, device)
        if gan.freeze_encoder:
            self.model.encoder.requires_grad_(False)
        torch.manual_seed(config.seed + 1)
        self.disc = UNetDiscriminatorSN(features=gan.d_features).to(device).train()
        self.disc_net: nn.Module = self.disc
        self.optimizer_d = torch.optim.Adam(self.disc.parameters(), lr=gan.d_lr, betas=tuple(gan.d_betas))
        self.scaler_d = torch.amp.GradScaler(device.type, enabled=config.precision == "fp16")
        self.teacher_targets = None
        if gan.teacher_targets:
            scale = config.data.scale
            self.teacher_targets = TeacherTargets(
                gan.teacher_targets, config.data.patch_size, scale, gan.teacher_tolerance
            )

    def mix_in(self, lr, hr, generator):
        if self.teacher_targets is None:
            return lr, hr
        n = round(self.config.gan.teacher_share * len(lr))
        lr_t, target_t = self.teacher_targets.sample(n, generator)
        keep = len(lr) - n
        return torch.cat([lr[:keep], lr_t.to(lr)]), torch.cat([hr[:keep], target_t.to(hr)])

    def distribute(self) -> None:
        super().distribute()
        self.disc_net = nn.parallel.DistributedDataParallel(self.disc)

    def losses(self, lr, hr, step, labels=None, told=None):
        gan = self.config.gan
        target = unsharp_mask(hr) if gan.usm_targets else hr
        if step < gan.d_warmup_steps:  # the discriminator's warm-up: the generator only makes its fakes
            with torch.no_grad():
                sr = self.model(lr)
            return {"l1": F.l1_loss(sr.float(), target)}, sr
        losses, sr = super().losses(lr, target, step, labels)
        self.disc_net.requires_grad_(False)
        if gan.perceptual == "spectrum":
            fake = self.disc_net(sr)
            losses["perceptual"] = gan.perceptual_weight * spectrum_loss(sr, target)
        elif gan.perceptual == "discriminator":  # feature matching on the discriminator's activations
            fake, fake_features = self.disc_net(sr, return_features=True)
            with torch.no_grad():
                real_features = self.disc_net(target, return_features=True)[1]
            losses["perceptual"] = gan.perceptual_weight * feature_matching_loss(fake_features, real_features)
        else:
            fake = self.disc_net(sr)
            losses["perceptual"] = gan.perceptual_weight * self.perceptual(sr.float(), target)
        losses["gan"] = gan.gan_weight * gan_loss(fake, real=True)
        if gan.subpixel_weight:
            losses["subpixel"] = gan.subpixel_weight * subpixel_uniformity_loss(sr, self.config.data.scale)
        if gan.lowfreq_weight:
            losses["lowfreq"] = gan.lowfreq_weight * low_frequency_loss(sr, target, self.config.data.scale)
        return losses, sr

    def after_step(self, hr, sr, autocast):
        self.disc_net.requires_grad_(True)
        self.optimizer_d.zero_grad(set_to_none=True)
        with autocast:
            d_real = gan_loss(self.disc_net(hr), real=True)
            d_fake = gan_loss(self.disc_net(sr.detach()), real=False)
        self.scaler_d.scale(d_real + d_fake).backward()
        self.scaler_d.step(self.optimizer_d)
        self.scaler_d.update()
        return {"d_real": d_real, "d_fake": d_fake}

    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "disc": self.disc.state_dict(),
            "optimizer_d": self.optimizer_d.state_dict(),
            "scaler_d": self.scaler_d.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.disc.load_state_dict(state["disc"])
        self.optimizer_d.load_state_dict(state["optimizer_d"])
        self.scaler_d.load_state_dict(state.get("scaler_d", self.scaler_d.state_dict()))


#: The stage classes by ``stage`` (the names are :data:`kdsr.train.config.STAGES`; a test holds the two together)
STAGE_CLASSES = {"teacher": TeacherStage, "student": StudentStage, "gan": GanStage}


def build_stage(config: TrainConfig, device: torch.device) -> Stage:
    return STAGE_CLASSES[config.stage](config, device)
