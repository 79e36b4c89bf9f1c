"""``kdsr upscale``: upscale a file or a folder (flags follow Real-ESRGAN's where they exist)."""

from __future__ import annotations

import argparse
import sys

from kdsr.bundled import default_model_name
from kdsr.cli.options import Once, add_calibration_option, add_device_options
from kdsr.constants import (
    ALPHA_UPSAMPLERS,
    BACKENDS,
    BORDER_PAD,
    DEFAULT_CRF,
    DEFAULT_IDR_VIEW,
    DEFAULT_MAX_PIXELS,
    TILE_OVERLAP,
    TILE_PAD,
)
from kdsr.errors import KDSRError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "upscale", help="upscale images", description="Upscale an image file or every image of a folder."
    )
    p.add_argument("-i", "--input", required=True, help="input image, video or folder")
    p.add_argument(
        "-o", "--output", default="results", help="output folder, or file for a single input (default: results)"
    )
    p.add_argument(
        "-n",
        "--model",
        "--model_name",
        dest="model",
        action=Once,
        default=None,
        help=f"bundled model, preset or checkpoint path (default: {default_model_name()})",
    )
    _add_size_options(p)
    _add_network_options(p)
    _add_file_options(p)
    _add_runtime_options(p)
    _add_video_options(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "-v", "--verbose", action="store_true", help="print the degradation estimated for each image (kdsr estimate)"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # argument checks first: a mistake is answered before torch and OpenCV load
    if args.outscale is not None and not args.outscale > 0:
        raise KDSRError(f"outscale must be > 0, got {args.outscale}")
    if not 1 <= args.quality <= 100:
        raise KDSRError(f"--quality must be in 1-100, got {args.quality}")
    if (args.width is not None and args.width < 1) or (args.height is not None and args.height < 1):
        raise KDSRError("--width and --height must be >= 1")
    if args.outscale and (args.width or args.height):
        raise KDSRError("give -s or --width/--height, not both")
    settings = _settings(args)  # a bad setting (--assume, --denoise, --tile, ...) is answered here
    from kdsr.inference.planning import is_video, plan_outputs

    plan = plan_outputs(  # inputs, output names and refusals, before torch and the model load
        args.input,
        args.output,
        suffix=args.suffix,
        ext=args.ext,
        overwrite=args.overwrite,
        skip_existing=args.skip_existing,
        recursive=args.recursive,
    )
    if len(plan.jobs) == 1 and not is_video(plan.jobs[0][0]):  # one image: refuse a bad one before loading the model
        from kdsr.image_io import probe_within_limit

        probe_within_limit(plan.jobs[0][0], args.max_pixels)
    from kdsr.detail import with_detail
    from kdsr.model_check import check_model_source

    args.model = with_detail(args.model, args.detail)  # D > 0: a blend of the model and its sharp partner, cached
    check_model_source(args.model)  # a file that is no model is refused before torch loads
    if args.ray is not None:
        return _report(_run_on_ray(args, plan, settings))
    from kdsr.heap import release_large_buffers
    from kdsr.inference.fastpath import FastUpscaler
    from kdsr.inference.files import upscale_files
    from kdsr.inference.opening import open_upscaler

    release_large_buffers()

    upscaler = open_upscaler(args.model, settings, video=any(is_video(path) for path, _ in plan.jobs))
    fast = upscaler if isinstance(upscaler, FastUpscaler) else None
    if args.verbose:
        path = " (torch-free path)" if fast else ""
        where = f"{upscaler.backend_name}{path}, {upscaler.device_name}, {upscaler.precision}"
        print(f"kdsr: backend {where}", file=sys.stderr)
    video = None
    if any(is_video(path) for path, _ in plan.jobs):
        from kdsr.inference.video import VideoSettings

        video = VideoSettings(crf=args.crf, codec=args.codec, idr_per_frame=args.idr_per_frame)
    result = upscale_files(
        args.input,
        args.output,
        upscaler,
        outscale=args.outscale,
        progress=None if not args.quiet else False,
        overwrite=args.overwrite,
        max_pixels=args.max_pixels,
        on_image=_degradation_reporter(args.model, fast, upscaler.steerer) if args.verbose else None,
        video=video,
        quality=args.quality,
        width=args.width,
        height=args.height,
        plan=plan,
    )
    return _report(result)


def _report(result) -> int:
    """The run's outputs on stdout, skips, failures and the summary on stderr; the exit status."""
    for path in result.written:
        print(path)
    for _, message in result.skipped:
        print(f"kdsr: skipped {message}", file=sys.stderr)
    if len(result.failed) == 1 and not result.written and not result.skipped:  # one input: one line
        print(f"kdsr: error: {result.failed[0][1]}", file=sys.stderr)
    elif result.failed:
        print(f"kdsr: error: {len(result.failed)} file(s) failed, {len(result.written)} written:", file=sys.stderr)
        for _, message in result.failed:
            print(f"  {message}", file=sys.stderr)
    if len(result.written) + len(result.failed) + len(result.skipped) > 1 or result.frames:
        print(f"kdsr: {result.summary()}", file=sys.stderr)
    return 1 if result.failed else 0


def _settings(args: argparse.Namespace):
    """The run's :class:`~kdsr.inference.settings.UpscaleSettings` (``--detail`` is blended into the model file
    before, so it is 0 here)."""
    from kdsr.inference.settings import UpscaleSettings

    return UpscaleSettings(
        device=args.device, precision="fp32" if args.fp32 else args.precision, backend=args.backend,
        tile=args.tile, tile_pad=args.tile_pad, tile_overlap=args.tile_overlap, idr_view=args.idr_view,
        border_pad=args.border_pad, fix_color=args.fix_color, alpha_upsampler=args.alpha_upsampler,
        calibration=args.calibration, assume=args.assume, denoise=args.denoise,
    )  # fmt: skip


def _run_on_ray(args: argparse.Namespace, plan, settings):
    """``--ray``: the plan's images upscaled by Ray actors (:mod:`kdsr.inference.ray_batch`)."""
    from kdsr.bundled import model_file
    from kdsr.inference.files import ImageJob, taken_paths
    from kdsr.inference.ray_batch import WorkerSettings, upscale_plan_on_ray

    path = model_file(args.model or default_model_name())
    if not path.is_file():
        raise KDSRError(f"--ray ships a model file to its workers: {path} is not one (a bundled model or checkpoint)")
    job = ImageJob(
        args.outscale, args.overwrite, args.max_pixels, args.quality, args.width, args.height, taken_paths(plan)
    )
    address = None if args.ray == "local" else args.ray
    return upscale_plan_on_ray(plan, path, WorkerSettings(settings, job, args.ray_threads), address, args.ray_actors)


def _degradation_reporter(model: str | None, fast=None, steerer=None):
    """``-v``: print the degradation the model's estimator reads off each image (stderr; stdout lists outputs); on the
    torch-free path (``fast``) its graphs compute the IDR; with a ``steerer`` (--assume / --denoise) also what the
    image is restored as."""
    from kdsr.readout.head import describe

    name = model or default_model_name()
    if fast is not None:
        estimate = fast.degradation_reader(name)
    else:
        from kdsr.insight.estimator import load_estimator

        estimate = load_estimator(name)
    if estimate is None:
        print(f"kdsr: {name} has no degradation estimator (kdsr estimate --fit)", file=sys.stderr)
        return None

    def report(path, image) -> None:
        reading = estimate(image)
        told = f"; {steerer.describe_told(reading)}" if steerer is not None else ""
        print(f"{path.name}: {describe(reading)}{told}", file=sys.stderr)

    return report


def _add_size_options(parser: argparse.ArgumentParser) -> None:
    """The final size: the model's scale, -s, or --width/--height."""
    parser.add_argument(
        "-s", "--outscale", type=float, default=None, help="final scale, if not the model's (resized after)"
    )
    parser.add_argument("--width", type=int, default=None, help="final width in pixels; the height follows")
    parser.add_argument(
        "--height", type=int, default=None, help="final height in pixels; the width follows the aspect ratio"
    )


def _add_network_options(parser: argparse.ArgumentParser) -> None:
    """How the network sees the image: tiles, the IDR's view, border padding, the colour fix."""
    parser.add_argument(
        "-t",
        "--tile",
        type=int,
        default=None,
        help="LR tile size in pixels, 0 for the whole image (default: 512 on CUDA, 256 otherwise)",
    )
    parser.add_argument(
        "--tile-pad",
        "--tile_pad",
        dest="tile_pad",
        type=int,
        default=TILE_PAD,
        help=f"context pixels per tile side (default {TILE_PAD})",
    )
    parser.add_argument(
        "--tile-overlap",
        "--tile_overlap",
        dest="tile_overlap",
        type=int,
        default=TILE_OVERLAP,
        help=f"pixels shared and blended between adjacent tiles (default {TILE_OVERLAP})",
    )
    parser.add_argument(
        "--idr-view",
        dest="idr_view",
        type=int,
        default=DEFAULT_IDR_VIEW,
        help=f"estimate the IDR from at most NxN LR pixels, grid cells spread over larger images (0: whole image; "
        f"default {DEFAULT_IDR_VIEW})",
    )
    parser.add_argument(
        "--border-pad",
        dest="border_pad",
        type=int,
        default=BORDER_PAD,
        help=f"LR pixels of edge replication around the image before the network, so that borders are not smudged "
        f"(default {BORDER_PAD}; 0: the network's own zero padding)",
    )
    parser.add_argument(
        "--assume",
        default=None,
        metavar="noise=N,jpeg=Q,blur=S",
        help="what you know of the degradation (any of: noise level 0-50 on the 0-255 scale, JPEG quality, blur sigma "
        "in HR pixels); the rest is estimated. Restores as if the image had exactly that",
    )
    parser.add_argument(
        "--denoise",
        type=float,
        default=None,
        help="how strongly noise and JPEG artefacts are removed: 1 as estimated (default), 0 keeps them (grain), up "
        "to 2 stronger; -v prints what was estimated and what was restored",
    )
    parser.add_argument(
        "--detail",
        type=float,
        default=0.0,
        metavar="D",
        help="fine detail, 0-1: 0 the faithful model (default), 1 its sharp GAN partner, between a blend of their "
        "weights (kdsr-real-x4 and kdsr-real-x4-gan)",
    )
    parser.add_argument(
        "--no-color-fix",
        dest="fix_color",
        action="store_false",
        help="do not keep the output's colours and low frequencies on the input's (the raw network output)",
    )


def _add_file_options(parser: argparse.ArgumentParser) -> None:
    """Which inputs are read and how outputs are named, written and protected."""
    parser.add_argument(
        "-r",
        "--recursive",
        action="store_true",
        help="also the sub-folders of a folder input; the output folder mirrors the tree (hidden files and folders "
        "are left out)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace output files that exist (never an input)")
    parser.add_argument(
        "--skip-existing",
        dest="skip_existing",
        action="store_true",
        help="leave inputs whose output exists alone (to continue an interrupted folder run)",
    )
    parser.add_argument(
        "--max-pixels",
        dest="max_pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help=f"refuse input images larger than this, read from the file header before decoding "
        f"(default {DEFAULT_MAX_PIXELS:,})",
    )
    parser.add_argument("--suffix", default="out", help="suffix of output file names (default: out)")
    parser.add_argument(
        "--ext",
        default="auto",
        choices=["auto", "png", "jpg", "webp"],
        help="output format (default: auto, the input's)",
    )
    parser.add_argument("--quality", type=int, default=95, help="JPEG/WebP output quality, 1-100 (default 95)")


def _add_runtime_options(parser: argparse.ArgumentParser) -> None:
    """Where and how the network runs: device, precision, backend, alpha."""
    add_device_options(parser, openvino=True)
    parser.add_argument("--fp32", action="store_true", help="same as --precision fp32")
    parser.add_argument(
        "--alpha-upsampler",
        "--alpha_upsampler",
        dest="alpha_upsampler",
        default="kdsr",
        choices=ALPHA_UPSAMPLERS,
        help="how the alpha channel is upscaled (default: kdsr)",
    )
    parser.add_argument(
        "--backend",
        default="auto",
        choices=["auto", *BACKENDS],
        help="auto (default): OpenVINO on an x86 CPU when installed, else torch; -v says which. openvino: OpenVINO's "
        "CPU runtime (kdsr[openvino]) on any model, --precision fp32, bf16 or int8 (auto: fp32); its graphs are "
        "written on a model's first run (from the weights of kdsr's own model files; other checkpoints are exported "
        "with torch) and cached, and runs on them never import torch (answering in about a second). onnx: run a "
        "`kdsr export` with onnxruntime on the CPU: a --split folder (tiled, as torch) or a "
        ".onnx file (whole images). torch: PyTorch (any device, fp16)",
    )
    add_calibration_option(parser)
    ray = parser.add_argument_group("Ray cluster (the ray extra)")
    ray.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="upscale the images with Ray actors, one loaded model each: on the cluster at ADDRESS (e.g. "
        "ray://head:10001 or auto), or on a local one started for the run; inputs and outputs must be on a "
        "filesystem the workers share",
    )
    ray.add_argument("--ray-actors", dest="ray_actors", type=int, default=None,
                     help="actors (default: one per GPU, else one per --ray-threads CPUs of the cluster)")  # fmt: skip
    ray.add_argument("--ray-threads", dest="ray_threads", type=int, default=1,
                     help="CPU threads per CPU actor (default 1)")  # fmt: skip


def _add_video_options(parser: argparse.ArgumentParser) -> None:
    video = parser.add_argument_group("video (.mp4 .mov .mkv .webm .avi; needs the video extra)")
    video.add_argument(
        "--crf", type=int, default=DEFAULT_CRF, help=f"constant quality, lower is better (default {DEFAULT_CRF})"
    )
    video.add_argument("--codec", default=None, help="ffmpeg video encoder (default: libx264, libvpx-vp9 for .webm)")
    video.add_argument(
        "--idr-per-frame",
        dest="idr_per_frame",
        action="store_true",
        help="estimate the IDR for every frame (footage whose degradation changes; may flicker) instead of once "
        "per video",
    )
