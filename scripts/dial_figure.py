"""The README's dial figure: one noisy and one JPEG LR (Urban100 crops, not used in training) upscaled across the
denoise dial, each panel titled with what the model estimated and what it restored as.

    python scripts/dial_figure.py [-n kdsr-real-x4] [--data ../shared/data/Urban100] [-o docs/dials.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
CROP = 192  # HR pixels per side
LABEL_HEIGHT = 40
DENOISE = (0.0, 0.5, 1.0, 1.5)


def _label(panel: np.ndarray, *lines: str) -> np.ndarray:
    strip = np.full((LABEL_HEIGHT, panel.shape[1], 3), 255, np.uint8)
    for i, text in enumerate(lines):
        cv2.putText(strip, text, (4, 15 + 17 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, panel], axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--model", default="kdsr-real-x4")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "Urban100"))
    parser.add_argument("--images", nargs=2, default=["img_004", "img_012"], help="file stems: noisy row, JPEG row")
    parser.add_argument("-o", "--output", default=str(REPO / "docs" / "dials.png"))
    args = parser.parse_args()

    from kdsr.image_io import read_rgb8, write_image
    from kdsr.image_tensor import image_to_tensor, tensor_to_image
    from kdsr.inference import Upscaler
    from kdsr.insight.collect import Degradation

    rows = []
    cases = ((args.images[0], Degradation(1.0, 20.0), "noise 20"), (args.images[1], Degradation(jpeg=40), "JPEG 40"))
    for seed, (name, degradation, case) in enumerate(cases):
        image = read_rgb8(Path(args.data) / f"{name}.png")
        top, left = (image.shape[0] - CROP) // 2, (image.shape[1] - CROP) // 2
        hr = image[top : top + CROP, left : left + CROP]
        lr = tensor_to_image(degradation.apply(image_to_tensor(hr), 4, torch.Generator().manual_seed(seed)))
        panels = [_label(cv2.resize(lr, (CROP, CROP), interpolation=cv2.INTER_NEAREST), f"{name}, {case}", "LR")]
        estimated = None
        for x in DENOISE:
            upscaler = Upscaler(args.model, device="cpu", precision="fp32", denoise=x)
            out = upscaler.upscale(lr)
            reading = upscaler.last_steering  # None at 1: nothing steered, restored as estimated
            estimated = reading.estimated if reading else estimated
            used = f"as noise {reading.used['noise']:.0f}, q {reading.used['jpeg_quality']:.0f}" if reading else "blind"
            panels.append(_label(out, f"denoise {x:g}", used))
        read = f"read: noise {estimated['noise']:.0f}, q {estimated['jpeg_quality']:.0f}"
        panels.append(_label(hr, "HR", read))
        rows.append(np.concatenate(panels, axis=1))
    figure = np.concatenate(rows, axis=0)
    write_image(args.output, figure)
    print(f"{args.output}: {figure.shape[1]}x{figure.shape[0]}")


if __name__ == "__main__":
    main()
