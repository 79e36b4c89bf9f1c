"""Inference speed of kdsr's engines against a reference implementation of the official forward pass (not a test).

    python benchmarks/speed.py [--model kdsr-m] [--runs 5] [--weights CKPT] [--skip-large] [--no-openvino]

The reference (``tests/reference.py``, a test oracle kept out of the package) computes the way the official code
does: MeanShift as frozen 1x1 convs, the dynamic depthwise conv as one grouped conv over B*C groups on a reshaped
(1, B*C, H, W) tensor, NCHW tensors, the encoder on the whole image, and for the large size the official
``forward_chop`` (recursive quadrants, shave 10, min_size 160000, one IDR per quadrant). Both get the same weights
(random, or ``--weights``). Printed: median
latencies (after one warm-up) of every engine (torch fp32/bf16, onnxruntime on the split graphs, OpenVINO fp32, bf16
and INT8; all through kdsr's Upscaler and its one tiling path), ratios reference/engine, achieved GFLOP/s next to
this CPU's measured peaks (matmul and a 64->64 3x3 conv, fp32 and bf16), output agreement, and peak RSS. OpenVINO's
exports and the INT8 quantisation (default calibration) are built inside the run, before the timing.
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


def machine_peaks(height: int, width: int, runs: int) -> dict[str, float]:
    """This CPU's measured limits (GFLOP/s): a 2048^3 matmul and one 64->64 3x3 convolution (channels_last) at the
    LR size, in fp32 and bf16: what each engine's achieved GFLOP/s is compared with."""
    import torch.nn.functional as F

    peaks = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.rand(2048, 2048, dtype=dtype), torch.rand(2048, 2048, dtype=dtype)
        peaks[f"matmul {name}"] = 2 * 2048**3 / timed(lambda a=a, b=b: a @ b, runs)[0] / 1e6
        x = torch.rand(1, 64, height, width, dtype=dtype).contiguous(memory_format=torch.channels_last)
        w = torch.rand(64, 64, 3, 3, dtype=dtype).contiguous(memory_format=torch.channels_last)
        conv_flops = 2 * 64 * 64 * 9 * height * width
        peaks[f"conv {name}"] = conv_flops / timed(lambda x=x, w=w: F.conv2d(x, w, padding=1), runs)[0] / 1e6
    return peaks


