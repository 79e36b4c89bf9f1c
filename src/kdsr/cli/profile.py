"""``kdsr profile``: parameters, FLOPs and latency at a given LR size."""

from __future__ import annotations

import argparse
import json
import warnings

from kdsr.cli.options import Once, add_device_options
from kdsr.errors import KDSRError, UntrainedModelWarning


def parse_size(text: str) -> tuple[int, int]:
    """``HxW`` -> (H, W)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise KDSRError(f"bad size '{text}': expected HEIGHTxWIDTH, e.g. 180x320") from None
    if h < 1 or w < 1:
        raise KDSRError(f"bad size '{text}': sides must be >= 1")
    return h, w


def add_parser(sub) -> None:
    p = sub.add_parser(
        "profile",
        help="parameters, FLOPs and latency of a model",
        description="Count parameters and FLOPs and time the forward pass at one LR size.",
    )
    p.add_argument(
        "-n", "--model", action=Once, default="kdsr-m", help="preset, bundled model or checkpoint (default: kdsr-m)"
    )
    p.add_argument("--lr-size", default="180x320", help="LR input HEIGHTxWIDTH (default: 180x320, the paper's)")
    add_device_options(p, device="cpu", precision="fp32")
    p.add_argument("--runs", type=int, default=5, help="timed runs after one warm-up (0: no timing; default 5)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from kdsr.checkpoint import load_model
    from kdsr.devices import resolve_device, resolve_dtype
    from kdsr.profiling import profile_model

    height, width = parse_size(args.lr_size)
    device = resolve_device(args.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedModelWarning)  # random weights time the same as trained ones
        model = load_model(args.model)
    report = profile_model(model, height, width, device, resolve_dtype(args.precision, device), args.runs)
    report["model"] = args.model
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    latency = "n/a" if report["latency_ms"] is None else f"{report['latency_ms']:.1f} ms"
    print(f"model            {args.model}")
    print(
        f"params           {report['params']:,} ({report['trainable_params']:,} trainable, "
        f"+{report['frozen_buffers']} frozen mean-shift values in buffers)"
    )
    print(f"FLOPs            {report['flops'] / 1e9:.2f} G ({report['macs'] / 1e9:.2f} GMACs) at LR {height}x{width}")
    print(f"latency          {latency} (median of {args.runs}, {report['device']}, {report['dtype']})")
    return 0
