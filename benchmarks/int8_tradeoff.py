"""INT8 speed against quality for one model: OpenVINO bf16, plain NNCF INT8 and accuracy-controlled INT8 at several
budgets (not a test).

    python benchmarks/int8_tradeoff.py [-n kdsr-iso-x4] [--budgets 0.05 0.02 0.01] [--data ../shared/data/Set5]

Per variant: generator latency at LR 180x320 (median of 5, variants alternated), the share of quantisable layers
kept in float, the worst calibration case's PSNR change against the fp32 graph (the default calibration), and the
mean PSNR change on Gaussian8 over --data against torch fp32 (the network alone, as the paper).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--model", default="kdsr-iso-x4")
    parser.add_argument("--budgets", nargs="+", type=float, default=[0.05, 0.02, 0.01])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "Set5"))
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    warnings.simplefilter("ignore")
    logging.getLogger("nncf").setLevel(logging.ERROR)
    os.environ["KDSR_CACHE"] = tempfile.mkdtemp(prefix="kdsr-int8-")
    import nncf
    import openvino as ov

    from kdsr.evaluation import run_benchmark
    from kdsr.export.int8 import calibration_pairs, case_psnr, quantize_generator
    from kdsr.inference import Upscaler
    from kdsr.inference.backends import OpenVinoGraphs, TiledBackend
    from kdsr.inference.graph_cache import split_graphs_for
    from kdsr.inference.graph_files import SPLIT_GRAPHS
    from kdsr.inference.upscaler import run_pipeline

    core = ov.Core()
    generator_path = split_graphs_for(args.model) / SPLIT_GRAPHS[2]
    float_model = core.read_model(str(generator_path))
    pairs = calibration_pairs(None, OpenVinoGraphs(args.model, "fp32").encoder, 4)
    variants = {"OpenVINO bf16": float_model}
    variants["INT8, plain NNCF"] = nncf.quantize(float_model, nncf.Dataset([p.feeds for p in pairs]))
    for budget in args.budgets:
        variants[f"INT8, accuracy control {budget:g} dB"] = quantize_generator(generator_path, pairs, budget)
    compiled = {
        name: core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "bf16"}) for name, model in variants.items()
    }
    reference = case_psnr(core.compile_model(float_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}), pairs)

    feeds = {"lr": np.random.default_rng(0).random((1, 3, 180, 320), dtype=np.float32), "d": pairs[0].feeds["d"]}
    times: dict[str, list[float]] = {name: [] for name in compiled}
    for _ in range(args.runs + 1):
        for name, model in compiled.items():
            start = time.perf_counter()
            model(feeds)
            times[name].append(time.perf_counter() - start)

    raw = {"border_pad": 0, "fix_color": False, "idr_view": 0, "tile": 0}
    torch_up = Upscaler(args.model, device="cpu", precision="fp32", **raw)
    base = run_benchmark(lambda lr, hr: torch_up.upscale_tensor(lr), [Path(args.data)], "gaussian8")
    base_psnr = next(iter(base["results"].values()))["psnr"]
    fake_quantize = ("FakeQuantize", "FakeConvert")
    total = sum(op.get_type_name() in fake_quantize for op in variants["INT8, plain NNCF"].get_ops())

    print(f"model {args.model}, generator at LR 180x320, median of {args.runs}; Gaussian8 on {Path(args.data).name}")
    print("| variant | latency (ms) | vs bf16 | quantisers kept | worst calibration case (dB) | Gaussian8 mean (dB) |")
    print("|---|---|---|---|---|---|")
    bf16_time = statistics.median(times["OpenVINO bf16"][1:])
    graphs = OpenVinoGraphs(args.model, "bf16")  # the encoder graphs; each variant's generator is swapped in below
    backend = TiledBackend(graphs, torch.device("cpu"), torch.float32, 0, 0, 0, 0)
    for name, model in variants.items():
        ms = statistics.median(times[name][1:])
        got = case_psnr(compiled[name], pairs)
        worst = min(got[c] - reference[c] for c in reference)
        graphs.generator = lambda f, m=compiled[name]: list(m(f).values())
        result = run_benchmark(
            lambda lr, hr, b=backend: run_pipeline(b, lr, border_pad=0, fix_color=False), [Path(args.data)], "gaussian8"
        )
        change = next(iter(result["results"].values()))["psnr"] - base_psnr
        kept = sum(op.get_type_name() in fake_quantize for op in model.get_ops())
        print(
            f"| {name} | {ms * 1000:.0f} | {bf16_time / ms:.2f}x | {kept}/{total} | {worst:+.3f} | {change:+.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
