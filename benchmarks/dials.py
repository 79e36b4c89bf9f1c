"""The degradation dials, measured (README, "Dials"): does ``--denoise`` move the output steadily, and does telling
the truth with ``--assume`` help?

(a) Each HR crop is degraded at blur sigma 1 with noise 0 / 10 / 20 / 30 and upscaled with ``denoise`` X = 0, 0.5,
1, 1.5 (``kdsr upscale``'s pipeline, torch backend, fp32). Printed per noise level and X: the output's fine-detail
energy over the HR's (:func:`kdsr.metrics.detail.high_frequency_ratio`), the residual noise (RMS, 8-bit levels, of
the fine detail of the output minus the blind output of the noise-free LR: what the noise left) and PSNR.

(b) Each crop under known degradations, upscaled blind and with ``assume`` set to the truth: PSNR of both.

    python benchmarks/dials.py -n kdsr-real-x4 --data ../shared/data/Urban100 --max-images 10 --crop 256
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from kdsr.evaluation.protocols import noise_seed
from kdsr.image_io import list_images, read_rgb8
from kdsr.image_tensor import image_to_tensor, tensor_to_image
from kdsr.inference.upscaler import Upscaler
from kdsr.insight.collect import Degradation, center_crop
from kdsr.metrics.detail import detail_energy, high_frequency_ratio
from kdsr.metrics.psnr_ssim import psnr

DENOISE = (0.0, 0.5, 1.0, 1.5)
NOISE_LEVELS = (0.0, 10.0, 20.0, 30.0)
#: (label, degradation, what --assume states)
KNOWN = (
    ("clean", Degradation(), {"noise": 0.0, "jpeg": 100.0}),
    ("noise 10", Degradation(1.0, 10.0), {"noise": 10.0, "jpeg": 100.0}),
    ("noise 20", Degradation(1.0, 20.0), {"noise": 20.0, "jpeg": 100.0}),
    ("noise 30", Degradation(1.0, 30.0), {"noise": 30.0, "jpeg": 100.0}),
    ("JPEG 40", Degradation(jpeg=40), {"noise": 0.0, "jpeg": 40.0}),
    ("JPEG 60", Degradation(jpeg=60), {"noise": 0.0, "jpeg": 60.0}),
    ("JPEG 80", Degradation(jpeg=80), {"noise": 0.0, "jpeg": 80.0}),
    ("blur 2", Degradation(2.0), {"noise": 0.0, "jpeg": 100.0, "blur": 2.0}),
    ("blur 3", Degradation(3.0), {"noise": 0.0, "jpeg": 100.0, "blur": 3.0}),
    ("noise 10, JPEG 60", Degradation(1.0, 10.0, 60), {"noise": 10.0, "jpeg": 60.0}),
)


def residual_noise(sr: np.ndarray, reference: np.ndarray) -> float:
    """RMS (8-bit levels) of the fine detail of ``sr - reference``."""
    difference = np.clip(sr.astype(np.int16) - reference.astype(np.int16) + 128, 0, 255).astype(np.uint8)
    return float(np.sqrt(detail_energy(difference)))


def _lr(hr_tensor: torch.Tensor, name: str, degradation: Degradation) -> np.ndarray:
    generator = torch.Generator().manual_seed(noise_seed(name, 0, degradation))
    return tensor_to_image(degradation.apply(hr_tensor, 4, generator))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--model", default="kdsr-real-x4")
    parser.add_argument("--data", required=True, help="folder of HR images")
    parser.add_argument("--max-images", type=int, default=10)
    parser.add_argument("--crop", type=int, default=256, help="HR centre crop (0: whole images)")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()
    images = []
    for path in list_images(args.data)[: args.max_images]:
        hr = center_crop(read_rgb8(path), args.crop, 4)
        images.append((path.name, hr, image_to_tensor(hr)))
    settings = {"precision": "fp32", "backend": "torch", "tile": 0}
    upscalers = {x: Upscaler(args.model, denoise=x, **settings) for x in DENOISE}
    report: dict = {"model": args.model, "dial": {}, "told": {}}

    print(f"{len(images)} crops of {args.data}, blur sigma 1; per denoise X: fine detail (out / HR), residual noise")
    print("(levels), PSNR\n")
    references = [upscalers[1.0].upscale(_lr(hr_tensor, name, Degradation(1.0))) for name, _, hr_tensor in images]
    print("| noise | " + " | ".join(f"X = {x:g}" for x in DENOISE) + " |")
    print("|---|" + "---|" * len(DENOISE))
    for level in NOISE_LEVELS:
        degradation = Degradation(1.0, level)
        rows = {x: [] for x in DENOISE}
        for (name, hr, hr_tensor), reference in zip(images, references, strict=True):
            lr = _lr(hr_tensor, name, degradation)
            for x, upscaler in upscalers.items():
                sr = upscaler.upscale(lr)
                rows[x].append((high_frequency_ratio(sr, hr), residual_noise(sr, reference), psnr(sr, hr)))
        means = {x: np.mean(v, axis=0).tolist() for x, v in rows.items()}
        report["dial"][f"{level:g}"] = {f"{x:g}": m for x, m in means.items()}
        cells = " | ".join(f"{m[0]:.3f} / {m[1]:.2f} / {m[2]:.2f}" for m in means.values())
        print(f"| {level:g} | {cells} |", flush=True)

    print("\nPSNR blind and with --assume set to the truth\n")
    print("| degradation | blind | told the truth | gain |")
    print("|---|---|---|---|")
    blind_upscaler = upscalers[1.0]
    for label, degradation, assume in KNOWN:
        told_upscaler = Upscaler(args.model, assume=assume, **settings)
        blind, told = [], []
        for name, hr, hr_tensor in images:
            lr = _lr(hr_tensor, name, degradation)
            blind.append(psnr(blind_upscaler.upscale(lr), hr))
            told.append(psnr(told_upscaler.upscale(lr), hr))
        report["told"][label] = {"blind": float(np.mean(blind)), "told": float(np.mean(told))}
        gain = np.mean(told) - np.mean(blind)
        print(f"| {label} | {np.mean(blind):.2f} | {np.mean(told):.2f} | {gain:+.2f} dB |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
