"""How fast does kdsr answer from a cold process? (not a test; run it on a quiet CPU)

    python benchmarks/startup.py [-n kdsr-real-x4] [--repeat 3]

For each backend, a fresh Python process measures: importing what that path needs, building the upscaler (model
load, or a cache hit for the graphs), the first 120x80 image, and the mean time per image over a 20-image folder
(``upscale_files``, reading and writing included). Then the whole command, ``kdsr upscale -i one.png -o out.png``,
end to end (median of ``--repeat`` runs), on the torch backend and on the default (``auto``). The graph cache is a
temporary one, warmed before anything is timed. Paths:

- torch: PyTorch on the CPU (fp32);
- openvino (torch-aware): OpenVINO with kdsr's torch-side wrappers (the path that also builds the cache);
- openvino (torch-free) and onnx split (torch-free): :mod:`kdsr.inference.fastpath`, numpy and the runtime only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: (label, imports, how the upscaler is built): each runs in a fresh interpreter
PATHS = {
    "torch": (
        "import torch; from kdsr.inference.upscaler import Upscaler",
        "Upscaler(MODEL, backend='torch', precision='fp32')",
    ),
    "openvino (torch-aware)": (
        "import torch, openvino; from kdsr.inference.upscaler import Upscaler",
        "Upscaler(MODEL, backend='openvino', precision='fp32')",
    ),
    "openvino (torch-free)": (
        "import openvino; from kdsr.inference.fastpath import open_fast_upscaler",
        "open_fast_upscaler(MODEL, 'openvino', 'fp32')",
    ),
    "onnx split (torch-free)": (
        "import onnxruntime; from kdsr.inference.fastpath import open_fast_upscaler",
        "open_fast_upscaler(SPLIT, 'onnx', 'fp32')",
    ),
}

CHILD = """
import sys, time, json
t0 = time.perf_counter()
{imports}
t1 = time.perf_counter()
MODEL, SPLIT, ONE, FOLDER, OUT = sys.argv[1:6]
upscaler = {build}
assert upscaler is not None, "no upscaler (cache not warm?)"
t2 = time.perf_counter()
from kdsr.image_io import read_image
upscaler.upscale(read_image(ONE))
t3 = time.perf_counter()
from kdsr.inference.files import upscale_files
result = upscale_files(FOLDER, OUT, upscaler, progress=False)
t4 = time.perf_counter()
print(json.dumps({{"import": t1 - t0, "build": t2 - t1, "first": t3 - t2, "per_image": (t4 - t3) / len(result.written),
                  "torch": "torch" in sys.modules}}))
"""


def _images(folder: Path, count: int) -> Path:
    """``count`` 120x80 photos (the sample, shifted and mirrored so that no two are equal)."""
    import numpy as np

    from kdsr.image_io import read_image, write_image

    sample = read_image(REPO / "assets" / "sample.png")
    folder.mkdir()
    for i in range(count):
        image = np.roll(sample, 7 * i, axis=1)
        write_image(folder / f"{i:02d}.png", image[:, ::-1] if i % 2 else image)
    return folder


def _warm(model: str, split: Path) -> None:
    from kdsr.export.onnx import export_onnx_split
    from kdsr.inference.upscaler import Upscaler

    Upscaler(model, backend="openvino", precision="fp32")  # exports the split graphs, OpenVINO caches its compile
    export_onnx_split(Upscaler(model, backend="torch").model, split)


def _command(args: list[str], env: dict, check: bool = True) -> float:
    started = time.perf_counter()
    subprocess.run(args, check=check, env=env, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--model", default="kdsr-real-x4")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "KDSR_CACHE": str(tmp / "cache")}
        os.environ["KDSR_CACHE"] = env["KDSR_CACHE"]
        split, folder = tmp / "split", _images(tmp / "in", 20)
        _warm(args.model, split)
        one = folder / "00.png"
        print(f"model {args.model}, 120x80 LR images, cache warm; seconds")
        print("| path | import | build | first image | per image (20) | torch imported |\n|---|---|---|---|---|---|")
        for index, (label, (imports, build)) in enumerate(PATHS.items()):
            code = CHILD.format(imports=imports, build=build)
            out = tmp / f"out{index}"
            argv = [sys.executable, "-c", code, args.model, str(split), str(one), str(folder), str(out)]
            run = subprocess.run(argv, env=env, capture_output=True, text=True)
            if run.returncode:
                print(f"| {label} | failed: {run.stderr.strip().splitlines()[-1]} |")
                continue
            r = json.loads(run.stdout.strip().splitlines()[-1])
            cells = f"{r['import']:.2f} | {r['build']:.2f} | {r['first']:.2f} | {r['per_image']:.3f} | {r['torch']}"
            print(f"| {label} | {cells} |")
        print("\nend to end, `kdsr upscale -i one.png -o out.png` (median of", args.repeat, "runs):")
        kdsr = [sys.executable, "-m", "kdsr", "upscale", "-i", str(one), "-n", args.model]
        for label, extra in (("--backend torch", ["--backend", "torch"]), ("default (auto)", [])):
            times = [
                _command([*kdsr, "-o", str(tmp / f"e{label[:3]}{i}.png"), *extra], env) for i in range(args.repeat)
            ]
            print(f"  {label}: {statistics.median(times):.2f} s (runs: {', '.join(f'{t:.2f}' for t in times)})")
        missing = _command([sys.executable, "-m", "kdsr", "upscale", "-i", "missing.png"], env, check=False)
        print(f"  kdsr upscale -i missing.png: {missing:.2f} s")


if __name__ == "__main__":
    main()
