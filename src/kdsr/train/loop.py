"""The training loop for the three stages (teacher, student, gan), single process or DDP under ``torchrun``.

Reproducibility: batch ``s`` of rank ``r`` is a pure function of (seed, s, r) (patch sampling and degradation
draws), so an interrupted run resumed from its last checkpoint continues exactly as the uninterrupted run.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import io
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from kdsr.atomic import atomic_write_bytes, remove_stale_temporaries
from kdsr.checkpoint import load_model, save_model
from kdsr.data import HRPatches, StepBatchSampler
from kdsr.data.patches import load_rgb_folder
from kdsr.degradations import classic, mixture, realworld
from kdsr.devices import PRECISIONS, resolve_device
from kdsr.errors import KDSRError
from kdsr.models import KDSRStudent, KDSRTeacher, build_model, create_model
from kdsr.models.discriminator import UNetDiscriminatorSN
from kdsr.train.config import TrainConfig, config_to_dict
from kdsr.train.losses import PerceptualLoss, gan_loss, group_contrast_loss, kd_loss, load_vgg19
from kdsr.train.runlog import LOG_FILE, append_record, cut_log

STATE_FILE = "state.pt"
CONFIG_FILE = "config.json"
#: Files a run writes; ``overwrite`` removes these (and nothing else) from a run folder.
RUN_FILES = (STATE_FILE, CONFIG_FILE, LOG_FILE, "last.safetensors", "best.safetensors")
#: Config keys that may differ on ``--resume``: how long and how visibly the run goes on, not what it computes.
RESUMABLE_CHANGES = (
    "optim.steps",
    "optim.max_bad_steps",
    "log_every",
    "checkpoint_every",
    "tensorboard",
    "device",
    "data.workers",
    "val.data",
    "val.protocol",
    "val.every",
)


@dataclasses.dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device_name: str) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    if not dist.is_initialized():
        backend = (
            "nccl"
            if device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
            else "gloo"
        )
        dist.init_process_group(backend)
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _device(name: str, ddp: Dist) -> torch.device:
    device = resolve_device(name)
    if device.type == "cuda" and ddp.world > 1:
        device = torch.device("cuda", ddp.local_rank)
        torch.cuda.set_device(device)
    return device


def step_seed(seed: int, step: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])


class EMA:
    """Exponential moving average of a model's parameters (buffers copied)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for ema_p, p in zip(self.model.parameters(), model.parameters(), strict=True):
            ema_p.lerp_(p.detach(), 1 - self.decay)
        for ema_b, b in zip(self.model.buffers(), model.buffers(), strict=True):
            ema_b.copy_(b)


