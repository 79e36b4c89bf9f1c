"""What ComfyUI's built-in "Upscale Image (using Model)" costs a KDSR model: that node cuts every image into 512-px LR
tiles with 32 px of overlap, runs the model on each alone and feathers the overlaps (linear ramps), whatever the model
says about tiling; so each tile gets its own IDR (and its own border padding and colour fix). This compares it with
the whole-image pipeline (``kdsr upscale``, what kdsr's own ComfyUI node runs) on photos whose degradation is uniform
and on photos whose left half is noisy and right half clean (the photos themselves are the LRs: a 1024x768 photo
is 3 x 2 of ComfyUI's tiles), and reports the largest and mean difference (8-bit levels) and the share of output
pixels more than one level apart. On the half-noisy photos it also reports, for each half, how far each method's
output lies from the whole-image output of the photo without noise (mean level difference): on the noisy half, the
noise left; on the clean half, what the noisy half's estimate did to it.

    python benchmarks/comfyui_tiles.py --data ../shared/data/Urban100 --max-images 4
"""

from __future__ import annotations

import argparse

import numpy as np

from kdsr.image_io import list_images, read_rgb8
from kdsr.inference.opening import open_upscaler
from kdsr.inference.settings import UpscaleSettings

#: ComfyUI's ImageUpscaleWithModel: LR tile and overlap (pixels)
COMFY_TILE, COMFY_OVERLAP = 512, 32


def comfy_tiled(upscale, lr: np.ndarray, scale: int, tile: int = COMFY_TILE, overlap: int = COMFY_OVERLAP):
    """The image upscaled tile by tile as ComfyUI's node does it: tiles every ``tile - overlap`` pixels (the last one
    pulled back inside the image), each upscaled alone, weighted by a mask that ramps linearly over the
    ``overlap * scale`` output pixels at each of its edges, and the weighted sum normalised."""
    height, width = lr.shape[:2]
    out = np.zeros((height * scale, width * scale, 3), np.float64)
    weight = np.zeros((height * scale, width * scale, 1), np.float64)
    feather = overlap * scale
    for top in range(0, height, tile - overlap):
        for left in range(0, width, tile - overlap):
            y, x = max(0, min(height - overlap, top)), max(0, min(width - overlap, left))
            part = upscale(lr[y : y + tile, x : x + tile]).astype(np.float64)
            h, w = part.shape[:2]
            mask = np.ones((h, w, 1))
            for t in range(feather):
                ramp = (t + 1) / feather
                mask[t] *= ramp
                mask[h - 1 - t] *= ramp
                mask[:, t] *= ramp
                mask[:, w - 1 - t] *= ramp
            out[y * scale : y * scale + h, x * scale : x * scale + w] += part * mask
            weight[y * scale : y * scale + h, x * scale : x * scale + w] += mask
    return np.clip(np.rint(out / weight), 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder of HR photos")
    parser.add_argument("--max-images", type=int, default=4)
    parser.add_argument("-n", "--model", default=None)
    args = parser.parse_args()
    upscaler = open_upscaler(args.model, UpscaleSettings())
    scale, rng = upscaler.scale, np.random.default_rng(0)
    print("| photo (LR) | LR size | LR | ComfyUI tiles vs whole image: largest / mean difference (levels) | pixels > 1 "
          "level apart | from the noise-free output, noisy / clean half: whole | tiles |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for path in list_images(args.data)[: args.max_images]:
        lr = read_rgb8(path)
        noisy = lr.astype(np.float64)
        half = lr.shape[1] // 2
        noisy[:, :half] += rng.normal(0, 15, noisy[:, :half].shape)
        reference = None
        for label, image in (("as it is", lr), ("left half + noise 15", np.clip(np.rint(noisy), 0, 255))):
            image = image.astype(np.uint8)
            whole = upscaler.upscale(image)
            tiled = comfy_tiled(upscaler.upscale, image, scale)
            difference = np.abs(whole.astype(int) - tiled)
            halves = ["", ""]
            if reference is None:
                reference = whole.astype(int)
            else:
                for k, out in enumerate((whole, tiled)):
                    gap = np.abs(out.astype(int) - reference)
                    halves[k] = f"{gap[:, : half * scale].mean():.2f} / {gap[:, half * scale :].mean():.2f}"
            print(
                f"| {path.name} | {image.shape[1]}x{image.shape[0]} | {label} | {difference.max()} / "
                f"{difference.mean():.3f} | {np.mean(difference > 1):.2%} | {halves[0]} | {halves[1]} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
