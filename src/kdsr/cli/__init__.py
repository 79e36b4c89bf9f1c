"""The ``kdsr`` command: argparse subcommands, each in its own module."""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from kdsr import __version__
from kdsr.cli import (
    benchmark,
    convert,
    degrade,
    estimate,
    export,
    idr,
    models,
    plot,
    profile,
    serve,
    train,
    upscale,
)
from kdsr.errors import KDSRError

COMMANDS = (upscale, serve, estimate, benchmark, degrade, idr, train, plot, convert, export, profile, models)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kdsr", description="Blind image super-resolution with KDSR.")
    parser.add_argument("--version", action="version", version=f"kdsr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"kdsr: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point; user errors print one line and return a non-zero status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # `kdsr train CONFIG -o DIR key=value`: overrides may also come after the options
        if args.command != "train" or any(item.startswith("-") or "=" not in item for item in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    warnings.showwarning = _one_line_warning
    try:
        return args.run(args)
    except KDSRError as e:
        print(f"kdsr: error: {e}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as e:
        if e.name != "torch":
            raise
        from kdsr.inference.settings import needs_torch

        print(f"kdsr: error: {needs_torch(f'kdsr {args.command}')}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("kdsr: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `kdsr models NAME | head`: the reader has gone, which is not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
