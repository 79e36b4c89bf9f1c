"""A run folder's files: the config it was started with, resumable state (``state.pt``, checksummed), last and
best weights, and the checks that keep a run from being destroyed or resumed with another config."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from kdsr.atomic import atomic_path, atomic_write_bytes, remove_stale_temporaries
from kdsr.checkpoint import save_model
from kdsr.errors import KDSRError
from kdsr.train.config import TrainConfig, config_to_dict
from kdsr.train.runlog import LOG_FILE

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


def save_weights(
    model: nn.Module, path: Path, config: TrainConfig, step: int, extra: dict | None = None, atomic: bool = True
) -> None:
    metadata = {
        "training_stage": config.stage,
        "training_step": str(step),
        "training_config": json.dumps(config_to_dict(config)),
        **(extra or {}),
    }
    save_model(model, path, metadata=metadata, atomic=atomic)


STATE_FORMAT = "kdsr-training-state-1"


def write_state(path: Path, state: dict, atomic: bool = True) -> None:
    """Write ``state.pt`` atomically as one file: the serialised state and its SHA-256, so that damage to the file
    is detected on resume (a stale checksum beside the file could not tell damage from an interrupted write)."""
    inner = io.BytesIO()
    torch.save(state, inner)
    data = inner.getvalue()
    outer = io.BytesIO()
    payload = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    torch.save({"format": STATE_FORMAT, "sha256": hashlib.sha256(data).hexdigest(), "payload": payload}, outer)
    if atomic:
        atomic_write_bytes(path, outer.getvalue())
    else:
        Path(path).write_bytes(outer.getvalue())


def read_state(path: Path, device: torch.device) -> dict:
    """The resumable state of a run; a missing, truncated, altered or foreign file is a one-line error."""
    if not path.is_file():
        raise KDSRError(
            f"{path.parent}: nothing to resume (no {STATE_FILE}: stopped before its first checkpoint); "
            f"start afresh with --overwrite -o {path.parent}"
        )

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
    if resume or not run_dir.is_dir() or not any(p.name != LOCK_FILE for p in run_dir.iterdir()):
        return
    if not overwrite:
        resumable = f"continue it with --resume {run_dir}, or " if (run_dir / STATE_FILE).is_file() else ""
        raise KDSRError(f"{run_dir}: not empty (an earlier run?); {resumable}replace it with --overwrite")
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)


LOCK_FILE = ".kdsr-train.lock"


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """One writer per run folder: a lock file holding the writer's PID, made with O_EXCL. A lock whose process is
    gone (a killed run) is taken over; a live one is a one-line error naming the PID."""
    if run_dir.exists() and not run_dir.is_dir():
        raise KDSRError(f"{run_dir}: exists and is not a folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / LOCK_FILE
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and _alive(pid):
                raise KDSRError(f"{run_dir}: another kdsr train (pid {pid}) is writing to this run folder") from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        break
    else:
        raise KDSRError(f"{run_dir}: cannot take the run folder's lock ({lock})")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class Checkpointer:
    """Writes a run's checkpoints: ``last.safetensors`` + ``state.pt`` together, ``best.safetensors`` on a new best
    validation PSNR. Only the main process writes (``enabled``)."""

    def __init__(self, run_dir: Path, config: TrainConfig, enabled: bool = True) -> None:
        self.run_dir, self.config, self.enabled = run_dir, config, enabled

    def save(self, step: int, weights: nn.Module, state: dict) -> None:
        """Both files written to temp names first, then renamed one after the other: a failed write (full disk)
        leaves the previous pair, so ``last.safetensors`` and ``state.pt`` always hold one step."""
        if self.enabled:
            with atomic_path(self.run_dir / STATE_FILE) as state_tmp:
                with atomic_path(self.run_dir / "last.safetensors") as weights_tmp:
                    save_weights(weights, Path(weights_tmp), self.config, step, atomic=False)
                    write_state(Path(state_tmp), state, atomic=False)

    def save_best(self, step: int, weights: nn.Module, val_psnr: float) -> None:
        if self.enabled:
            extra = {"val_psnr": f"{val_psnr:.4f}"}
            save_weights(weights, self.run_dir / "best.safetensors", self.config, step, extra)

    def load(self, device: torch.device) -> dict:
        return read_state(self.run_dir / STATE_FILE, device)

    def start(self) -> None:
        """A fresh run: the folder and its ``config.json``."""
        if self.enabled:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            text = json.dumps(config_to_dict(self.config), indent=2) + "\n"
            atomic_write_bytes(self.run_dir / CONFIG_FILE, text.encode())
