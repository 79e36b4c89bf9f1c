"""``kdsr estimate``: what degradation a model sees in each image (blur width, noise, JPEG quality), read off its
IDR by the regression head stored in the model file; ``--fit`` fits that head."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from kdsr.atomic import atomic_write_bytes
from kdsr.cli.options import Once, add_overwrite_option, model_inputs
from kdsr.constants import ESTIMATOR_TERMS, IDR_FEATURES
from kdsr.errors import KDSRError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "estimate",
        help="estimate the blur, noise and JPEG quality of images",
        description="Estimate each image's degradation in `kdsr degrade` units (Gaussian blur sigma in HR pixels, "
        "noise standard deviation on the 0-255 scale, JPEG quality) from the model's IDR. With --fit, fit the "
        "estimator of a model on synthetic degradations of HR images and write the model with it.",
    )
    p.add_argument("-i", "--input", help="image or folder of images")
    p.add_argument(
        "-n", "--model", action=Once, default=None, help="bundled model or checkpoint (default: the default model)"
    )
    p.add_argument("--json", dest="json_path", help="write the estimates here")
    fit = p.add_argument_group("fitting (--fit)")
    fit.add_argument("--fit", nargs="+", metavar="HR_DIR", help="fit the estimator on these HR folders")
    fit.add_argument("-o", "--output", help="with --fit: the model file to write (safetensors)")
    fit.add_argument("--sigma-range", type=float, nargs=2, default=[0.2, 4.0], help="default: 0.2 4.0")
    fit.add_argument("--noise-range", type=float, nargs=2, default=[0.0, 0.0], help="default: 0 0 (no noise)")
    fit.add_argument("--jpeg-prob", type=float, default=0.0, help="fraction JPEG-compressed, q 30-95 (default 0)")
    fit.add_argument("--per-image", type=int, default=8, help="degradations drawn per HR image (default 8)")
    fit.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    fit.add_argument(
        "--crop", type=int, default=384, help="HR pixels per side from the middle of each image (0: whole; default 384)"
    )
    fit.add_argument(
        "--feature",
        choices=IDR_FEATURES,
        default="d",
        help="the IDR vector read: d (the compact D that conditions the network; default) or d_prime (the D' a KD "
        "student learns to match)",
    )
    fit.add_argument(
        "--terms",
        choices=ESTIMATOR_TERMS,
        default="linear",
        help="the read-out: linear in the IDR (default) or quadratic (its values and their squares: reads noise "
        "under JPEG better, used for kdsr-real-x4)",
    )
    fit.add_argument(
        "--idr-map",
        dest="idr_map",
        action="store_true",
        help="fit the model's IDR map instead (degradation -> IDR, what `kdsr upscale --assume/--denoise` steer "
        "with); the estimator the model carries is kept",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_overwrite_option(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from kdsr.outputs import check_output

    if bool(args.fit) == bool(args.input):
        raise KDSRError("give either -i IMAGES (estimate) or --fit HR_DIR ... -o MODEL (fit)")
    if args.json_path:
        check_output(args.json_path, [args.input] if args.input else [], overwrite=args.overwrite)
    if args.fit and args.output:
        check_output(args.output, model_inputs(args.model), overwrite=args.overwrite)
    from kdsr.model_check import check_model_source

    check_model_source(args.model)  # a file that is no model is refused as such, before torch loads
    return _fit(args) if args.fit else _estimate(args)


def _estimate(args: argparse.Namespace) -> int:
    from kdsr.bundled import default_model_name
    from kdsr.image_io import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, probe_within_limit, read_image
    from kdsr.inference.planning import collect_inputs
    from kdsr.readout.head import describe

    results, failed = {}, []
    paths = collect_inputs(args.input)
    images = [p for p in paths if p.suffix.lower() in IMAGE_EXTENSIONS]
    if len(images) < len(paths):
        print(f"kdsr: skipped {len(paths) - len(images)} file(s) that are not images (by extension)", file=sys.stderr)
    if len(paths) == 1 and images:  # one image: refuse a bad one before the model loads
        probe_within_limit(images[0], DEFAULT_MAX_PIXELS)
    name = args.model or default_model_name()
    estimate = _reader(name)
    if estimate is None:
        raise KDSRError(f"{name} has no degradation estimator; fit one with `kdsr estimate --fit HR_DIR -o FILE`")
    for path in images:
        try:
            results[path.name] = estimate(read_image(path))
        except KDSRError as e:
            failed.append(str(e))
            continue
        print(f"{path.name}: {describe(results[path.name])}")
    if args.json_path:
        report = {"model": name, "images": {image: reading.to_json() for image, reading in results.items()}}
        atomic_write_bytes(Path(args.json_path), (json.dumps(report, indent=2) + "\n").encode())
    for message in failed:
        print(f"kdsr: error: {message}", file=sys.stderr)
    return 1 if failed else 0


def _reader(name: str):
    """``image -> estimate`` of the model's estimator (None when it carries none): its IDR computed by the model's
    graphs where they exist (no torch), else by torch."""
    from kdsr.inference.opening import open_upscaler
    from kdsr.inference.settings import UpscaleSettings

    upscaler = open_upscaler(name, UpscaleSettings())
    if hasattr(upscaler, "degradation_reader"):
        return upscaler.degradation_reader(name)
    from kdsr.insight.estimator import load_estimator

    return load_estimator(name)


def _fit(args: argparse.Namespace) -> int:
    from kdsr.bundled import default_model_name
    from kdsr.checkpoint import load_model
    from kdsr.image_io import list_images
    from kdsr.insight.estimator import FitRanges, fit_head, write_head

    if not args.output:
        raise KDSRError("--fit needs -o MODEL_FILE (the model is written there with its estimator)")
    if not Path(args.output).suffix == ".safetensors":
        raise KDSRError("-o must name a .safetensors file")
    try:
        ranges = FitRanges(sigma=tuple(args.sigma_range), noise=tuple(args.noise_range), jpeg_prob=args.jpeg_prob)
    except ValueError as e:
        raise KDSRError(str(e)) from None
    if args.per_image < 1:
        raise KDSRError("--per-image must be >= 1")
    paths = [p for folder in args.fit for p in list_images(_folder(folder))]
    name = args.model or default_model_name()
    model = load_model(name)
    if args.crop < 0:
        raise KDSRError("--crop must be >= 0")
    progress = not args.quiet and sys.stderr.isatty()
    if args.idr_map:
        return _fit_map(model, name, paths, ranges, args, progress)
    head = fit_head(model, paths, ranges, args.per_image, args.crop, args.seed, feature=args.feature, terms=args.terms,
                    progress=progress)  # fmt: skip
    write_head(name, head, args.output)
    print(f"{args.output}: estimator of {', '.join(head.targets)} fitted on {len(paths)} images")
    for name, error in head.fitted_on.get("cv_mae", {}).items():
        constant = head.fitted_on["constant_mae"][name]
        verdict = "" if error < 0.8 * constant else "  (hardly better than a guess: the IDR barely encodes it)"
        print(f"  {name}: cross-validated MAE {error:.2f}, a constant guess {constant:.2f}{verdict}")
    return 0


def _fit_map(model, name: str, paths: list[Path], ranges, args: argparse.Namespace, progress: bool) -> int:
    from kdsr.insight.estimator import fit_idr_map, write_metadata_entry
    from kdsr.readout.steering import MAP_KEY

    idr_map = fit_idr_map(model, paths, ranges, args.per_image, args.crop, args.seed, progress=progress)
    write_metadata_entry(name, MAP_KEY, idr_map.to_json(), args.output)
    r2 = idr_map.fitted_on.get("cv_r2")
    explained = f" (the degradation explains {r2:.0%} of the IDR's variance)" if r2 is not None else ""
    print(f"{args.output}: IDR map of {', '.join(idr_map.targets)} fitted on {len(paths)} images{explained}")
    return 0


def _folder(name: str) -> Path:
    if not Path(name).is_dir():
        raise KDSRError(f"{name}: not a folder")
    return Path(name)
