"""The training loop for the three stages (teacher, student, gan), single process or DDP under ``torchrun``.

Reproducibility: batch ``s`` of rank ``r`` is a pure function of (seed, s, r) (patch sampling and degradation
draws), so an interrupted run resumed from its last checkpoint continues exactly as the uninterrupted run.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from kdsr.data import HRPatches, StepBatchSampler
from kdsr.data.patches import load_rgb_folder
from kdsr.degradations import classic, mixture, realworld
from kdsr.devices import PRECISIONS, resolve_device
from kdsr.errors import KDSRError
from kdsr.models import KDSRTeacher
from kdsr.train.config import TrainConfig
from kdsr.train.runlog import RunLog
from kdsr.train.runstate import (
    STATE_FILE,
    Checkpointer,
    check_resume_config,
    prepare_run_dir,
    run_lock,
)
from kdsr.train.stages import build_stage


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
    if step < d.warmup_steps:
        decays = step // d.warmup_decay_steps if d.warmup_decay_steps else 0
        return d.warmup_lr * d.warmup_gamma**decays
    o = config.optim
    joint = step - d.warmup_steps
    return o.lr * o.lr_gamma ** (joint // o.lr_decay_steps if o.lr_decay_steps else 0)


def _degrade_labelled(
    config: TrainConfig, hr: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The LR batch and its degradation labels (mixture or classic, group 1: what the degradation head learns)."""
    d = config.degradation
    if d.kind == "classic":
        return classic.random_degrade_with_labels(hr, d.classic, config.data.scale, generator)
    return mixture.degrade_with_labels(hr, d.mixture, config.data.scale, generator)


