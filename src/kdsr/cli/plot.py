"""``kdsr plot``: loss and validation curves of a run as a PNG (needs matplotlib)."""

from __future__ import annotations

import argparse
from pathlib import Path

from kdsr.cli.options import add_overwrite_option
from kdsr.errors import KDSRError


def add_parser(sub) -> None:
    p = sub.add_parser("plot", help="plot the curves of a training run")
    p.add_argument("run_dir", help="run folder with log.jsonl")
    p.add_argument("-o", "--output", help="PNG path (default: RUN_DIR/curves.png, replaced by each plot)")
    add_overwrite_option(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from kdsr.outputs import check_output
    from kdsr.train.runlog import RunLog

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise KDSRError("kdsr plot needs matplotlib: pip install 'kdsr[train]'") from None
    from kdsr.atomic import atomic_path

    run_dir = Path(args.run_dir)
    records = RunLog(run_dir).records()
    train_keys = [k for k in ("loss", "l1", "kd", "perceptual", "gan") if any(k in r for r in records)]
    val = [r for r in records if "val_psnr" in r]
    fig, axes = plt.subplots(1, 2 if val else 1, figsize=(11 if val else 6, 4), squeeze=False)
    for key in train_keys:
        points = [(r["step"], r[key]) for r in records if key in r]
        axes[0, 0].plot(*zip(*points, strict=True), label=key)
    axes[0, 0].set(xlabel="step", ylabel="loss", yscale="log", title=run_dir.name)
    axes[0, 0].legend()
    if val:
        axes[0, 1].plot([r["step"] for r in val], [r["val_psnr"] for r in val], marker="o")
        axes[0, 1].set(xlabel="step", ylabel="PSNR (dB)", title="validation")
    fig.tight_layout()
    output = Path(args.output or run_dir / "curves.png")
    if args.output:
        check_output(output, [], overwrite=args.overwrite)
    with atomic_path(output) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    print(output)
    return 0
