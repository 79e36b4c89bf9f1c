"""``kdsr train``: run or resume a training stage from a YAML config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kdsr.errors import KDSRError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a teacher, student or GAN stage",
        description="Train from a YAML config; extra key.sub=value arguments override it.",
    )
    p.add_argument(
        "config", nargs="?", help="YAML config (see configs/); with --resume it may be left out: the run's own is used"
    )
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. optim.steps=2000")
    p.add_argument("-o", "--run-dir", help="output folder (default: runs/<config name>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument(
        "--overwrite", action="store_true", help="start afresh in a run folder that holds an earlier run (replaced)"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from kdsr.train import train
    from kdsr.train.loop import TrainingInterrupted

    if args.resume and args.overwrite:
        raise KDSRError("--resume and --overwrite exclude each other")
    if args.resume and args.run_dir and Path(args.run_dir) != Path(args.resume):
        raise KDSRError("--resume names the run folder; -o must be the same folder or left out")
    config = _config(args)
    run_dir = Path(args.resume or args.run_dir or Path("runs") / Path(args.config).stem)
    try:
        last = train(config, run_dir, resume=args.resume is not None, overwrite=args.overwrite)
    except TrainingInterrupted as e:
        print(f"kdsr: {e}", file=sys.stderr)
        return 130
    except OSError as e:  # a full disk or a lost folder while writing a checkpoint or the log
        from kdsr.train.runstate import STATE_FILE

        if (run_dir / STATE_FILE).is_file():
            then = f"the last complete checkpoint is kept, continue with --resume {run_dir} once there is room"
        else:
            then = f"no checkpoint was completed, start afresh with --overwrite -o {run_dir} once there is room"
        raise KDSRError(f"{run_dir}: cannot write ({e.strerror or e}); {then}") from None
    if last:
        print(f"{run_dir}: step {last['step']}, loss {last['loss']:.4f}")
    return 0


def _config(args: argparse.Namespace):
    """The YAML config with its overrides; on ``--resume`` without one (the first argument then an override or
    nothing), the run's own ``config.json`` with the overrides (a longer ``optim.steps``, say)."""
    import json

    from kdsr.train import load_config
    from kdsr.train.config import config_from_tree
    from kdsr.train.runstate import CONFIG_FILE

    if args.config is not None and ("=" not in args.config or Path(args.config).is_file()):
        return load_config(args.config, args.overrides)
    overrides = [*([args.config] if args.config else []), *args.overrides]
    if not args.resume:
        raise KDSRError("name a YAML config (see configs/), or a run to continue with --resume RUN_DIR")
    path = Path(args.resume) / CONFIG_FILE
    try:
        tree = json.loads(path.read_text())
    except (OSError, ValueError):
        raise KDSRError(f"{path}: missing or unreadable; name the run's YAML config instead") from None
    return config_from_tree(tree, overrides)
