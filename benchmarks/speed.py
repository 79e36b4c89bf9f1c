"""Inference speed of kdsr against a reference implementation of the official forward pass (not a test).

    python benchmarks/speed.py [--model kdsr-m] [--runs 5] [--weights CKPT] [--skip-large]

The reference (:mod:`kdsr.reference`) computes the way the official code does: MeanShift as frozen 1x1 convs,
the dynamic depthwise conv as one grouped conv over B*C groups on a reshaped (1, B*C, H, W) tensor, NCHW tensors,
the encoder on the whole image, and for the large size the official ``forward_chop`` (recursive quadrants, shave
10, min_size 160000, one IDR per quadrant). Both get the same weights (random, or ``--weights``). Printed: median
latencies (after one warm-up), ratios reference/ours, output agreement, bf16 quality on Set14 LRs, onnxruntime
latency, and peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]


def ref_forward_chop(model: nn.Module, x: torch.Tensor, shave: int = 10, min_size: int = 160000) -> torch.Tensor:
    """The official ``Model.forward_chop``: 4 overlapping quadrants, recursively, each a full forward pass."""
    scale = 4
    b, c, h, w = x.size()
    h_half, w_half = h // 2, w // 2
    h_size, w_size = h_half + shave, w_half + shave
    parts = [
        x[:, :, 0:h_size, 0:w_size],
        x[:, :, 0:h_size, (w - w_size) : w],
        x[:, :, (h - h_size) : h, 0:w_size],
        x[:, :, (h - h_size) : h, (w - w_size) : w],
    ]
    if w_size * h_size < min_size:
        outs = [model(p) for p in parts]
    else:
        outs = [ref_forward_chop(model, p, shave, min_size) for p in parts]
    h, w, h_half, w_half, h_size, w_size = (scale * v for v in (h, w, h_half, w_half, h_size, w_size))
    out = x.new(b, c, h, w)
    out[:, :, 0:h_half, 0:w_half] = outs[0][:, :, 0:h_half, 0:w_half]
    out[:, :, 0:h_half, w_half:w] = outs[1][:, :, 0:h_half, (w_size - w + w_half) : w_size]
    out[:, :, h_half:h, 0:w_half] = outs[2][:, :, (h_size - h + h_half) : h_size, 0:w_half]
    out[:, :, h_half:h, w_half:w] = outs[3][:, :, (h_size - h + h_half) : h_size, (w_size - w + w_half) : w_size]
    return out


# ----- measurement helpers -----
def timed(fn, runs: int):
    """(median milliseconds over ``runs`` calls after one warm-up, the warm-up's output)."""
    output = fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), output


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a.clamp(0, 1) - b.clamp(0, 1)) ** 2).mean().item()
    return float("inf") if mse == 0 else -10 * np.log10(mse)