def learning_rate(config: TrainConfig, step: int) -> float:
    """Step-decay schedule; during the KD-only warm-up its own lr and decay."""
    d = config.distill
    if config.stage == "student" and step < d.warmup_steps:
        decays = step // d.warmup_decay_steps if d.warmup_decay_steps else 0
        return d.warmup_lr * d.warmup_gamma**decays
    o = config.optim
    joint = step - (d.warmup_steps if config.stage == "student" else 0)
    return o.lr * o.lr_gamma ** (joint // o.lr_decay_steps if o.lr_decay_steps else 0)


def _load_role(path: str, teacher: bool) -> KDSRStudent | KDSRTeacher:
    model = load_model(path)
    if isinstance(model, KDSRTeacher) != teacher:
        raise KDSRError(f"{path}: expected a {'teacher' if teacher else 'student'} checkpoint")
    return model


def _build_networks(config: TrainConfig, device: torch.device):
    """(trained model, frozen teacher or None) for the stage, initialised as the official code does."""
    torch.manual_seed(config.seed)
    if config.stage == "teacher":
        if config.distill.init:  # continue from a trained teacher's weights (a fresh optimiser)
            return _load_role(config.distill.init, teacher=True).to(device), None
        m = config.model
        overrides = {k: v for k, v in dataclasses.asdict(m).items() if k != "preset" and v is not None}
        return create_model(m.preset, teacher=True, scale=config.data.scale, **overrides).to(device), None
    if not config.distill.teacher:  # a student continued without distillation (distill.weight 0; see the config)
        return _load_role(config.distill.init, teacher=False).to(device), None
    teacher = _load_role(config.distill.teacher, teacher=True).to(device).eval().requires_grad_(False)
    if config.stage == "gan":
        return _load_role(config.distill.init, teacher=False).to(device).train(), teacher
    # Student: G copied from the init checkpoint (default: the teacher), a fresh encoder (official stage 4); an init
    # that is itself a student is continued whole, encoder included (a longer run in several legs).
    student = build_model(dataclasses.replace(teacher.config, teacher=False))
    source = load_model(config.distill.init) if config.distill.init else teacher
    if isinstance(source, KDSRStudent):
        if source.config != student.config:
            raise KDSRError(f"{config.distill.init}: the student's architecture differs from the teacher's")
        student.load_state_dict(source.state_dict())
    else:
        student.G.load_state_dict(source.G.state_dict())
    return student.to(device), teacher


def _degrade(config: TrainConfig, hr: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The LR batch; with ``degradation.group`` > 1 every image of a group is degraded from the same generator state,
    so the group shares one draw."""
    group = config.degradation.group
    if group == 1:
        return _degrade_batch(config, hr, generator)
    out = []
    for start in range(0, hr.shape[0], group):
        state = generator.get_state()
        for i in range(start, start + group):
            generator.set_state(state)
            out.append(_degrade_batch(config, hr[i : i + 1], generator))
    return torch.cat(out)


def _degrade_batch(config: TrainConfig, hr: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    d = config.degradation
    if d.kind == "realworld":
        return realworld.degrade(hr, d.realworld, config.data.scale, generator)
    if d.kind == "mixture":
        return mixture.degrade(hr, d.mixture, config.data.scale, generator)
    return classic.random_degrade(hr, d.classic, config.data.scale, generator)


def _save_weights(model: nn.Module, path: Path, config: TrainConfig, step: int, extra: dict | None = None) -> None:
    metadata = {
        "training_stage": config.stage,
        "training_step": str(step),
        "training_config": json.dumps(config_to_dict(config)),
        **(extra or {}),
    }
    save_model(model, path, metadata=metadata)


def _validate(config: TrainConfig, model: nn.Module, device: torch.device) -> dict:
    from kdsr.evaluation import run_benchmark

    was_training = model.training
    model.eval()
    teacher = isinstance(model, KDSRTeacher)

    def sr_fn(lr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        lr = lr.to(device)
        return (model(lr, hr.to(device)) if teacher else model(lr)).float().cpu()

    with torch.no_grad():
        report = run_benchmark(sr_fn, [Path(config.val.data)], config.val.protocol, config.data.scale)
    model.train(was_training)
    result = next(iter(report["results"].values()))
    metrics = {"val_psnr": result["psnr"], "val_ssim": result["ssim"]}
    if "gain" in result:  # everyday protocol: mean, worst-case and per-case gain over bicubic
        metrics["val_gain"] = result["gain"]
        metrics["val_min_gain"] = min(v["gain"] for v in result["settings"].values())
        metrics.update({f"val_gain_{name}": v["gain"] for name, v in result["settings"].items()})
    return metrics


STATE_FORMAT = "kdsr-training-state-1"


def _write_state(path: Path, state: dict) -> None:
    """Write ``state.pt`` atomically as one file: the serialised state and its SHA-256, so that damage to the file
    is detected on resume (a stale checksum beside the file could not tell damage from an interrupted write)."""
    inner = io.BytesIO()
    torch.save(state, inner)
    data = inner.getvalue()
    outer = io.BytesIO()
    payload = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    torch.save({"format": STATE_FORMAT, "sha256": hashlib.sha256(data).hexdigest(), "payload": payload}, outer)
    atomic_write_bytes(path, outer.getvalue())


def _read_state(path: Path, device: torch.device) -> dict:
    """The resumable state of a run; a missing, truncated, altered or foreign file is a one-line error."""
    if not path.is_file():
        raise KDSRError(f"{path.parent}: nothing to resume (no {STATE_FILE})")

    def load(data: bytes, location) -> object:
        try:
            return torch.load(io.BytesIO(data), map_location=location, weights_only=True)
        except Exception:  # torch raises many types for a damaged file; all mean the same to the user
            raise KDSRError(f"{path}: not a readable training state (truncated or corrupt)") from None

    outer = load(path.read_bytes(), "cpu")
    if not isinstance(outer, dict) or outer.get("format") != STATE_FORMAT:
        raise KDSRError(f"{path}: not a kdsr training state")
    data = outer["payload"].numpy().tobytes()
    if hashlib.sha256(data).hexdigest() != outer["sha256"]:
        raise KDSRError(f"{path}: checksum mismatch (the file was damaged after it was written)")
    state = load(data, device)
    if not isinstance(state, dict) or not {"step", "model", "optimizer"} <= set(state):
        raise KDSRError(f"{path}: not a kdsr training state")
    return state


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and key not in ("perceptual_layers",):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def check_resume_config(config: TrainConfig, run_dir: Path) -> None:
    """Refuse to resume with a config that computes something else than the run's own (``config.json``)."""
    path = run_dir / CONFIG_FILE
    try:
        saved = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        raise KDSRError(f"{path}: missing or unreadable; cannot check the config of the run") from None
    defaults = _flatten(json.loads(json.dumps(config_to_dict(TrainConfig()))))
    # a key that the run's config lacks was added to kdsr later: the run computed its default
    old = {**defaults, **_flatten(saved)}
    new = _flatten(json.loads(json.dumps(config_to_dict(config))))
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k) and k not in RESUMABLE_CHANGES)
    if changed:
        details = ", ".join(f"{k} ({old.get(k)!r} -> {new.get(k)!r})" for k in changed[:6])
        raise KDSRError(
            f"{run_dir}: the config differs from the run's in {details}; on --resume only "
            f"{', '.join(RESUMABLE_CHANGES)} may change (start a new run for the others)"
        )


