"""Typed training configuration: nested dataclasses read from YAML, unknown keys are errors.

``key.sub=value`` overrides (values parsed as YAML) are applied before validation.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

from kdsr.architecture import ENCODERS, PRESETS, SCALES
from kdsr.degradations.counterfactual import CounterfactualConfig
from kdsr.degradations.sampling import DEGRADATION_KINDS, GROUP_MODES, KINDS, DegradationSampling
from kdsr.errors import KDSRError

STAGES = ("teacher", "student", "gan")


@dataclasses.dataclass
class ModelSection:
    """Architecture of the teacher stage; the student and gan stages take theirs from the teacher checkpoint."""

    preset: str = "kdsr-s"
    # KD-IDE variant: official (the paper's, loads official checkpoints) or energy (standardised input, log-energy
    # pooling, the teacher sees the LR-HR residual; see kdsr.models.KDIDE); a student inherits its teacher's
    encoder: str = "official"
    n_feats: int | None = None
    n_blocks: int | None = None
    n_resblocks: int | None = None


@dataclasses.dataclass
class DataSection:
    train: list[str] = dataclasses.field(default_factory=list)
    patch_size: int = 48  # LR patch; the HR crop is patch_size * scale
    batch_size: int = 16
    workers: int = 0
    scale: int = 4


@dataclasses.dataclass
class OptimSection:
    steps: int = 1000
    lr: float = 1e-4
    betas: list[float] = dataclasses.field(default_factory=lambda: [0.9, 0.999])
    lr_decay_steps: int = 0  # 0: constant
    lr_gamma: float = 0.5
    grad_clip: float = 0.0  # max global grad norm; 0: off
    max_bad_steps: int = 10  # consecutive non-finite losses before the run stops
    # learning rate of the encoder's D' -> D compression (the IDR the generator's kernels are made of) relative to the
    # schedule's: above 1, a generator that learnt to ignore its IDR learns to follow it sooner
    conditioning_lr_scale: float = 1.0
    # learning rate of the generator's kernel generators (each IDR-DCRB's IDR -> depthwise kernels MLP) relative to
    # the schedule's: the only layers through which the IDR acts on the image
    kernel_lr_scale: float = 1.0


@dataclasses.dataclass
class DistillSection:
    teacher: str = ""  # teacher checkpoint (student and gan stages; a student with weight 0 may go without)
    # checkpoint that initialises the trained network: teacher stage, the whole teacher; student stage, a teacher's G
    # (default: the distilling teacher's, as the official code) or a whole student to continue; gan stage, the whole
    # student
    init: str = ""
    # student stage: continue the init student's G under a fresh encoder of model.encoder's kind (e.g. a trained
    # model moved to the energy encoder) instead of continuing it whole
    fresh_encoder: bool = False
    loss: str = "kl"  # kl | l1 | l2 on D'
    temperature: float = 0.15
    weight: float = 1.0
    # teacher stage: super-resolve each image with its degradation group's mean IDR (needs degradation.group > 1),
    # so that the IDR carries what the group shares (the degradation), not the image content
    group_idr: bool = False
    # teacher stage: weight of a supervised contrastive loss on D' with the degradation groups as classes (needs
    # degradation.group > 1), so that the IDR learns the degradation; 0: off (the paper's training)
    contrast_weight: float = 0.0
    contrast_temperature: float = 0.1
    # teacher or student stage: weight of a supervised loss in which a linear head on the IDR's D predicts the mixture
    # case, blur, noise and JPEG quality of each input (degradation.kind mixture or classic, group 1), so that the IDR
    # carries the degradation; 0: off (the paper's training)
    degradation_weight: float = 0.0
    # the head's learning rate relative to the schedule's: a linear read-out of a small IDR needs large weights soon
    degradation_lr_scale: float = 100.0
    # steps that train the encoder alone first: the student on KD (official aniso recipe); the teacher on the
    # degradation head's loss (needs degradation_weight > 0; as DASR pre-trains its encoder)
    warmup_steps: int = 0
    warmup_lr: float = 2e-4
    warmup_decay_steps: int = 0
    warmup_gamma: float = 0.1
    # student stage: keep the encoder's D' as it is (its conv stack and MLP), so that a degradation estimator that
    # reads D' stays valid; its compression to D trains with the SR network (refit the IDR map after)
    freeze_encoder: bool = False


@dataclasses.dataclass
class GanSection:
    # what the perceptual loss compares: "vgg" (the paper's: ImageNet VGG19 features, weights from vgg_weights),
    # "discriminator" (the discriminator's own features, as pix2pixHD's feature matching: no download) or
    # "spectrum" (local amplitude spectra of 16-pixel tiles: no network, no download)
    perceptual: str = "vgg"
    vgg_weights: str = ""
    perceptual_layers: dict[str, float] = dataclasses.field(
        default_factory=lambda: {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}
    )
    perceptual_weight: float = 1.0
    gan_weight: float = 1.0  # official option files; the paper and Real-ESRGAN say 0.1
    # L1 and perceptual targets (and the teacher's HR) unsharp-masked, as Real-ESRGAN's l1_gt_usm / percep_gt_usm
    # (KDSR-GAN's V2 option files pass them to the teacher only); the discriminator's real input stays the HR
    usm_targets: bool = False
    # steps that train the discriminator alone first (BasicSR's net_d_init_iters), so that the generator's first
    # adversarial and feature-matching gradients come from a discriminator that already tells its output from photos
    d_warmup_steps: int = 0
    # weight of the sub-pixel uniformity loss (ours): the output's fine detail spread evenly over the upsampler's
    # sub-pixel positions, against the grid a discriminator can make a sub-pixel upsampler draw
    subpixel_weight: float = 0.0
    # weight of an L1 between the output's and the target's scale x scale block means (kdsr.train.losses.
    # low_frequency_loss): colours and coarse shading held to the target, detail left to the other losses
    lowfreq_weight: float = 0.0
    # distillation from a sharp teacher: a set made by scripts/teacher_targets.py whose pairs are teacher_share of
    # each batch, their targets the HR's low frequencies plus the teacher's detail where the teacher agrees with the
    # HR within teacher_tolerance (0-1 values, averaged over each LR pixel; kdsr.data.teacher_targets)
    teacher_targets: str = ""
    # the whole encoder (its compression to D included) kept as distill.init's: the fine-tune runs under the faithful
    # model's IDR exactly, so that `kdsr upscale --detail` blends two generators under one encoder
    freeze_encoder: bool = False
    teacher_share: float = 0.5
    teacher_tolerance: float = 0.04
    d_features: int = 64
    d_lr: float = 1e-4
    d_betas: list[float] = dataclasses.field(default_factory=lambda: [0.9, 0.99])


@dataclasses.dataclass
class ValSection:
    data: str = ""  # folder; empty: no validation
    protocol: str = "gaussian8"
    every: int = 1000


@dataclasses.dataclass
class TrainConfig:
    stage: str = "teacher"
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"  # fp32 | bf16 | fp16
    ema_decay: float = 0.0  # 0: no EMA
    log_every: int = 20
    checkpoint_every: int = 500
    tensorboard: bool = False
    model: ModelSection = dataclasses.field(default_factory=ModelSection)
    data: DataSection = dataclasses.field(default_factory=DataSection)
    degradation: DegradationSampling = dataclasses.field(default_factory=DegradationSampling)
    optim: OptimSection = dataclasses.field(default_factory=OptimSection)
    distill: DistillSection = dataclasses.field(default_factory=DistillSection)
    gan: GanSection = dataclasses.field(default_factory=GanSection)
    # student stage: the share of each batch super-resolved with the IDR of a lesser ("told") degradation of the same
    # HR, against the target that degradation implies (kdsr.degradations.counterfactual): the SR network learns to
    # restore what its IDR says, which is what makes the IDR, and the dials built on it, steer the output
    counterfactual: CounterfactualConfig = dataclasses.field(default_factory=CounterfactualConfig)
    val: ValSection = dataclasses.field(default_factory=ValSection)

    def validate(self) -> None:
        """Raise :class:`KDSRError` naming the first setting that is out of range or does not fit the others."""
        for ok, message in self._basic_checks() + self._distill_checks():
            if not ok:
                raise KDSRError(f"config: {message}")

    def _basic_checks(self) -> list[tuple[bool, str]]:
        """Names, sizes and ranges, and what each stage needs."""
        return [
            (self.stage in STAGES, f"stage must be one of {STAGES}"),
            (self.precision in ("fp32", "bf16", "fp16"), "precision must be fp32, bf16 or fp16"),
            (
                self.degradation.kind in KINDS,
                f"degradation.kind must be one of {', '.join(KINDS)}",
            ),
            (self.distill.loss in ("kl", "l1", "l2"), "distill.loss must be kl, l1 or l2"),
            (bool(self.data.train), "data.train must list at least one folder"),
            (self.optim.steps > 0 and self.data.batch_size > 0 and self.data.patch_size > 0, "sizes must be > 0"),
            (
                self.stage == "teacher"
                or bool(self.distill.teacher)
                or (self.stage in ("student", "gan") and self.distill.weight == 0 and bool(self.distill.init)),
                "student/gan stages need distill.teacher (without it: distill.weight=0 and distill.init a student "
                "to continue)",
            ),
            (self.stage != "gan" or bool(self.distill.init), "the gan stage needs distill.init (a trained student)"),
            (
                self.gan.perceptual in ("vgg", "discriminator", "spectrum"),
                "gan.perceptual must be vgg, discriminator or spectrum",
            ),
            (0 <= self.gan.d_warmup_steps < self.optim.steps, "gan.d_warmup_steps must be >= 0 and < optim.steps"),
            (not self.gan.teacher_targets or self.stage == "gan", "gan.teacher_targets is for the gan stage"),
            (
                0 < self.gan.teacher_share <= 1 and self.gan.teacher_tolerance > 0,
                "gan.teacher_share must be in (0, 1] and gan.teacher_tolerance > 0",
            ),
            (
                self.stage != "gan" or self.gan.perceptual != "vgg" or bool(self.gan.vgg_weights),
                "the gan stage's VGG perceptual loss needs gan.vgg_weights (or gan.perceptual=discriminator)",
            ),
            (0 <= self.ema_decay < 1, "ema_decay must be in [0, 1)"),
            (
                min(self.log_every, self.checkpoint_every, self.val.every) > 0,
                "log_every, checkpoint_every and val.every must be > 0",
            ),
            (self.data.workers >= 0 and self.data.scale in SCALES, "data.workers >= 0, data.scale 2, 3, 4 or 8"),
            (
                self.degradation.group >= 1 and self.data.batch_size % self.degradation.group == 0,
                "degradation.group must be >= 1 and divide data.batch_size",
            ),
            (self.degradation.group_mode in GROUP_MODES, "degradation.group_mode must be replay or strip"),
        ]

    def _distill_checks(self) -> list[tuple[bool, str]]:
        """The IDR recipe options (grouping, contrast, degradation head, warm-ups, encoders) and their stages."""
        return [
            (
                not self.distill.group_idr or (self.stage == "teacher" and self.degradation.group > 1),
                "distill.group_idr is for the teacher stage and needs degradation.group > 1",
            ),
            (
                self.distill.contrast_weight == 0 or (self.stage == "teacher" and self.degradation.group > 1),
                "distill.contrast_weight is for the teacher stage and needs degradation.group > 1",
            ),
            (
                self.distill.contrast_weight >= 0 and self.distill.contrast_temperature > 0,
                "distill.contrast_weight must be >= 0 and distill.contrast_temperature > 0",
            ),
            (
                self.distill.degradation_weight == 0
                or (
                    self.stage != "gan"
                    and getattr(DEGRADATION_KINDS.get(self.degradation.kind), "with_labels", None) is not None
                    and self.degradation.group == 1
                ),
                "distill.degradation_weight is for the teacher and student stages with degradation.kind mixture or "
                "classic and degradation.group 1",
            ),
            (
                self.distill.warmup_steps == 0
                or self.stage == "student"
                or (self.stage == "teacher" and self.distill.degradation_weight > 0),
                "distill.warmup_steps is for the student stage, or the teacher stage with distill.degradation_weight "
                "> 0",
            ),
            (
                self.distill.degradation_weight == 0
                or self.degradation.kind != "classic"
                or self.degradation.classic.per_image,
                "distill.degradation_weight with degradation.kind classic needs degradation.classic.per_image: true "
                "(the head standardises D over the batch, which would remove a degradation the batch shares)",
            ),
            (self.distill.warmup_steps >= 0, "distill.warmup_steps must be >= 0"),
            (
                not self.distill.fresh_encoder or (self.stage == "student" and self.distill.init != ""),
                "distill.fresh_encoder is for the student stage with distill.init (a student whose G is continued)",
            ),
            (
                self.stage != "student"
                or self.distill.warmup_steps == 0
                or bool(self.distill.teacher)
                or self.distill.degradation_weight > 0,
                "distill.warmup_steps in the student stage trains the encoder on KD or the degradation head: it needs "
                "distill.teacher or distill.degradation_weight > 0",
            ),
            (self.model.encoder in ENCODERS, f"model.encoder must be one of {', '.join(ENCODERS)}"),
            (
                self.counterfactual.fraction == 0
                or (self.stage == "student" and self.distill.degradation_weight == 0 and self.degradation.group == 1),
                "counterfactual.fraction is for the student stage with distill.degradation_weight 0 and "
                "degradation.group 1",
            ),
            (
                not self.distill.freeze_encoder or self.stage == "student",
                "distill.freeze_encoder is for the student stage",
            ),
            (
                self.distill.degradation_weight >= 0 and self.distill.degradation_lr_scale > 0,
                "distill.degradation_weight must be >= 0 and distill.degradation_lr_scale > 0",
            ),
            (self.optim.lr > 0 and self.optim.lr_decay_steps >= 0, "optim.lr must be > 0, lr_decay_steps >= 0"),
            (self.optim.conditioning_lr_scale > 0, "optim.conditioning_lr_scale must be > 0"),
            (self.optim.kernel_lr_scale > 0, "optim.kernel_lr_scale must be > 0"),
            (
                self.model.preset in PRESETS,
                f"model.preset must be one of {', '.join(PRESETS)}, got {self.model.preset!r}",
            ),
        ]


def _build(cls, values: Any, where: str):
    """Build dataclass ``cls`` from a mapping, recursively; unknown keys and wrong types are errors."""
    if not isinstance(values, dict):
        raise KDSRError(f"config: {where or 'top level'} must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise KDSRError(f"config: unknown key(s) {', '.join(where + k for k in unknown)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        kwargs[name] = _coerce(hints[name], value, f"{where}{name}")
    return cls(**kwargs)


def _coerce(hint, value, where: str):
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where + ".")
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list:
        if not isinstance(value, list):
            raise KDSRError(f"config: {where} must be a list")
        return [_coerce(args[0], v, where) for v in value]
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise KDSRError(f"config: {where} must be a list")
        item_types = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(item_types) != len(value):
            raise KDSRError(f"config: {where} must have {len(item_types)} values")
        return tuple(_coerce(t, v, where) for t, v in zip(item_types, value, strict=True))
    if origin is dict:
        if not isinstance(value, dict):
            raise KDSRError(f"config: {where} must be a mapping")
        return dict(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if hint is Any or isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    raise KDSRError(f"config: {where} must be {hint.__name__}, got {value!r}")


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise KDSRError(f"config: override {dotted}: {part} is not a section")
    node[leaf] = value


def load_config(path: str | Path | None, overrides: list[str] = ()) -> TrainConfig:
    """Read a YAML config (``None``: defaults), apply ``key.sub=value`` overrides, validate."""
    import yaml

    tree: dict = {}
    if path is not None:
        try:
            tree = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as e:
            raise KDSRError(f"{path}: cannot read config ({e.strerror})") from None
        except yaml.YAMLError as e:
            raise KDSRError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    return config_from_tree(tree, overrides)


def config_from_tree(tree: dict, overrides: list[str] = ()) -> TrainConfig:
    """A config from its nested dict (a parsed YAML file, or a run's own ``config.json``), with ``key.sub=value``
    overrides applied, validated."""
    import yaml

    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise KDSRError(f"bad override '{item}': expected key.sub=value")
        _set_dotted(tree, key, yaml.safe_load(raw) if raw else "")  # "key=" clears a string option
    try:
        config = _build(TrainConfig, tree, "")
    except ValueError as e:  # raised by the degradation dataclasses' own checks
        raise KDSRError(f"config: {e}") from None
    config.validate()
    return config


def config_to_dict(config: TrainConfig) -> dict:
    return dataclasses.asdict(config)