def engines(model, work: Path, settings: dict, with_openvino: bool) -> dict:
    """kdsr's engines on one model, each an Upscaler with ``settings`` (whole image or tiled)."""
    from kdsr.inference import Upscaler

    found = {
        "kdsr torch fp32": Upscaler(model, device="cpu", precision="fp32", **settings),
        "kdsr torch bf16": Upscaler(model, device="cpu", precision="bf16", **settings),
        "onnxruntime fp32 (split graphs)": Upscaler(str(work / "split"), backend="onnx", **settings),
    }
    if with_openvino:
        for precision in ("fp32", "bf16", "int8"):
            found[f"OpenVINO {precision}"] = Upscaler(
                str(work / "m.safetensors"), backend="openvino", precision=precision, **settings
            )
    return found


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
    parser.add_argument("--no-openvino", action="store_true", help="leave out the OpenVINO rows")
    args = parser.parse_args()

    import importlib.util
    import os

    from kdsr import create_model, load_model
    from kdsr.checkpoint import save_model
    from kdsr.export import export_onnx_split
    from kdsr.profiling import count_flops

    sys.path.insert(0, str(REPO))  # the reference is a test oracle in tests/, not in the package
    from tests.reference import ReferenceStudent

    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    model = load_model(args.weights) if args.weights else create_model(args.model).eval()
    c = model.config
    reference = ReferenceStudent(c.n_feats, c.n_blocks, c.n_resblocks).eval()
    reference.load_state_dict(model.state_dict())
    work = Path(tempfile.mkdtemp(prefix="kdsr-speed-"))
    os.environ["KDSR_CACHE"] = str(work / "cache")  # OpenVINO exports and INT8 built afresh, not from a user's cache
    save_model(model, work / "m.safetensors")
    export_onnx_split(model, work / "split")
    with_openvino = not args.no_openvino and importlib.util.find_spec("openvino") is not None
    print(
        f"model {args.weights or args.model} (C={c.n_feats} N={c.n_blocks} R={c.n_resblocks}), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, runs {args.runs} (median)"
    )
    h, w = 180, 320
    peaks = machine_peaks(h, w, args.runs)
    print("this CPU: " + ", ".join(f"{name} {value:.0f} GFLOP/s" for name, value in peaks.items()))

    if not args.only_large:
        flops = count_flops(model, h, w)
        lr = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
        whole = {"tile": 0, "idr_view": 0, "border_pad": 0, "fix_color": False}  # the network alone, as the reference
        rows = {}
        with torch.inference_mode():
            rows["reference fp32 NCHW (official formulation)"] = timed(lambda: reference(lr), args.runs)
            for name, engine in engines(model, work, whole, with_openvino).items():
                rows[name] = timed(lambda e=engine: e.upscale_tensor(lr), args.runs)
        t_ref, ref_out = rows["reference fp32 NCHW (official formulation)"]
        print(f"\nLR {h}x{w} (x4 -> {4 * h}x{4 * w}), whole image, {flops / 1e9:.0f} GFLOPs per image")
        print("| engine | latency (ms) | vs reference | GFLOP/s | of fp32 conv peak | max abs diff vs reference |")
        print("|---|---|---|---|---|---|")
        for name, (ms, out) in rows.items():
            diff = (out.float().clamp(0, 1) - ref_out.clamp(0, 1)).abs().max().item()
            achieved = flops / ms / 1e6
            print(
                f"| {name} | {ms:.0f} | {t_ref / ms:.2f}x | {achieved:.0f} | {achieved / peaks['conv fp32']:.0%} | "
                f"{diff:.1e} |"
            )
        lrs = set14_lrs(14)
        if lrs:
            from kdsr.inference import Upscaler

            ours32 = Upscaler(model, device="cpu", precision="fp32", **whole)
            ours16 = Upscaler(model, device="cpu", precision="bf16", **whole)
            with torch.inference_mode():
                values = [psnr(ours16.upscale_tensor(x), ours32.upscale_tensor(x)) for x in lrs]
            print(
                f"torch bf16 vs fp32 output on {len(lrs)} Set14 LRs (sigma 2.6): PSNR min {min(values):.1f} dB, "
                f"mean {np.mean(values):.1f} dB (quality against the HR: `kdsr benchmark --backend`)"
            )

    if not args.skip_large:
        big = torch.rand(1, 3, 720, 1280, generator=torch.Generator().manual_seed(1))
        given = {"tile": args.tile, "tile_pad": args.tile_pad, "idr_view": args.idr_view}
        # the network alone, as the reference (no border padding or colour fix), so that the outputs can be compared
        settings = {"border_pad": 0, "fix_color": False, **{k: v for k, v in given.items() if v is not None}}
        rows = {}
        with torch.inference_mode():
            rows["reference fp32, official forward_chop"] = timed(lambda: ref_forward_chop(reference, big), args.runs)
            tiled = engines(model, work, settings, with_openvino)
            for name, engine in tiled.items():
                rows[name] = timed(lambda e=engine: e.upscale_tensor(big), args.runs)
        t_ref_big, ref_big = rows["reference fp32, official forward_chop"]
        first = tiled["kdsr torch fp32"]
        print(
            f"\nLR 720x1280 (x4 -> 2880x5120), tiled: reference = official forward_chop; kdsr = tile {first.tile}, "
            f"pad {first.tile_pad}, overlap {first.tile_overlap}, one IDR per image from a {first.idr_view} view "
            "(0: whole image), the same tiling path for every engine"
        )
        print("| engine | latency (ms) | vs reference | PSNR vs reference (IDR per image vs per quadrant) |")
        print("|---|---|---|---|")
        for name, (ms, out) in rows.items():
            agreement = "-" if out is ref_big else f"{psnr(out, ref_big):.1f} dB"
            print(f"| {name} | {ms:.0f} | {t_ref_big / ms:.2f}x | {agreement} |")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"\npeak RSS {peak:.2f} GB")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
