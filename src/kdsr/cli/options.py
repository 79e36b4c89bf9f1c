"""Options that several subcommands share, defined once (no heavy imports: ``--help`` stays fast)."""

from __future__ import annotations

import argparse

from kdsr.constants import OPENVINO_ONLY_PRECISIONS, PRECISION_NAMES


def add_device_options(
    parser: argparse.ArgumentParser, device: str = "auto", precision: str = "auto", openvino: bool = False
) -> None:
    """``--device`` and ``--precision`` with the same choices and help everywhere; defaults per subcommand;
    ``openvino``: the subcommand has ``--backend openvino``, so its precisions are offered too."""
    parser.add_argument(
        "--device",
        default=device,
        help=f"auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps (default: {device})",
    )
    parser.add_argument(
        "--precision",
        default=precision,
        choices=["auto", *PRECISION_NAMES, *(OPENVINO_ONLY_PRECISIONS if openvino else ())],
        help="auto: fp16 on CUDA, fp32 elsewhere; bf16 is fast on CPUs with native bf16"
        + ("; int8: the OpenVINO backend only, quantised on first use (see --calibration)" if openvino else "")
        + f" (default: {precision})",
    )


class Once(argparse.Action):
    """A single-valued option that refuses to be given twice, instead of argparse's silent "last one wins" (two
    ``-n`` to a one-model command would otherwise run only the second)."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = f"_{self.dest}_given"
        if getattr(namespace, given, False):
            previous = getattr(namespace, self.dest)
            parser.error(f"{option_string} given twice ({previous}, then {values}); this command takes one")
        setattr(namespace, given, True)
        setattr(namespace, self.dest, values)


def add_overwrite_option(parser: argparse.ArgumentParser) -> None:
    """``--overwrite``: the one way to let a command replace files that exist (never an input)."""
    parser.add_argument("--overwrite", action="store_true", help="replace outputs that exist (never an input)")


def model_inputs(*names: str | None) -> list[str]:
    """The model arguments that name files (a bundled model's name or a preset is not a file the user owns)."""
    import os

    return [name for name in names if name and os.path.exists(name)]


def add_calibration_option(parser: argparse.ArgumentParser) -> None:
    """``--calibration DIR``: the HR photos that INT8 quantisation is calibrated and checked on."""
    parser.add_argument(
        "--calibration",
        metavar="DIR",
        help="INT8 (--precision int8, kdsr export --int8): HR photos (at least 64 pixels a side) to calibrate on and "
        "to hold INT8 within 0.02 dB of fp32 on, on each kind of input (default: six photo crops shipped with kdsr); "
        "cached per model and folder",
    )
