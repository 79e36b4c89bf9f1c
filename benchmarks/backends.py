"""Latency of every inference engine on one model, against the plain torch module in the official formulation, with
the achieved GFLOP/s and this CPU's measured peak (not a test).

    python benchmarks/backends.py [--model kdsr-m] [--runs 3] [--size 180x320] [--tiled 720x1280]

Engines, alternated in one run: the reference module (kdsr.reference: NCHW, fp32, grouped dynamic conv), kdsr's
Upscaler (torch fp32 and bf16, channels_last), onnxruntime on the split graphs, OpenVINO fp32 and bf16 on the split
graphs. Whole image at --size; the --tiled size goes through the upscaler's tiling (256-pixel tiles, one IDR from a
256 view) for every engine but the reference. Max abs difference against torch fp32 on the same input. The peak
rows time a 64->64 3x3 convolution (fp32, bf16) at the same size: how close each engine gets to the machine.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from speed import timed as speed_timed  # the script's folder is on sys.path


def timed(fn, runs: int):
    """(median seconds after one warm-up, the warm-up's output): benchmarks/speed.py's timer, in seconds."""
    milliseconds, out = speed_timed(fn, runs)
    return milliseconds / 1000, out


def conv_peak(height: int, width: int, dtype: torch.dtype, runs: int) -> float:
    """GFLOP/s of one 64->64 3x3 convolution (channels_last) at height x width."""
    x = torch.rand(1, 64, height, width, dtype=dtype).contiguous(memory_format=torch.channels_last)
    w = torch.rand(64, 64, 3, 3, dtype=dtype).contiguous(memory_format=torch.channels_last)
    seconds, _ = timed(lambda: F.conv2d(x, w, padding=1), runs)
    return 2 * 64 * 64 * 9 * height * width / seconds / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="kdsr-m", help="preset (random weights) or model file (default kdsr-m)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", default="180x320", help="whole-image LR size HxW (default 180x320, the paper's)")
    parser.add_argument("--tiled", default="720x1280", help="tiled LR size HxW (default 720x1280; 0 to skip)")
    args = parser.parse_args()

    import warnings

    import numpy as np

    from kdsr.checkpoint import load_model, save_model
    from kdsr.export import export_onnx_split
    from kdsr.inference import Upscaler
    from kdsr.profiling import count_flops
    from kdsr.reference import ReferenceStudent

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_model(args.model)
    c = model.config
    h, w = (int(v) for v in args.size.split("x"))
    flops = count_flops(model, h, w)
    work = Path(tempfile.mkdtemp(prefix="kdsr-backends-"))
    save_model(model, work / "m.safetensors")
    export_onnx_split(model, work / "split")
    import os

    os.environ["KDSR_CACHE"] = str(work / "cache")
    reference = ReferenceStudent(c.n_feats, c.n_blocks, c.n_resblocks).eval()
    reference.load_state_dict(model.state_dict())
    raw = {"border_pad": 0, "fix_color": False, "idr_view": 0, "tile": 0}
    engines = {
        "torch module fp32 NCHW (official formulation)": None,
        "kdsr torch fp32": Upscaler(model, precision="fp32", device="cpu", **raw),
        "kdsr torch bf16": Upscaler(model, precision="bf16", device="cpu", **raw),
        "onnxruntime fp32 (split graphs)": Upscaler(str(work / "split"), backend="onnx", **raw),
        "OpenVINO fp32": Upscaler(str(work / "m.safetensors"), backend="openvino", precision="fp32", **raw),
        "OpenVINO bf16": Upscaler(str(work / "m.safetensors"), backend="openvino", precision="bf16", **raw),
    }
    lr = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    results = {}
    with torch.inference_mode():
        for name, engine in engines.items():
            fn = (lambda: reference(lr)) if engine is None else (lambda e=engine: e.upscale_tensor(lr))
            results[name] = timed(fn, args.runs)
    base_time, base = results["torch module fp32 NCHW (official formulation)"][0], results["kdsr torch fp32"][1]
    print(f"model {args.model} (C={c.n_feats} N={c.n_blocks} R={c.n_resblocks}), LR {h}x{w}, {flops / 1e9:.0f} GFLOPs")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| engine | latency (s) | vs reference | GFLOP/s | max abs diff vs kdsr torch fp32 |")
    print("|---|---|---|---|---|")
    for name, (seconds, out) in results.items():
        diff = (out.float().clamp(0, 1) - base.clamp(0, 1)).abs().max().item()
        print(f"| {name} | {seconds:.2f} | {base_time / seconds:.2f}x | {flops / seconds / 1e9:.0f} | {diff:.1e} |")
    print(
        f"\nthis CPU, one 64->64 3x3 conv at {h}x{w}: fp32 {conv_peak(h, w, torch.float32, args.runs):.0f} GFLOP/s, "
        f"bf16 {conv_peak(h, w, torch.bfloat16, args.runs):.0f} GFLOP/s"
    )
    if args.tiled != "0":
        th, tw = (int(v) for v in args.tiled.split("x"))
        big = (np.random.default_rng(0).random((th, tw, 3)) * 255).astype(np.uint8)
        print(f"\ntiled LR {th}x{tw} (tile 256, one IDR from a 256 view), x4:\n")
        print("| engine | latency (s) | vs kdsr torch fp32 |")
        print("|---|---|---|")
        tiled = {}
        for name, engine in engines.items():
            if engine is None:
                continue
            engine.backend.tile, engine.backend.idr_view = 256, 256  # the tiled path, as `kdsr upscale` runs it
            tiled[name] = timed(lambda e=engine: e.upscale(big), max(1, args.runs // 2))[0]
        for name, seconds in tiled.items():
            print(f"| {name} | {seconds:.1f} | {tiled['kdsr torch fp32'] / seconds:.2f}x |")


if __name__ == "__main__":
    main()