def set14_lrs(limit: int) -> list[torch.Tensor]:
    """Gaussian8-style LRs (sigma 2.6) of Set14 from ../shared, if present."""
    from kdsr.degradations.classic import degrade
    from kdsr.degradations.kernels import isotropic_gaussian
    from kdsr.evaluation.protocols import load_hr
    from kdsr.image_io import list_images
    from kdsr.image_tensor import image_to_tensor

    folder = REPO.parent / "shared" / "data" / "Set14"
    if not folder.is_dir():
        return []
    lrs = []
    for path in list_images(folder)[:limit]:
        hr = image_to_tensor(load_hr(path, 4))
        lrs.append(degrade(hr, isotropic_gaussian(2.6)[0], 4))
    return lrs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="kdsr-m", help="preset (random weights) unless --weights is given")
    parser.add_argument("--weights", help="a student checkpoint to use instead of random weights")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--skip-large", action="store_true", help="skip the 720x1280 measurements")
    parser.add_argument("--only-large", action="store_true", help="only the 720x1280 measurements")
    parser.add_argument("--tile", type=int, help="our LR tile size at 720x1280 (default: the Upscaler's on CPU)")
    parser.add_argument("--tile-pad", type=int, help="context pixels around each tile (default: the Upscaler's)")
    parser.add_argument(
        "--idr-view", type=int, help="LR pixels per side the IDR is estimated from (default: the Upscaler's; 0: all)"
    )
    args = parser.parse_args()

    from kdsr import create_model, load_model
    from kdsr.export import OnnxStudent, export_onnx
    from kdsr.inference import Upscaler
    from kdsr.reference import ReferenceStudent

    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    model = load_model(args.weights) if args.weights else create_model(args.model).eval()
    c = model.config
    reference = ReferenceStudent(c.n_feats, c.n_blocks, c.n_resblocks).eval()
    reference.load_state_dict(model.state_dict())
    print(
        f"model {args.weights or args.model} (C={c.n_feats} N={c.n_blocks} R={c.n_resblocks}), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, runs {args.runs} (median)"
    )
    # whole image and whole-image IDR, as the reference: the outputs must agree to float rounding
    ours32 = Upscaler(model, device="cpu", precision="fp32", tile=0, idr_view=0)
    ours16 = Upscaler(model, device="cpu", precision="bf16", tile=0, idr_view=0)

    if not args.only_large:
        lr = torch.rand(1, 3, 180, 320, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            t_ref, ref_out = timed(lambda: reference(lr), args.runs)
            t_32, out_32 = timed(lambda: ours32.upscale_tensor(lr), args.runs)
            t_16, _ = timed(lambda: ours16.upscale_tensor(lr), args.runs)
            diff = (out_32 - ref_out.clamp(0, 1)).abs().max().item()
        with tempfile.TemporaryDirectory() as tmp:
            export_onnx(model, Path(tmp) / "m.onnx")
            runner = OnnxStudent(Path(tmp) / "m.onnx")
            t_onnx, onnx_out = timed(lambda: runner(lr), args.runs)
            onnx_diff = (onnx_out - ref_out).abs().max().item()
        print("\nLR 180x320 (x4 -> 720x1280), whole image")
        print(f"  reference fp32      {t_ref:9.1f} ms")
        print(f"  kdsr fp32           {t_32:9.1f} ms   ratio {t_ref / t_32:.2f}x   max|diff| vs reference {diff:.1e}")
        print(f"  kdsr bf16           {t_16:9.1f} ms   ratio {t_ref / t_16:.2f}x (vs reference fp32)")
        print(
            f"  onnxruntime fp32    {t_onnx:9.1f} ms   ratio {t_ref / t_onnx:.2f}x   "
            f"max|diff| vs reference {onnx_diff:.1e}"
        )

        lrs = set14_lrs(14)
        if lrs:
            with torch.inference_mode():
                values = [psnr(ours16.upscale_tensor(x), ours32.upscale_tensor(x)) for x in lrs]
            print(
                f"  bf16 vs fp32 output on {len(lrs)} Set14 LRs (sigma 2.6): PSNR min {min(values):.1f} dB, "
                f"mean {np.mean(values):.1f} dB"
            )
        else:
            print("  (../shared/data/Set14 not found: bf16 quality check skipped)")

    if not args.skip_large:
        big = torch.rand(1, 3, 720, 1280, generator=torch.Generator().manual_seed(1))
        given = {"tile": args.tile, "tile_pad": args.tile_pad, "idr_view": args.idr_view}
        settings = {k: v for k, v in given.items() if v is not None}
        tiled32 = Upscaler(model, device="cpu", precision="fp32", **settings)
        tiled16 = Upscaler(model, device="cpu", precision="bf16", **settings)
        with torch.inference_mode():
            t_ref_big, ref_big = timed(lambda: ref_forward_chop(reference, big), args.runs)
            t_32_big, ours_big = timed(lambda: tiled32.upscale_tensor(big), args.runs)
            t_16_big, _ = timed(lambda: tiled16.upscale_tensor(big), args.runs)
            agreement = psnr(ours_big, ref_big)
        print(
            f"\nLR 720x1280 (x4 -> 2880x5120), tiled: reference = official forward_chop; kdsr = tile {tiled32.tile}, "
            f"pad {tiled32.tile_pad}, overlap {tiled32.tile_overlap}, one IDR per image from a {tiled32.idr_view} view "
            "(0: whole image)"
        )
        print(f"  reference fp32      {t_ref_big:9.1f} ms")
        print(
            f"  kdsr fp32           {t_32_big:9.1f} ms   ratio {t_ref_big / t_32_big:.2f}x   "
            f"PSNR vs reference {agreement:.1f} dB (IDR per image vs per quadrant)"
        )
        print(f"  kdsr bf16           {t_16_big:9.1f} ms   ratio {t_ref_big / t_16_big:.2f}x (vs reference fp32)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"\npeak RSS {peak:.2f} GB")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
