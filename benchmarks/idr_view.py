"""How much does estimating the IDR from a bounded view change the result? (not a test)

    python benchmarks/idr_view.py -n STUDENT_CHECKPOINT [--view 256] [--data ../shared/data/Set14]

For every image of the folder and every Gaussian8 sigma, the LR is made as in the paper's protocol; the SR output is
computed with the IDR of the whole LR and with the IDR from its bounded view (``kdsr.inference.tile_plan.view_regions``:
grid cells, one per row and column, at most VIEW x VIEW pixels in all). Printed: mean PSNR (official
convention) of both against the HR, their difference, the relative change of D, and the PSNR between the two
outputs. Images whose LR fits inside the view are identical by construction and counted as such.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--model", required=True, help="trained student checkpoint")
    parser.add_argument("--view", type=int, default=256)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "Set14"))
    args = parser.parse_args()

    from kdsr import load_model
    from kdsr.degradations.classic import degrade
    from kdsr.degradations.kernels import isotropic_gaussian
    from kdsr.evaluation.protocols import GAUSSIAN8_SIGMAS, load_hr
    from kdsr.image_io import list_images
    from kdsr.image_tensor import image_to_tensor, tensor_to_image
    from kdsr.inference import estimate_idr
    from kdsr.metrics import psnr

    model = load_model(args.model)
    full_psnr, view_psnr, d_change, agreement, larger = [], [], [], [], 0
    for path in list_images(args.data):
        hr_image = load_hr(path, model.scale)
        hr = image_to_tensor(hr_image)
        for sigma in GAUSSIAN8_SIGMAS:
            lr = degrade(hr, isotropic_gaussian(sigma)[0], model.scale)
            larger += int(lr.shape[-2] * lr.shape[-1] > args.view * args.view)
            with torch.inference_mode():
                d_full = model.encode(lr).d
                d_view = estimate_idr(model, lr, view=args.view).d
                outs = [model.super_resolve(lr, d).clamp(0, 1) for d in (d_full, d_view)]
            arrays = [tensor_to_image(o) for o in outs]
            full_psnr.append(psnr(arrays[0], hr_image, model.scale))
            view_psnr.append(psnr(arrays[1], hr_image, model.scale))
            d_change.append(((d_view - d_full).norm() / d_full.norm().clamp_min(1e-12)).item())
            mse = ((outs[0] - outs[1]) ** 2).mean().item()
            agreement.append(float("inf") if mse == 0 else -10 * np.log10(mse))
    finite = [a for a in agreement if np.isfinite(a)]
    print(
        f"{args.model}, view {args.view}x{args.view}, {len(full_psnr)} LRs of {Path(args.data).name} "
        f"({larger} larger than the view)"
    )
    print(
        f"  PSNR whole-image IDR {np.mean(full_psnr):.4f} dB, view IDR {np.mean(view_psnr):.4f} dB, "
        f"change {np.mean(view_psnr) - np.mean(full_psnr):+.4f} dB"
    )
    print(f"  relative change of D: mean {np.mean(d_change):.4f}, max {np.max(d_change):.4f}")
    if finite:
        print(f"  PSNR between the two SR outputs where they differ: min {min(finite):.1f} dB")


if __name__ == "__main__":
    main()
