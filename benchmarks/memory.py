"""Peak memory of ``kdsr upscale`` on large images: ``python benchmarks/memory.py [--sizes 1000x1000 1500x1000
3000x2000 4000x3000] [--paths torch fast] [--model kdsr-real-x4] [--extra ...]``.

Each run is a fresh ``kdsr upscale`` process on a synthetic photo-like image (smooth gradients, edges and grain, so
that the PNG compresses like a photo), and its peak RSS is read from the kernel (``wait4``). For each size and path
it prints the peak, the output's 8-bit size, their ratio, the target of issue 36 (500 MB + 2x the output) and the
wall time. ``torch`` is ``--backend torch``; ``fast`` is the default backend on the torch-free path (OpenVINO graphs,
built by a warm-up run first). ``--extra`` adds options to every run (``--extra=--outscale=2``, ``--extra=-t=128``);
``--alpha`` and ``--bits 16`` make RGBA and 16-bit inputs (and so outputs); ``--video N`` makes each input an N-frame
MP4 of such images (the ``video`` extra), whose target counts one output frame.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MB = 1024 * 1024


def synthetic_photo(width: int, height: int, alpha: bool = False, seed: int = 0) -> np.ndarray:
    """A photo-like RGB(A) uint8 image: gradients, discs with hard edges and mild grain."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([x / width, y / height, 0.5 + 0.5 * np.sin((x + y) / 97)], axis=2) * 180 + 30
    for _ in range(12):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(0.05, 0.2) * min(width, height)
        inside = (y - cy) ** 2 + (x - cx) ** 2 < r * r
        image[inside] = rng.uniform(20, 235, 3)
    image += rng.normal(0, 3, image.shape).astype(np.float32)
    out = np.clip(image, 0, 255).astype(np.uint8)
    if alpha:
        a = np.where((x // 64 + y // 64) % 5 == 0, 0, 255).astype(np.uint8)
        out = np.concatenate([out, a[:, :, None]], axis=2)
    return out


def run_upscale(image_path: Path, out_path: Path, backend_args: list[str], extra: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of one ``kdsr upscale`` process."""
    command = [
        sys.executable,
        "-m",
        "kdsr",
        "upscale",
        "-i",
        str(image_path),
        "-o",
        str(out_path),
        "--overwrite",
        "-q",
        *backend_args,
        *extra,
    ]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    error = process.stderr.read().decode(errors="replace").strip()
    process.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"kdsr upscale failed: {error}")
    return usage.ru_maxrss / 1024, elapsed  # Linux: KiB


def write_clip(path: Path, frame: np.ndarray, frames: int) -> None:
    """An MP4 of ``frames`` copies of an RGB frame, each with its own grain (imageio-ffmpeg's binary)."""
    import imageio_ffmpeg

    height, width = frame.shape[:2]
    writer = imageio_ffmpeg.write_frames(str(path), (width, height), fps=24, quality=8, macro_block_size=1)
    writer.send(None)
    rng = np.random.default_rng(1)
    for _ in range(frames):
        writer.send(np.clip(frame + rng.normal(0, 2, frame.shape), 0, 255).astype(np.uint8))
    writer.close()


def output_shape(path: Path) -> tuple[int, int, int]:
    """(width, height, channels) of an output image or video."""
    if path.suffix == ".mp4":
        import imageio_ffmpeg

        meta = next(imageio_ffmpeg.read_frames(str(path)))
        return (*meta["size"], 3)
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # our own output, read for its size
    with Image.open(path) as im:
        return im.width, im.height, len(im.getbands())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["1000x1000", "1500x1000", "3000x2000", "4000x3000"])
    parser.add_argument("--paths", nargs="+", default=["torch", "fast"], choices=["torch", "fast"])
    parser.add_argument("--model", default=None, help="model (default: the bundled default)")
    parser.add_argument("--alpha", action="store_true", help="RGBA inputs")
    parser.add_argument("--bits", type=int, default=8, choices=[8, 16], help="sample depth of the inputs")
    parser.add_argument("--video", type=int, default=0, metavar="N", help="N-frame MP4 inputs instead of PNGs")
    parser.add_argument("--extra", action="append", default=[], help="more kdsr upscale options, e.g. --extra=-t=128")
    args = parser.parse_args()
    model = ["-n", args.model] if args.model else []
    extra = [part for option in args.extra for part in option.split("=", 1)]
    backends = {"torch": ["--backend", "torch"], "fast": []}
    import cv2

    print("| input | path | output | peak RSS | peak / output | target (500 MB + 2x output) | time |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        small = Path(tmp, "warm.png")
        cv2.imwrite(str(small), synthetic_photo(64, 48))
        for path in args.paths:  # the torch-free path needs its graphs: a first run builds them
            run_upscale(small, Path(tmp, "warm_out.png"), [*backends[path], *model], extra)
        for size in args.sizes:
            width, height = (int(v) for v in size.split("x"))
            image = synthetic_photo(width, height, args.alpha)
            if args.bits == 16:
                image = image.astype(np.uint16) * 257
            suffix = ".mp4" if args.video else ".png"
            source = Path(tmp, f"in_{size}{suffix}")
            if args.video:
                write_clip(source, image[:, :, :3], args.video)
            else:
                cv2.imwrite(str(source), image[:, :, [2, 1, 0, 3][: image.shape[2]]])
            del image
            for path in args.paths:
                out = Path(tmp, f"out_{size}{suffix}")
                peak, elapsed = run_upscale(source, out, [*backends[path], *model], extra)
                ow, oh, bands = output_shape(out)
                out_mb = ow * oh * bands / MB  # the 8-bit size, as the target counts it (16-bit outputs too)
                target = 500 + 2 * out_mb
                verdict = "met" if peak <= target else "over"
                print(
                    f"| {size} | {path} | {ow}x{oh} ({out_mb:.0f} MB) | {peak:.0f} MB | {peak / out_mb:.1f}x "
                    f"| {target:.0f} MB, {verdict} | {elapsed:.1f} s |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
