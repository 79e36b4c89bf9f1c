"""Does the SR network use the IDR? Super-resolve each image with its own IDR and with the IDR of the same image
under another blur, and print how much PSNR the wrong IDR costs (README, "Inside the IDR").

Each HR image (centre crop) is degraded by kdsr's classic pipeline at two blur widths (default sigma 1.2 and 3.6);
the output for each LR is computed with the IDR of its own LR (a teacher: its own LR + HR) and with the IDR of the
other LR of the same image. A network that ignores the IDR loses nothing; one that relies on it loses a lot.

    python benchmarks/idr_swap.py -n kdsr-iso-x4 -n checkpoints/iso-energy-teacher.safetensors \
        --data ../shared/data/Urban100 --max-images 20 --crop 384
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from kdsr.checkpoint import load_model
from kdsr.degradations import classic
from kdsr.degradations.kernels import isotropic_gaussian
from kdsr.image_io import list_images, read_rgb8
from kdsr.image_tensor import image_to_tensor, tensor_to_image
from kdsr.insight.collect import center_crop
from kdsr.metrics.psnr_ssim import psnr
from kdsr.models import KDSRTeacher


def idr_of(model, lr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    return (model.encode(lr, hr) if isinstance(model, KDSRTeacher) else model.encode(lr)).d


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--model", action="append", required=True, help="bundled model or checkpoint")
    parser.add_argument("--data", required=True, help="folder of HR images")
    parser.add_argument("--max-images", type=int, default=20)
    parser.add_argument("--crop", type=int, default=384, help="HR centre crop (0: whole images)")
    parser.add_argument("--sigmas", type=float, nargs=2, default=[1.2, 3.6])
    args = parser.parse_args()

    paths = list_images(args.data)[: args.max_images]
    pairs = []
    for path in paths:
        image = read_rgb8(path)
        hr_image = center_crop(image, args.crop or max(image.shape), 4)
        hr = image_to_tensor(hr_image)
        lrs = [classic.degrade(hr, isotropic_gaussian(torch.tensor([s]))) for s in args.sigmas]
        pairs.append((hr_image, hr, lrs))
    a, b = args.sigmas
    print(f"{len(paths)} images of {args.data}, sigma {a:g} and {b:g}: PSNR (Y, 4-px border) with the own IDR, and")
    print("the loss when the other blur's IDR is used instead (mean over images and both directions)\n")
    print(f"| model | own IDR sigma {a:g} | own IDR sigma {b:g} | loss with the swapped IDR | largest loss |")
    print("|---|---|---|---|---|")
    for name in args.model:
        model = load_model(name).float().eval()
        own = {a: [], b: []}
        losses = []
        with torch.no_grad():
            for hr_image, hr, lrs in pairs:
                idrs = [idr_of(model, lr, hr) for lr in lrs]
                for i, (sigma, lr) in enumerate(zip(args.sigmas, lrs, strict=True)):
                    right = psnr(tensor_to_image(model.super_resolve(lr, idrs[i])), hr_image)
                    wrong = psnr(tensor_to_image(model.super_resolve(lr, idrs[1 - i])), hr_image)
                    own[sigma].append(right)
                    losses.append(right - wrong)
        print(
            f"| {name} | {np.mean(own[a]):.2f} | {np.mean(own[b]):.2f} | {np.mean(losses):.2f} dB | "
            f"{np.max(losses):.2f} dB |",
            flush=True,
        )


if __name__ == "__main__":
    main()
