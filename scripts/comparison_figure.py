"""The README's comparison image: LR (nearest-neighbour x4), bicubic x4, kdsr x4 and the HR, side by side.

    python scripts/comparison_figure.py [-n kdsr-real-x4] [--data ../shared/data/Set14] [-o docs/comparison.png]

For each image a centre crop of the HR (Set14, not used in training) is degraded with the real-world pipeline
(`kdsr degrade --realworld`, seeded per row) to an LR a quarter its size, which is then upscaled three ways.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
IMAGES = ("zebra", "comic", "monarch")
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
    parser.add_argument("-o", "--output", default=str(REPO / "docs" / "comparison.png"))
    args = parser.parse_args()

    from kdsr.degradations import realworld
    from kdsr.degradations.resize import imresize
    from kdsr.image_io import read_rgb8, write_image
    from kdsr.image_tensor import image_to_tensor, tensor_to_image
    from kdsr.inference import Upscaler

    upscaler = Upscaler(args.model, device="cpu", precision="fp32")
    rows = []
    for seed, name in enumerate(IMAGES):
        image = read_rgb8(Path(args.data) / f"{name}.png")
        top, left = (image.shape[0] - CROP) // 2, (image.shape[1] - CROP) // 2
        hr = image[top : top + CROP, left : left + CROP]
        hr_t = image_to_tensor(hr)
        lr_t = realworld.degrade(hr_t, scale=4, generator=torch.Generator().manual_seed(seed))
        lr = tensor_to_image(lr_t)
        bicubic = tensor_to_image(imresize(lr_t, 4))
        panels = [
            _label(cv2.resize(lr, (CROP, CROP), interpolation=cv2.INTER_NEAREST), f"{name}: LR (nearest x4)"),
            _label(bicubic, "bicubic x4"),
            _label(upscaler.upscale(lr), f"kdsr ({Path(args.model).stem})"),
            _label(hr, "HR (ground truth)"),
        ]
        rows.append(np.concatenate(panels, axis=1))
    figure = np.concatenate(rows, axis=0)
    write_image(args.output, figure)
    print(f"{args.output}: {figure.shape[1]}x{figure.shape[0]}")


if __name__ == "__main__":
    main()
