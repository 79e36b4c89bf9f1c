"""The README's comparison images: LR (nearest-neighbour x4), bicubic x4, kdsr x4 and the HR, side by side.

    python scripts/comparison_figure.py [-n kdsr-real-x4] [--images pepper] [--cases clean jpeg40 ...] [-o PNG]

One row per (image, case): a centre crop of the HR (Set14, not used in training) is turned into an LR a quarter its
size by an everyday case of ``kdsr benchmark --protocol everyday`` (clean downscaling, JPEG, blur + noise, camera,
real-world; seeded per row), which is then upscaled three ways with what ``kdsr upscale`` does by default.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
CROP = 192  # HR pixels per side; the LR is CROP / 4
LABEL_HEIGHT = 24


def _label(panel: np.ndarray, text: str) -> np.ndarray:
    strip = np.full((LABEL_HEIGHT, panel.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, text, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, panel], axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--model", default="kdsr-real-x4")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "Set14"))
    parser.add_argument("--images", nargs="+", default=["pepper"], help="file stems in --data")
    parser.add_argument("--cases", nargs="+", default=["clean", "jpeg40", "blur2.0+noise15", "camera", "realworld"])
    parser.add_argument("-o", "--output", default=str(REPO / "docs" / "everyday.png"))
    args = parser.parse_args()

    from kdsr.degradations.recipes import named_lr
    from kdsr.degradations.resize import imresize
    from kdsr.image_io import read_rgb8, write_image
    from kdsr.image_tensor import image_to_tensor, tensor_to_image
    from kdsr.inference import Upscaler

    upscaler = Upscaler(args.model, device="cpu", precision="fp32")
    rows = []
    for seed, (name, case) in enumerate((n, c) for n in args.images for c in args.cases):
        image = read_rgb8(Path(args.data) / f"{name}.png")
        top, left = (image.shape[0] - CROP) // 2, (image.shape[1] - CROP) // 2
        hr = image[top : top + CROP, left : left + CROP]
        lr_t = named_lr(image_to_tensor(hr), case, 4, torch.Generator().manual_seed(seed))
        lr = tensor_to_image(lr_t)
        panels = [
            _label(cv2.resize(lr, (CROP, CROP), interpolation=cv2.INTER_NEAREST), f"{name} {case}: LR"),
            _label(tensor_to_image(imresize(lr_t, 4)), "bicubic x4"),
            _label(upscaler.upscale(lr), f"kdsr ({Path(args.model).stem})"),
            _label(hr, "HR (ground truth)"),
        ]
        rows.append(np.concatenate(panels, axis=1))
    figure = np.concatenate(rows, axis=0)
    write_image(args.output, figure)
    print(f"{args.output}: {figure.shape[1]}x{figure.shape[0]}")


if __name__ == "__main__":
    main()
