"""Does the SR network use the IDR? Super-resolve each image with its own IDR and with the IDR of the same image
under another degradation, and print how much PSNR the wrong IDR costs (README, "Inside the IDR").

Each HR image (centre crop) is degraded under both settings of each ``--pair`` (kdsr's classic pipeline: blur,
bicubic /4, noise, 8 bits, JPEG; or an everyday case by name). For every LR the output is computed

- with its own IDR (a teacher: its own LR + HR);
- with the IDR of the other setting's LR of the same image ("swapped"): a network that ignores its IDR loses
  nothing, one that relies on it loses a lot;
- with the *known-degradation* IDR ("oracle"): the mean IDR of the same setting over the other images, which carries
  the degradation and none of this image's content: what an exact, content-free estimate would give.

A setting is ``key=value[,key=value]`` with keys ``sigma`` (blur, HR px), ``noise`` (0-255) and ``jpeg`` (quality),
or an everyday case (``clean``, ``jpeg40``, ``camera``, ...).

    python benchmarks/idr_swap.py -n kdsr-real-x4 --data ../shared/data/Urban100 --max-images 10 --crop 256 \\
        --pair sigma=1.2 sigma=3.6 --pair sigma=1 sigma=1,noise=30 --pair clean jpeg=30
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from kdsr.checkpoint import load_model
from kdsr.degradations.recipes import EVERYDAY_CASES
from kdsr.evaluation.protocols import noise_seed
from kdsr.image_io import list_images, read_rgb8
from kdsr.image_tensor import image_to_tensor, tensor_to_image
from kdsr.insight.collect import Degradation, center_crop
from kdsr.metrics.psnr_ssim import psnr
from kdsr.models import KDSRTeacher

SETTING_KEYS = {"sigma": "sigma", "blur": "sigma", "noise": "noise", "jpeg": "jpeg"}


def parse_setting(text: str) -> Degradation:
    """``sigma=1,noise=30`` or an everyday case name -> :class:`Degradation`."""
    if text in EVERYDAY_CASES:
        return Degradation.everyday(text)
    fields = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or key not in SETTING_KEYS:
            raise SystemExit(f"bad setting {text!r}: use sigma=S,noise=N,jpeg=Q or an everyday case")
        fields[SETTING_KEYS[key]] = float(value)
    return Degradation(**fields)


def idr_of(model, lr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    return (model.encode(lr, hr) if isinstance(model, KDSRTeacher) else model.encode(lr)).d


def measure_pair(model, images: list[tuple[str, np.ndarray, torch.Tensor]], settings: list[Degradation]) -> dict:
    """Own / swapped / oracle PSNR of every image under both settings, and the mean output change of the swap."""
    lrs = [
        [s.apply(hr, model.scale, torch.Generator().manual_seed(noise_seed(name, 0, s))) for s in settings]
        for name, _, hr in images
    ]
    with torch.no_grad():
        idrs = [[idr_of(model, lr, hr) for lr in pair] for pair, (_, _, hr) in zip(lrs, images, strict=True)]
        table = torch.stack([torch.cat(pair) for pair in idrs])  # (images, 2, C)
        own, losses, oracle, change = {0: [], 1: []}, {0: [], 1: []}, [], []
        for i, ((_, hr_image, _), pair) in enumerate(zip(images, lrs, strict=True)):
            others = torch.cat([table[:i], table[i + 1 :]]) if len(images) > 1 else table
            for k, lr in enumerate(pair):
                right = model.super_resolve(lr, idrs[i][k])
                wrong = model.super_resolve(lr, idrs[i][1 - k])
                known = model.super_resolve(lr, others[:, k].mean(dim=0, keepdim=True))
                p_right = psnr(tensor_to_image(right), hr_image)
                own[k].append(p_right)
                losses[k].append(p_right - psnr(tensor_to_image(wrong), hr_image))
                oracle.append(psnr(tensor_to_image(known), hr_image) - p_right)
                change.append(float((right - wrong).abs().mean()) * 255)
    return {
        "own": [float(np.mean(own[0])), float(np.mean(own[1]))],
        "swap_loss": float(np.mean(losses[0] + losses[1])),
        "loss_by_direction": [float(np.mean(losses[0])), float(np.mean(losses[1]))],  # LR A with B's IDR, and back
        "worst_loss": float(np.max(losses[0] + losses[1])),
        "oracle_gain": float(np.mean(oracle)),
        "change_levels": float(np.mean(change)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--model", action="append", required=True, help="bundled model or checkpoint")
    parser.add_argument("--data", required=True, help="folder of HR images")
    parser.add_argument("--max-images", type=int, default=20)
    parser.add_argument("--crop", type=int, default=384, help="HR centre crop (0: whole images)")
    parser.add_argument(
        "--pair", nargs=2, action="append", metavar=("A", "B"), help="two settings (default: sigma=1.2 sigma=3.6)"
    )
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()
    pairs = [[parse_setting(a), parse_setting(b)] for a, b in (args.pair or [("sigma=1.2", "sigma=3.6")])]

    images = []
    for path in list_images(args.data)[: args.max_images]:
        hr_image = center_crop(read_rgb8(path), args.crop, 4)
        images.append((path.name, hr_image, image_to_tensor(hr_image)))
    print(f"{len(images)} images of {args.data} ({args.crop or 'whole'} px): PSNR (Y, 4-px border) with the own")
    print("IDR; the loss with the other setting's IDR (mean over images and both directions; then LR A with B's IDR /")
    print("LR B with A's), the mean output change it makes (8-bit levels), and the gain of the known-degradation IDR")
    print("(mean IDR of the setting, other images)\n")
    print("| model | A | B | own IDR A / B | loss with the swapped IDR | A with B's / B with A's | largest loss | "
          "output change | oracle gain |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    results = []
    for name in args.model:
        model = load_model(name).float().eval()
        for settings in pairs:
            r = measure_pair(model, images, settings)
            results.append({"model": name, "a": settings[0].label, "b": settings[1].label, **r})
            print(
                f"| {name} | {settings[0].label} | {settings[1].label} | {r['own'][0]:.2f} / {r['own'][1]:.2f} | "
                f"{r['swap_loss']:.2f} dB | {r['loss_by_direction'][0]:.2f} / {r['loss_by_direction'][1]:.2f} dB | "
                f"{r['worst_loss']:.2f} dB | {r['change_levels']:.2f} | "
                f"{r['oracle_gain']:+.2f} dB |",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
