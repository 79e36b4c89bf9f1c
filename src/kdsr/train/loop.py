"""The training loop for the three stages (teacher, student, gan), single process or DDP under ``torchrun``.

Reproducibility: batch ``s`` of rank ``r`` is a pure function of (seed, s, r) (patch sampling and degradation
draws), so an interrupted run resumed from its last checkpoint continues exactly as the uninterrupted run.
"""

from __future__ import annotations

import contextlib
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
from kdsr.degradations.counterfactual import counterfactual_pairs
from kdsr.degradations.sampling import sample_lr, sample_lr_with_labels
from kdsr.devices import PRECISIONS
from kdsr.errors import KDSRError
from kdsr.models import KDSRTeacher
from kdsr.train.config import TrainConfig
from kdsr.train.distributed import Dist, init_distributed, training_device
from kdsr.train.ema import EMA
from kdsr.train.runlog import RunLog
from kdsr.train.runstate import (
    STATE_FILE,
    Checkpointer,
    check_resume_config,
    prepare_run_dir,
    run_lock,
)
from kdsr.train.stages import Stage, ToldPairs, build_stage

#: the told LRs and HRs of a batch's counterfactual pairs (its first images), or None
Told = ToldPairs | None


def step_seed(seed: int, step: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])


def learning_rate(config: TrainConfig, step: int) -> float:
    """Step-decay schedule; during the KD-only warm-up its own lr and decay."""
    d = config.distill
    if step < d.warmup_steps:
        decays = step // d.warmup_decay_steps if d.warmup_decay_steps else 0
        return d.warmup_lr * d.warmup_gamma**decays
    o = config.optim
    joint = step - d.warmup_steps
    return o.lr * o.lr_gamma ** (joint // o.lr_decay_steps if o.lr_decay_steps else 0)


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


class _Optimisation:
    """What one optimisation step changes: the stage's networks (through its parameter groups), the Adam optimiser,
    the fp16 loss scaler and the EMA copy; and their part of a checkpoint."""

    def __init__(self, config: TrainConfig, stage: Stage, device: torch.device) -> None:
        self.stage, self.grad_clip = stage, config.optim.grad_clip
        self.ema = EMA(stage.model, config.ema_decay) if config.ema_decay > 0 else None
        groups = stage.param_groups()
        self.params = [p for group in groups for p in group["params"]]
        self.optimizer = torch.optim.Adam(groups, lr=config.optim.lr, betas=tuple(config.optim.betas))
        self.scaler = torch.amp.GradScaler(device.type, enabled=config.precision == "fp16")

    @property
    def weights(self) -> nn.Module:
        """What the run saves and validates: the EMA copy if any, else the trained network."""
        return self.ema.model if self.ema else self.stage.model

    def set_lr(self, value: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = value * group.get("lr_scale", 1.0)  # checkpoints before lr_scale: 1

    def step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema:
            self.ema.update(self.stage.model)

    def state_dict(self, step: int, best: float) -> dict:
        return {
            "step": step,
            "best": best,
            "model": self.stage.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            **({"ema": self.ema.model.state_dict()} if self.ema else {}),
            **self.stage.state_dict(),
        }

    def load_state_dict(self, state: dict, source: Path) -> None:
        try:
            self.stage.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scaler.load_state_dict(state["scaler"])
            if self.ema:
                self.ema.model.load_state_dict(state["ema"])
            self.stage.load_state_dict(state)
        except (KeyError, RuntimeError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise KDSRError(f"{source}: does not fit this config's networks ({first})") from None


class _Meter:
    """Means of the losses over the steps since the last log record."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, losses: dict[str, torch.Tensor], loss: torch.Tensor) -> None:
        for name, value in {**losses, "loss": loss}.items():
            self.sums[name] = self.sums.get(name, 0.0) + value.item()
        self.count += 1

    def take(self) -> dict[str, float]:
        means = {k: v / self.count for k, v in self.sums.items()}
        self.sums, self.count = {}, 0
        return means


@dataclasses.dataclass
class _Run:
    """One training run's parts, as :func:`_train` assembles them for :func:`_loop`."""

    config: TrainConfig
    run_dir: Path
    ddp: Dist
    device: torch.device
    stage: Stage
    optimisation: _Optimisation
    checkpoints: Checkpointer
    log: RunLog
    writer: object | None


def _train(config: TrainConfig, run_dir: Path, resume: bool, stop_after: int | None, overwrite: bool) -> dict:
    ddp = init_distributed(config.device)
    device = training_device(config.device, ddp)
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
    optimisation = _Optimisation(config, stage, device)
    start, best = 0, -math.inf
    if state is None:
        checkpoints.start()
    else:
        optimisation.load_state_dict(state, run_dir / STATE_FILE)
        start, best = state["step"], state["best"]
        if ddp.main:
            log.cut(start)  # records written after the checkpoint are redone
    if ddp.world > 1:
        stage.distribute()
    writer = _tensorboard(config, run_dir) if ddp.main else None
    run = _Run(config, run_dir, ddp, device, stage, optimisation, checkpoints, log, writer)
    end = config.optim.steps if stop_after is None else min(config.optim.steps, start + stop_after)
    last = _loop(run, start, end, best)
    if writer:
        writer.close()
    if ddp.world > 1:
        dist.barrier()
    return last


def _loader(config: TrainConfig, start: int, ddp: Dist) -> torch.utils.data.DataLoader:
    """HR patch batches from step ``start`` on, this rank's share."""
    images = load_rgb_folder(config.data.train)
    dataset = HRPatches(images, config.data.patch_size * config.data.scale, config.seed)
    sampler = StepBatchSampler(config.data.batch_size, start, ddp.rank, ddp.world)
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=config.data.workers)


def _batch(run: _Run, hr: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, Told]:
    """(LR, target, degradation labels or None, told LRs or None) of one step: the HR patches degraded by the step's
    own draws; with ``counterfactual.fraction`` > 0 the first images of the batch are counterfactual pairs (their
    told LRs, and targets in place of the HR); the stage's own pairs (a GAN stage's teacher targets) take the place of
    the last."""
    config = run.config
    hr = hr.to(run.device, non_blocking=True)
    generator = torch.Generator(run.device).manual_seed(step_seed(config.seed, step, run.ddp.rank))
    labels, told = None, None
    n_told = round(config.counterfactual.fraction * hr.shape[0])
    with torch.no_grad():
        if run.stage.wants_labels:
            lr, labels = sample_lr_with_labels(config.degradation, hr, config.data.scale, generator)
        else:
            lr = sample_lr(config.degradation, hr[n_told:], config.data.scale, generator) if n_told < len(hr) else None
        if n_told:
            hr_pairs = hr[:n_told]
            pairs = counterfactual_pairs(hr_pairs, config.counterfactual, config.data.scale, generator)
            lr = pairs.lr if lr is None else torch.cat([pairs.lr, lr])
            hr = torch.cat([pairs.target, hr[n_told:]])
            by_map = bool(torch.rand(1, generator=generator, device=hr.device) < config.counterfactual.map_share) if (
                config.counterfactual.map_share
            ) else False  # fmt: skip
            told = ToldPairs(pairs.told.contiguous(memory_format=torch.channels_last), hr_pairs, pairs.told_values,
                             by_map)  # fmt: skip
        lr, hr = run.stage.mix_in(lr, hr, generator)
    channels_last = torch.channels_last
    return lr.contiguous(memory_format=channels_last), hr.contiguous(memory_format=channels_last), labels, told


def _all_finite(loss: torch.Tensor, ddp: Dist) -> bool:
    """Whether the loss is finite on every rank (a step is skipped everywhere or nowhere)."""
    finite = torch.isfinite(loss.detach()).float()
    if ddp.world > 1:
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    return finite.item() == 1


def _loop(run: _Run, start: int, end: int, best: float) -> dict:
    """Steps ``start`` to ``end``: log, validate and checkpoint as configured; SIGINT/SIGTERM save and stop."""
    from tqdm import tqdm

    config, ddp, optimisation = run.config, run.ddp, run.optimisation
    dtype = PRECISIONS[config.precision]
    autocast = torch.autocast(run.device.type, dtype=dtype, enabled=dtype != torch.float32)
    meter, bad, last, t0 = _Meter(), 0, {}, time.perf_counter()
    bar = tqdm(total=end, initial=start, desc=config.stage, unit="step", disable=not (ddp.main and sys.stderr.isatty()))
    with _stop_signals() as stop:
        for step, hr in zip(range(start, end), _loader(config, start, ddp), strict=False):
            lr_value = learning_rate(config, step)
            optimisation.set_lr(lr_value)
            lr, hr, labels, told = _batch(run, hr, step)
            with autocast:
                losses, sr = run.stage.losses(lr, hr, step, labels, told)
            loss = sum(losses.values())
            if _all_finite(loss, ddp):
                bad = 0
                if loss.requires_grad:  # not in the GAN's discriminator warm-up, which leaves the generator alone
                    optimisation.step(loss)
                losses.update(run.stage.after_step(hr, sr, autocast))
                meter.add(losses, loss)
            else:  # skipped, but the step still counts for logging and checkpoints below
                bad += 1
                if bad > config.optim.max_bad_steps:
                    raise KDSRError(
                        f"training diverged: {bad} consecutive non-finite losses at step {step}; "
                        "lower optim.lr or set optim.grad_clip"
                    )
            done = step + 1
            bar.update()
            if ddp.main and meter.count and (done % config.log_every == 0 or done == end):
                elapsed = time.perf_counter() - t0
                last = {"step": done, "lr": lr_value, **meter.take()}
                last.update({"steps_per_s": (done - start) / elapsed, "elapsed_s": elapsed})
                if ddp.world > 1:
                    last["world_size"] = ddp.world
                run.log.append(last)
                _scalars(run.writer, "train", last, done)
                bar.set_postfix(loss=f"{last['loss']:.4f}")
            if config.val.data and done % config.val.every == 0:
                best = _validate_and_keep_best(run, done, best)
            if done % config.checkpoint_every == 0 or done == end or stop:
                run.checkpoints.save(done, optimisation.weights, optimisation.state_dict(done, best))
            if stop:
                bar.close()
                raise TrainingInterrupted(
                    f"interrupted at step {done}; checkpoint saved, continue with --resume {run.run_dir}"
                )
    bar.close()
    return last


def _validate_and_keep_best(run: _Run, done: int, best: float) -> float:
    """Validate on the main process, log it, save ``best.safetensors`` on a new best; the best PSNR so far."""
    if run.ddp.main:
        weights = run.optimisation.weights
        metrics = _validate(run.config, weights, run.device)
        run.log.append({"step": done, **metrics})
        _scalars(run.writer, "val", metrics, done)
        if metrics["val_psnr"] > best:
            best = metrics["val_psnr"]
            run.checkpoints.save_best(done, weights, best)
    if run.ddp.world > 1:
        dist.barrier()
    return best


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
