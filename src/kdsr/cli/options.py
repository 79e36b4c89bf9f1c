"""Options that several subcommands share, defined once (no heavy imports: ``--help`` stays fast)."""

from __future__ import annotations

import argparse

from kdsr.constants import PRECISION_NAMES


def add_device_options(parser: argparse.ArgumentParser, device: str = "auto", precision: str = "auto") -> None:
    """``--device`` and ``--precision`` with the same choices and help everywhere; defaults per subcommand."""
    parser.add_argument(
        "--device",
        default=device,
        help=f"auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps (default: {device})",
    )
    parser.add_argument(
        "--precision",
        default=precision,
        choices=["auto", *PRECISION_NAMES],
        help=f"auto: fp16 on CUDA, fp32 elsewhere; bf16 is fast on CPUs with native bf16 (default: {precision})",
    )
