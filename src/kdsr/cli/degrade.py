"""``kdsr degrade``: make an LR set from a folder of HR images, with a manifest to regenerate it exactly."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from kdsr.atomic import atomic_write_bytes
from kdsr.cli.options import add_overwrite_option
from kdsr.errors import KDSRError

if TYPE_CHECKING:
    import torch


def add_parser(sub) -> None:
    p = sub.add_parser(
        "degrade",
        help="make LR images from HR images",
        description="Degrade every HR image of a folder (classic Eq. 1 or real-world second order).",
    )
    p.add_argument("-i", "--input", required=True, help="folder of HR images")
    p.add_argument("-o", "--output", required=True, help="output folder (one PNG per input, same stem)")
    p.add_argument("--scale", type=int, default=4, help="downscaling factor (default 4)")
    p.add_argument("--blur", choices=["none", "iso", "aniso"], default="none", help="blur kernel (default: none)")
    p.add_argument("--sigma", type=float, help="iso kernel width")
    p.add_argument("--lambda1", type=float, help="aniso standard deviation along theta")
    p.add_argument("--lambda2", type=float, help="aniso standard deviation across theta")
    p.add_argument("--theta", type=float, default=0.0, help="aniso angle in degrees, from +x towards +y (default 0)")
    p.add_argument("--noise", type=float, default=0.0, help="Gaussian noise level on the 0-255 scale (default 0)")
    p.add_argument(
        "--border",
        choices=["replicate", "symmetric"],
        default="replicate",
        help="bicubic border handling: replicate (official KDSR code, the default) or symmetric (MATLAB)",
    )
    p.add_argument("--realworld", action="store_true", help="Real-ESRGAN second-order degradation (KDSR-GAN defaults)")
    p.add_argument(
        "--seed", type=int, default=0, help="base seed; each image's draws are seeded from it and its name (default 0)"
    )
    p.add_argument(
        "--paired",
        action="store_true",
        help="write OUTPUT/LR and OUTPUT/HR (mod-cropped) for `kdsr benchmark --protocol paired`",
    )
    add_overwrite_option(p)
    p.set_defaults(run=run)


def _check_arguments(args: argparse.Namespace) -> None:
    """The mistakes answered before torch loads: a missing folder, out-of-range noise, scale or blur."""
    if not Path(args.input).is_dir():
        raise KDSRError(f"{args.input}: not a folder")
    if args.noise < 0 or args.scale < 1:
        raise KDSRError("--noise must be >= 0 and --scale >= 1")
    if args.realworld:
        return
    if args.blur == "iso" and (args.sigma is None or args.sigma <= 0):
        raise KDSRError("--blur iso needs --sigma > 0")
    if args.blur == "aniso" and (args.lambda1 is None or args.lambda2 is None or min(args.lambda1, args.lambda2) <= 0):
        raise KDSRError("--blur aniso needs --lambda1 > 0 and --lambda2 > 0")


def _kernel(args: argparse.Namespace) -> torch.Tensor | None:
    from kdsr.degradations.kernels import anisotropic_gaussian, isotropic_gaussian

    if args.blur == "iso":
        return isotropic_gaussian(args.sigma)[0]
    if args.blur == "aniso":
        return anisotropic_gaussian(args.lambda1, args.lambda2, args.theta * math.pi / 180)[0]
    return None


def run(args: argparse.Namespace) -> int:
    _check_arguments(args)
    import torch

    from kdsr.degradations import classic, realworld
    from kdsr.evaluation.protocols import load_hr, noise_seed
    from kdsr.image_io import list_images, write_image
    from kdsr.image_tensor import image_to_tensor, tensor_to_image
    from kdsr.outputs import check_output, check_outputs

    source, output = Path(args.input), Path(args.output)
    kernel = None if args.realworld else _kernel(args)
    lr_dir, hr_dir = (output / "LR", output / "HR") if args.paired else (output, None)
    check_output(output, [source], overwrite=True, folder=True)
    paths = list_images(source)
    planned = [output / "manifest.json"] + [d / f"{p.stem}.png" for p in paths for d in (lr_dir, hr_dir) if d]
    check_outputs(planned, paths, args.overwrite)
    images, failed = {}, []
    for path in paths:
        try:
            hr_image = load_hr(path, args.scale)
        except KDSRError as e:  # a bad file is reported at the end; the others are still degraded
            failed.append(str(e))
            continue
        hr = image_to_tensor(hr_image)
        seed = noise_seed(path.name, args.seed)
        generator = torch.Generator().manual_seed(seed)
        if args.realworld:
            lr = realworld.degrade(hr, scale=args.scale, generator=generator)
        else:
            lr = classic.degrade(hr, kernel, args.scale, args.noise, generator, args.border)
        lr_image = tensor_to_image(lr)
        write_image(lr_dir / f"{path.stem}.png", lr_image)
        if hr_dir is not None:
            write_image(hr_dir / f"{path.stem}.png", hr_image)
        images[path.name] = {"seed": seed, "hr_size": list(hr_image.shape[:2]), "lr_size": list(lr_image.shape[:2])}
        print(lr_dir / f"{path.stem}.png")
    settings = {k: v for k, v in vars(args).items() if k not in ("run", "input", "output")}
    manifest = {
        "source": str(source),
        "settings": settings,
        "images": images,
        "pipeline": "realworld (KDSR-GAN defaults)" if args.realworld else "classic (official KDSR code)",
        "failed": failed,
    }
    atomic_write_bytes(output / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode())
    if failed:
        print(f"kdsr: error: {len(failed)} file(s) failed, {len(images)} written:", file=sys.stderr)
        for message in failed:
            print(f"  {message}", file=sys.stderr)
        return 1
    return 0
