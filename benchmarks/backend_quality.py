"""Quality of every backend and precision against torch fp32, per bundled model (not a test).

    python benchmarks/backend_quality.py [-n kdsr-iso-x4 -n kdsr-real-x4] [--data Set5 Set14] [--protocol ...]

For each model and protocol (default: Gaussian8 and everyday), the same LRs go through torch fp32 and through each
variant (torch bf16, OpenVINO fp32, bf16 and INT8 with the default calibration); printed per dataset: the mean PSNR
difference to torch fp32, the worst setting's and the worst single image's. Gaussian8 runs the network alone (the
paper's protocol, `kdsr benchmark`'s raw pipeline), everyday what `kdsr upscale` does. OpenVINO exports and the INT8
quantisation are built in a temporary cache inside the run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VARIANTS = (("torch", "bf16"), ("openvino", "fp32"), ("openvino", "bf16"), ("openvino", "int8"))


def scores(upscaler, datasets: list[Path], protocol: str) -> dict:
    """{dataset: {"mean": dB, "settings": {name: dB}, "images": [dB per (setting, image) in protocol order]}}."""
    from kdsr.evaluation import run_benchmark
    from kdsr.image_tensor import tensor_to_image
    from kdsr.metrics import psnr

    out = {}
    for folder in datasets:
        images = []

        def sr_fn(lr, hr, images=images):
            sr = upscaler.upscale_tensor(lr)
            a, b = tensor_to_image(sr), tensor_to_image(hr)
            h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
            images.append(psnr(a[:h, :w], b[:h, :w], 4))
            return sr

        result = next(iter(run_benchmark(sr_fn, [folder], protocol, 4)["results"].values()))
        settings = {name: v["psnr"] for name, v in result["settings"].items()}
        out[folder.name] = {"mean": result["psnr"], "settings": settings, "images": images}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--model", action="append", help="bundled model or checkpoint (default: every bundled)")
    parser.add_argument(
        "--data", nargs="+", default=[str(REPO.parent / "shared" / "data" / s) for s in ("Set5", "Set14")]
    )
    parser.add_argument("--protocol", nargs="+", default=["gaussian8", "everyday"])
    args = parser.parse_args()

    warnings.simplefilter("ignore")
    os.environ["KDSR_CACHE"] = tempfile.mkdtemp(prefix="kdsr-quality-")
    from kdsr.bundled import bundled_models
    from kdsr.inference import Upscaler

    datasets = [Path(d) for d in args.data]
    print("| model | protocol | backend, precision | " + " | ".join(d.name for d in datasets) + " |")
    print("|---|---|---|" + "---|" * len(datasets))
    for model in args.model or list(bundled_models()):
        for protocol in args.protocol:
            raw = {"border_pad": 0, "fix_color": False, "idr_view": 0} if protocol == "gaussian8" else {}
            base = scores(Upscaler(model, device="cpu", precision="fp32", tile=0, **raw), datasets, protocol)
            for backend, precision in VARIANTS:
                upscaler = Upscaler(model, backend=backend, device="cpu", precision=precision, tile=0, **raw)
                got = scores(upscaler, datasets, protocol)
                cells = []
                for d in datasets:
                    g, b = got[d.name], base[d.name]
                    worst_setting = min(g["settings"][k] - v for k, v in b["settings"].items())
                    worst_image = min(x - y for x, y in zip(g["images"], b["images"], strict=True))
                    cells.append(f"{g['mean'] - b['mean']:+.3f} ({worst_setting:+.3f}, {worst_image:+.3f})")
                print(f"| {model} | {protocol} | {backend} {precision} | " + " | ".join(cells) + " |", flush=True)
    print("\nPSNR difference to torch fp32 in dB: mean (worst setting, worst single image)")


if __name__ == "__main__":
    main()
