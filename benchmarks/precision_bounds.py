"""How far torch fp16 and bf16 outputs are from fp32, per bundled model (not a test): the bounds the README and the
spandrel descriptor (``supports_half``, ``supports_bfloat16``) state.

    python benchmarks/precision_bounds.py [-n MODEL ...] [--data Set5 Set14]

Each HR image of the folders is made into an LR by bicubic x4 downsampling, and `kdsr upscale`'s whole-image pipeline
runs it on the CPU in fp32, fp16 and bf16; printed per model and precision: the largest absolute difference to fp32
over all output pixels (0-1 scale; one 8-bit level is 0.0039) and the image it occurs in, and the mean.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--model", action="append", help="bundled model or checkpoint (default: every bundled)")
    parser.add_argument(
        "--data", nargs="+", default=[str(REPO.parent / "shared" / "data" / s) for s in ("Set5", "Set14")]
    )
    args = parser.parse_args()

    warnings.simplefilter("ignore")
    import torch

    from kdsr.bundled import bundled_models
    from kdsr.degradations.resize import imresize
    from kdsr.image_io import list_images, read_rgb8
    from kdsr.image_tensor import image_to_tensor
    from kdsr.inference import Upscaler

    paths = [p for folder in args.data for p in list_images(folder)]
    print("| model | precision | max abs difference to fp32 (image) | mean abs difference |")
    print("|---|---|---|---|")
    for model in args.model or list(bundled_models()):
        reference = Upscaler(model, device="cpu", precision="fp32")
        for precision in ("fp16", "bf16"):
            upscaler = Upscaler(model, device="cpu", precision=precision)
            worst, where, total, count = 0.0, "", 0.0, 0
            for path in paths:
                hr = image_to_tensor(read_rgb8(path))
                hr = hr[..., : hr.shape[-2] // 4 * 4, : hr.shape[-1] // 4 * 4]
                lr = imresize(hr, 1 / 4).clamp(0, 1)
                with torch.no_grad():
                    diff = (upscaler.upscale_tensor(lr) - reference.upscale_tensor(lr)).abs()
                if diff.max().item() > worst:
                    worst, where = diff.max().item(), path.stem
                total, count = total + diff.sum().item(), count + diff.numel()
            print(f"| {model} | {precision} | {worst:.4f} ({where}) | {total / count:.5f} |", flush=True)


if __name__ == "__main__":
    main()