def prepare_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """A fresh run needs an empty (or new) folder, or ``overwrite``, which removes the files of an earlier run only.
    Hidden temp files that a killed run left behind are removed in every case."""
    if run_dir.exists() and not run_dir.is_dir():
        raise KDSRError(f"{run_dir}: exists and is not a folder")
    remove_stale_temporaries(run_dir, list(RUN_FILES))
    if resume or not run_dir.is_dir() or not any(run_dir.iterdir()):
        return
    if not overwrite:
        raise KDSRError(
            f"{run_dir}: not empty (an earlier run?); continue it with --resume {run_dir}, "
            "or replace it with --overwrite"
        )
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)


@contextlib.contextmanager
def _stop_signals():
    """While training, SIGINT and SIGTERM only set a flag, so the loop can save a checkpoint before it exits."""
    received: list[int] = []

    def handler(signum, frame):
        received.append(signum)

    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: no handlers, as before
        pass
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class TrainingInterrupted(KDSRError):
    """SIGINT/SIGTERM stopped the run; its state was saved."""


def train(
    config: TrainConfig,
    run_dir: str | Path,
    resume: bool = False,
    stop_after: int | None = None,
    overwrite: bool = False,
) -> dict:
    """Run (or resume) a training stage into ``run_dir``; returns the last logged values.

    A fresh run refuses a non-empty ``run_dir`` unless ``overwrite``; ``resume`` refuses a config that differs from
    the run's beyond :data:`RESUMABLE_CHANGES`. SIGINT/SIGTERM save a checkpoint at the current step, then raise
    :class:`TrainingInterrupted`. ``stop_after`` ends the run early after that many steps, leaving a checkpoint as
    an interruption would.
    """
    run_dir = Path(run_dir)
    ddp = _init_distributed(config.device)
    device = _device(config.device, ddp)
    dtype = PRECISIONS[config.precision]
    state = None
    if ddp.main:
        prepare_run_dir(run_dir, resume, overwrite)
    if resume:
        check_resume_config(config, run_dir)
        state = _read_state(run_dir / STATE_FILE, device)
        if config.optim.steps < state["step"]:
            raise KDSRError(
                f"{run_dir}: optim.steps={config.optim.steps} is below the step the run reached ({state['step']})"
            )
    disc = perceptual = None
    if config.stage == "gan":  # first, so that a missing weights file fails before any heavy work
        vgg = load_vgg19(config.gan.vgg_weights, tuple(config.gan.perceptual_layers)).to(device)
        perceptual = PerceptualLoss(vgg, config.gan.perceptual_layers)
    model, teacher = _build_networks(config, device)
    # channels_last: oneDNN's NHWC convolutions made a bf16 step 1.22x (teacher) / 1.15x (student) faster here
    # (benchmarks/train_speed.py); same results.
    model = model.to(memory_format=torch.channels_last).train()
    if teacher is not None:
        teacher = teacher.to(memory_format=torch.channels_last)
    ema = EMA(model, config.ema_decay) if config.ema_decay > 0 else None
    if config.stage == "gan":
        torch.manual_seed(config.seed + 1)
        disc = UNetDiscriminatorSN(features=config.gan.d_features).to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.optim.lr, betas=tuple(config.optim.betas))
    optimizer_d = (
        torch.optim.Adam(disc.parameters(), lr=config.gan.d_lr, betas=tuple(config.gan.d_betas)) if disc else None
    )
    scaler = torch.amp.GradScaler(device.type, enabled=config.precision == "fp16")
    scaler_d = torch.amp.GradScaler(device.type, enabled=config.precision == "fp16" and disc is not None)

    start, best = 0, -math.inf
    if state is not None:
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scaler.load_state_dict(state["scaler"])
            if ema:
                ema.model.load_state_dict(state["ema"])
            if disc:
                disc.load_state_dict(state["disc"])
                optimizer_d.load_state_dict(state["optimizer_d"])
                scaler_d.load_state_dict(state.get("scaler_d", scaler_d.state_dict()))
        except (KeyError, RuntimeError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise KDSRError(f"{run_dir / STATE_FILE}: does not fit this config's networks ({first})") from None
        start, best = state["step"], state["best"]
        if ddp.main:
            cut_log(run_dir, start)  # records written after the checkpoint are redone
    elif ddp.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(run_dir / CONFIG_FILE, (json.dumps(config_to_dict(config), indent=2) + "\n").encode())

    warmup = config.stage == "student" and config.distill.warmup_steps > 0
    trained = model
    if ddp.world > 1:
        model = nn.parallel.DistributedDataParallel(model, find_unused_parameters=warmup)
        if disc:
            disc = nn.parallel.DistributedDataParallel(disc)

    images = load_rgb_folder(config.data.train)
    scale = config.data.scale
    dataset = HRPatches(images, config.data.patch_size * scale, config.seed)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=StepBatchSampler(config.data.batch_size, start, ddp.rank, ddp.world),
        num_workers=config.data.workers,
    )
    writer = None
    if config.tensorboard and ddp.main:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise KDSRError("tensorboard is not installed: pip install tensorboard") from None
        writer = SummaryWriter(str(run_dir / "tb"))

    from tqdm import tqdm

    end = config.optim.steps if stop_after is None else min(config.optim.steps, start + stop_after)
    bar = tqdm(total=end, initial=start, desc=config.stage, unit="step", disable=not (ddp.main and sys.stderr.isatty()))
    log_path = run_dir / LOG_FILE
    sums: dict[str, float] = {}
    count, bad, last = 0, 0, {}
    t0 = time.perf_counter()
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

    def save_checkpoint(step: int) -> None:
        if not ddp.main:
            return
        weights = ema.model if ema else trained
        _save_weights(weights, run_dir / "last.safetensors", config, step)
        state = {
            "step": step,
            "best": best,
            "model": trained.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
        }
        if ema:
            state["ema"] = ema.model.state_dict()
        if disc:
            state["disc"] = _unwrap(disc).state_dict()
            state["optimizer_d"] = optimizer_d.state_dict()
            state["scaler_d"] = scaler_d.state_dict()
        _write_state(run_dir / STATE_FILE, state)

    with _stop_signals() as stop:
        for step, hr in zip(range(start, end), loader, strict=False):
            lr_value = learning_rate(config, step)
            for group in optimizer.param_groups:
                group["lr"] = lr_value
            hr = hr.to(device, non_blocking=True)
            generator = torch.Generator(device).manual_seed(step_seed(config.seed, step, ddp.rank))
            with torch.no_grad():
                lr = _degrade(config, hr, generator).contiguous(memory_format=torch.channels_last)
            hr = hr.contiguous(memory_format=torch.channels_last)
            losses: dict[str, torch.Tensor] = {}
            with autocast:
                if config.stage == "teacher":
                    groups = config.degradation.group if config.distill.group_idr else 1
                    sr, idr = model(lr, hr, return_idr=True, idr_groups=groups)
                    losses["l1"] = F.l1_loss(sr.float(), hr)
                    if config.distill.contrast_weight > 0:
                        contrast = group_contrast_loss(
                            idr.d_prime, config.degradation.group, config.distill.contrast_temperature
                        )
                        losses["contrast"] = config.distill.contrast_weight * contrast
                else:
                    sr, idr = model(lr, return_idr=True)
                    if teacher is not None:
                        with torch.no_grad():
                            target = teacher.encode(lr, hr).d_prime
                        kd = kd_loss(idr.d_prime, target, config.distill.loss, config.distill.temperature)
                        losses["kd"] = config.distill.weight * kd
                    if not (warmup and step < config.distill.warmup_steps):
                        losses["l1"] = F.l1_loss(sr.float(), hr)
                    if disc is not None:
                        losses["perceptual"] = config.gan.perceptual_weight * perceptual(sr.float(), hr)
                        disc.requires_grad_(False)
                        losses["gan"] = config.gan.gan_weight * gan_loss(disc(sr), real=True)
            loss = sum(losses.values())
            finite = torch.isfinite(loss.detach()).float()
            if ddp.world > 1:
                dist.all_reduce(finite, op=dist.ReduceOp.MIN)
            optimizer.zero_grad(set_to_none=True)
            if finite.item() < 1:  # skipped, but the step still counts for logging and checkpoints below
                bad += 1
                if bad > config.optim.max_bad_steps:
                    raise KDSRError(
                        f"training diverged: {bad} consecutive non-finite losses at step {step}; "
                        "lower optim.lr or set optim.grad_clip"
                    )
            else:
                bad = 0
                scaler.scale(loss).backward()
                if config.optim.grad_clip > 0:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(params, config.optim.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                if disc is not None:
                    disc.requires_grad_(True)
                    optimizer_d.zero_grad(set_to_none=True)
                    with autocast:
                        d_real = gan_loss(disc(hr), real=True)
                        d_fake = gan_loss(disc(sr.detach()), real=False)
                    scaler_d.scale(d_real + d_fake).backward()
                    scaler_d.step(optimizer_d)
                    scaler_d.update()
                    losses["d_real"], losses["d_fake"] = d_real, d_fake
                if ema:
                    ema.update(trained)
                for name, value in losses.items():
                    sums[name] = sums.get(name, 0.0) + value.item()
                sums["loss"] = sums.get("loss", 0.0) + loss.item()
                count += 1
            done = step + 1
            bar.update()
            if ddp.main and count and (done % config.log_every == 0 or done == end):
                elapsed = time.perf_counter() - t0
                last = {
                    "step": done,
                    "lr": lr_value,
                    **{k: v / count for k, v in sums.items()},
                    "steps_per_s": (done - start) / elapsed,
                    "elapsed_s": elapsed,
                }
                if ddp.world > 1:
                    last["world_size"] = ddp.world
                append_record(log_path, last)
                if writer:
                    for k, v in last.items():
                        writer.add_scalar(f"train/{k}", v, done)
                bar.set_postfix(loss=f"{last['loss']:.4f}")
                sums, count = {}, 0
            if config.val.data and done % config.val.every == 0:
                if ddp.main:
                    metrics = _validate(config, ema.model if ema else trained, device)
                    append_record(log_path, {"step": done, **metrics})
                    if writer:
                        for k, v in metrics.items():
                            writer.add_scalar(f"val/{k}", v, done)
                    if metrics["val_psnr"] > best:
                        best = metrics["val_psnr"]
                        _save_weights(
                            ema.model if ema else trained,
                            run_dir / "best.safetensors",
                            config,
                            done,
                            {"val_psnr": f"{best:.4f}"},
                        )
                if ddp.world > 1:
                    dist.barrier()
            if done % config.checkpoint_every == 0 or done == end or stop:
                save_checkpoint(done)
            if stop:
                bar.close()
                raise TrainingInterrupted(
                    f"interrupted at step {done}; checkpoint saved, continue with --resume {run_dir}"
                )
    bar.close()
    if writer:
        writer.close()
    if ddp.world > 1:
        dist.barrier()
    return last


def _unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module
