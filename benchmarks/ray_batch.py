"""Batch upscaling on a local Ray cluster against one process (not a test; run it on a quiet CPU).

    python benchmarks/ray_batch.py [--images 200] [--actors 1 2] [-n kdsr-real-x4]

The same folder of 120x80 photos (the sample, shifted and mirrored) is upscaled by ``kdsr upscale`` in one process
(torch, as many threads as the CPU has) and with ``--ray`` on a local cluster of this machine's CPUs with each
actor count given (one thread per actor); printed: wall time, images/s and the overhead per image against one
process (cluster start-up, model shipping and actor start included, as a user pays them).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _images(folder: Path, count: int) -> None:
    import numpy as np

    from kdsr.image_io import read_image, write_image

    sample = read_image(REPO / "assets" / "sample.png")
    folder.mkdir()
    for i in range(count):
        image = np.roll(np.roll(sample, 3 * i, axis=1), i, axis=0)
        write_image(folder / f"{i:04d}.png", image[:, ::-1] if i % 2 else image)


def _timed(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "kdsr", "upscale", *args], check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    parser.add_argument("-n", "--model", default="kdsr-real-x4")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "in"
        _images(source, args.images)
        common = ["-i", str(source), "-n", args.model, "--backend", "torch", "--precision", "fp32", "-q"]
        single = _timed([*common, "-o", str(Path(tmp) / "one")])
        rows = [("one process", single)]
        for actors in args.actors:
            output = str(Path(tmp) / f"ray{actors}")
            rows.append((f"--ray, {actors} actor(s)", _timed([*common, "-o", output, "--ray", "--ray-actors",
                                                               str(actors)])))  # fmt: skip
    print(f"{args.images} images of 120x80, {args.model}, torch fp32, {os.cpu_count()} CPUs")
    print("| run | wall | images/s | overhead per image vs one process |\n|---|---|---|---|")
    for label, seconds in rows:
        overhead = (seconds - single) / args.images * 1000
        print(f"| {label} | {seconds:.1f} s | {args.images / seconds:.2f} | {overhead:+.0f} ms |")


if __name__ == "__main__":
    main()
