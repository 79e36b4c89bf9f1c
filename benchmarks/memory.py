"""Peak memory of tiled CPU upscaling of a large image: ``python benchmarks/memory.py [--size 2000] [--model kdsr-m]``.

Upscales a synthetic SIZExSIZE RGB image x4 with tiling in a fresh process and prints wall time and peak RSS
(target for 2000x2000: under 3 GB). The model's weights are random: memory and time do not depend on them.
"""

from __future__ import annotations

import argparse
import resource
import time
import warnings

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=2000, help="LR side in pixels")
    parser.add_argument("--model", default="kdsr-s", help="preset or model file")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()

    import torch

    from kdsr.errors import UntrainedModelWarning
    from kdsr.inference import Upscaler

    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", UntrainedModelWarning)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    upscaler = Upscaler(args.model, device="cpu", precision="fp32", tile=args.tile)
    start = time.perf_counter()
    out = upscaler.upscale(image)
    elapsed = time.perf_counter() - start
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux: KiB
    print(f"model {args.model}, input {args.size}x{args.size}, output {out.shape[1]}x{out.shape[0]}, tile {args.tile}")
    print(f"wall time {elapsed:.1f} s, peak RSS {peak_gb:.2f} GB (target < 3 GB)")


if __name__ == "__main__":
    main()