def _degrade(config: TrainConfig, hr: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The LR batch; with ``degradation.group`` > 1 each group shares one draw: every image degraded from the same
    generator state (``replay``), or the group degraded as one image laid side by side (``strip``)."""
    group = config.degradation.group
    if group == 1:
        return _degrade_batch(config, hr, generator)
    if config.degradation.group_mode == "strip":
        b, c, h, w = hr.shape
        strips = hr.reshape(b // group, group, c, h, w).permute(0, 2, 3, 1, 4).reshape(b // group, c, h, group * w)
        out = torch.cat([_degrade_batch(config, strip[None], generator) for strip in strips])
        lw = out.shape[-1] // group
        return out.reshape(b // group, c, out.shape[2], group, lw).permute(0, 3, 1, 2, 4).reshape(b, c, -1, lw)
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
    the run's beyond :data:`kdsr.train.runstate.RESUMABLE_CHANGES`; a run folder has one writer at a time
    (:func:`kdsr.train.runstate.run_lock`). SIGINT/SIGTERM save a checkpoint at the current step, then raise
    :class:`TrainingInterrupted`. ``stop_after`` ends the run early after that many steps, leaving a checkpoint as an
    interruption would.
    """
    run_dir = Path(run_dir)
    main_process = int(os.environ.get("RANK", "0")) == 0
    with run_lock(run_dir) if main_process else contextlib.nullcontext():
        return _train(config, run_dir, resume, stop_after, overwrite)


def _train(config: TrainConfig, run_dir: Path, resume: bool, stop_after: int | None, overwrite: bool) -> dict:
    ddp = _init_distributed(config.device)
    device = _device(config.device, ddp)
    dtype = PRECISIONS[config.precision]
    checkpoints, log = Checkpointer(run_dir, config, enabled=ddp.main), RunLog(run_dir)
    state = None
    if ddp.main:
        prepare_run_dir(run_dir, resume, overwrite)
    if resume:
        check_resume_config(config, run_dir)
        state = checkpoints.load(device)
        if config.optim.steps < state["step"]:
            raise KDSRError(
                f"{run_dir}: optim.steps={config.optim.steps} is below the step the run reached ({state['step']})"
            )
    stage = build_stage(config, device)
    model = stage.model
    ema = EMA(model, config.ema_decay) if config.ema_decay > 0 else None
    groups = stage.param_groups()
    params = [p for group in groups for p in group["params"]]
    optimizer = torch.optim.Adam(groups, lr=config.optim.lr, betas=tuple(config.optim.betas))
    scaler = torch.amp.GradScaler(device.type, enabled=config.precision == "fp16")

    start, best = 0, -math.inf
    if state is not None:
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scaler.load_state_dict(state["scaler"])
            if ema:
                ema.model.load_state_dict(state["ema"])
            stage.load_state_dict(state)
        except (KeyError, RuntimeError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise KDSRError(f"{run_dir / STATE_FILE}: does not fit this config's networks ({first})") from None
        start, best = state["step"], state["best"]
        if ddp.main:
            log.cut(start)  # records written after the checkpoint are redone
    else:
        checkpoints.start()
    if ddp.world > 1:
        stage.distribute()

    images = load_rgb_folder(config.data.train)
    dataset = HRPatches(images, config.data.patch_size * config.data.scale, config.seed)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=StepBatchSampler(config.data.batch_size, start, ddp.rank, ddp.world),
        num_workers=config.data.workers,
    )
    writer = _tensorboard(config, run_dir) if ddp.main else None

    from tqdm import tqdm

    end = config.optim.steps if stop_after is None else min(config.optim.steps, start + stop_after)
    bar = tqdm(total=end, initial=start, desc=config.stage, unit="step", disable=not (ddp.main and sys.stderr.isatty()))
    sums: dict[str, float] = {}
    count, bad, last = 0, 0, {}
    t0 = time.perf_counter()
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

    def save_checkpoint(step: int) -> None:
        state = {
            "step": step,
            "best": best,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
            **({"ema": ema.model.state_dict()} if ema else {}),
            **stage.state_dict(),
        }
        checkpoints.save(step, ema.model if ema else model, state)

    with _stop_signals() as stop:
        for step, hr in zip(range(start, end), loader, strict=False):
            lr_value = learning_rate(config, step)
            for group in optimizer.param_groups:
                group["lr"] = lr_value * group.get("lr_scale", 1.0)  # checkpoints before lr_scale: 1
            hr = hr.to(device, non_blocking=True)
            generator = torch.Generator(device).manual_seed(step_seed(config.seed, step, ddp.rank))
            labels = None
            with torch.no_grad():
                if stage.wants_labels:
                    lr, labels = _degrade_labelled(config, hr, generator)
                else:
                    lr = _degrade(config, hr, generator)
                lr = lr.contiguous(memory_format=torch.channels_last)
            hr = hr.contiguous(memory_format=torch.channels_last)
            with autocast:
                losses, sr = stage.losses(lr, hr, step, labels)
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
                losses.update(stage.after_step(hr, sr, autocast))
                if ema:
                    ema.update(model)
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
                log.append(last)
                _scalars(writer, "train", last, done)
                bar.set_postfix(loss=f"{last['loss']:.4f}")
                sums, count = {}, 0
            if config.val.data and done % config.val.every == 0:
                if ddp.main:
                    metrics = _validate(config, ema.model if ema else model, device)
                    log.append({"step": done, **metrics})
                    _scalars(writer, "val", metrics, done)
                    if metrics["val_psnr"] > best:
                        best = metrics["val_psnr"]
                        checkpoints.save_best(done, ema.model if ema else model, best)
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


def _tensorboard(config: TrainConfig, run_dir: Path):
    """A TensorBoard writer into ``run_dir/tb`` when the config asks for one."""
    if not config.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise KDSRError("tensorboard is not installed: pip install tensorboard") from None
    return SummaryWriter(str(run_dir / "tb"))


def _scalars(writer, group: str, values: dict, step: int) -> None:
    if writer:
        for key, value in values.items():
            writer.add_scalar(f"{group}/{key}", value, step)
