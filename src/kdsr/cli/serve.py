"""``kdsr serve``: a local web page to upscale images (needs the web extra: Gradio)."""

from __future__ import annotations

import argparse
from pathlib import Path

from kdsr.bundled import bundled_models, default_model_name
from kdsr.constants import DEFAULT_MAX_PIXELS
from kdsr.errors import KDSRError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="a local web page to upscale images",
        description="Start a web page (Gradio) on this computer: drop images, pick a model, compare and download. "
        "It listens on 127.0.0.1 only unless --host says otherwise, and has no authentication: expose it to a "
        "network you trust only.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this computer)")
    p.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    p.add_argument(
        "-n",
        "--model",
        action="append",
        default=None,
        help="a checkpoint or bundled model to offer (repeatable; default: the bundled models)",
    )
    p.add_argument("--max-file-size", type=int, default=50, help="largest upload in MB (default: 50)")
    p.add_argument(
        "--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help=f"largest image (default {DEFAULT_MAX_PIXELS:,})"
    )
    p.add_argument("--open", action="store_true", help="open the page in the default browser")
    p.set_defaults(run=run)


def offered_models(names: list[str] | None) -> dict[str, str]:
    """Label -> model for the page: the given ones (bundled names or files), else every bundled model, the default
    first."""
    bundled = bundled_models()
    if not names:
        default = default_model_name()
        return {name: name for name in sorted(bundled, key=lambda n: n != default)} or {default: default}
    offered = {}
    for name in names:
        if name not in bundled and not Path(name).is_file():
            raise KDSRError(f"unknown model '{name}': not a bundled model or a file")
        offered[Path(name).name if name not in bundled else name] = name
    return offered


def run(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536 or args.max_file_size < 1 or args.max_pixels < 1:
        raise KDSRError("--port must be 1-65535, --max-file-size and --max-pixels >= 1")
    from kdsr.heap import release_large_buffers
    from kdsr.web.app import serve

    release_large_buffers()

    serve(offered_models(args.model), args.host, args.port, args.max_file_size, args.max_pixels, args.open)
    return 0
