"""``kdsr benchmark``: the paper's protocols on folders of HR images (or LR/HR pairs)."""

from __future__ import annotations

import argparse
import json
import sys

from kdsr.atomic import atomic_write_bytes
from kdsr.cli.options import Once, add_calibration_option, add_device_options, add_overwrite_option, model_inputs
from kdsr.constants import BACKENDS, CONVENTIONS, PROTOCOLS
from kdsr.errors import KDSRError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "benchmark",
        help="PSNR/SSIM under the paper's protocols",
        description="Evaluate a model under Gaussian8, anisotropic+noise or paired protocols.",
    )
    p.add_argument(
        "-n",
        "--model",
        action=Once,
        required=True,
        help="'bicubic', a bundled model, preset or checkpoint (a teacher model is given the HR: upper bound)",
    )
    p.add_argument("--data", nargs="+", required=True, help="dataset folders (HR images; LR/ and HR/ for paired)")
    p.add_argument("--protocol", default="gaussian8", choices=PROTOCOLS, help="default: gaussian8")
    p.add_argument(
        "--convention", default="official", choices=CONVENTIONS, help="PSNR/SSIM convention (default: official)"
    )
    p.add_argument("--scale", type=int, default=4, help="scale (must match the model; for bicubic; default 4)")
    p.add_argument("--json", dest="json_path", help="write every number to this JSON file")
    add_overwrite_option(p)
    p.add_argument(
        "--lpips", metavar="WEIGHTS", help="also LPIPS (VGG, v0.1) with weights saved from the lpips package"
    )
    p.add_argument(
        "--detail",
        action="store_true",
        help="also NIQE (lower is more natural), the high-frequency energy ratio to the HR, the colour error (8-bit "
        "levels) and, for the clean case, the LR consistency (dB): sharpness and faithfulness beyond PSNR (slow: "
        "NIQE takes about a second per image)",
    )
    add_device_options(p, precision="fp32", openvino=True)
    add_calibration_option(p)
    p.add_argument(
        "--backend",
        default="torch",
        choices=BACKENDS,
        help="what runs the student (default torch): compare a runtime's quality with torch's (see kdsr upscale)",
    )
    p.add_argument("-t", "--tile", type=int, default=0, help="LR tile size (default 0: whole image, as the paper)")
    p.add_argument(
        "--pipeline",
        default="auto",
        choices=["auto", "raw", "upscale"],
        help="raw: the network alone on the whole image, as the official test code (no border padding, colour fix "
        "or IDR view); upscale: what `kdsr upscale` does; auto (default): raw for gaussian8 and aniso (the paper's "
        "protocols), upscale for everyday and paired",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def markdown_table(report: dict) -> str:
    """Rows: model; columns: dataset (gaussian8, paired) or dataset x kernel x noise (aniso)."""
    results = report["results"]

    def cell(values: dict) -> str:
        text = f"{values['psnr']:.2f} / {values['ssim']:.4f}"
        return text + (f" / {values['lpips']:.4f}" if "lpips" in values else "")

    if report["protocol"] == "everyday":
        return _everyday_table(report)
    if report["protocol"] == "aniso":
        columns = [(d, s) for d, r in results.items() for s in r["settings"]]
        header = [f"{d} {s}" for d, s in columns]
        cells = [cell(results[d]["settings"][s]) for d, s in columns]
    else:
        header = list(results)
        cells = [cell(r) for r in results.values()]
    metrics = "PSNR / SSIM" + (" / LPIPS" if any("lpips" in r for r in results.values()) else "")
    lines = [
        f"{metrics}, protocol {report['protocol']}, pipeline {report['pipeline']}, convention {report['convention']} "
        f"(Y channel, {report['scale']}-pixel border crop)",
        "",
        "| model | " + " | ".join(header) + " |",
        "|---|" + "---|" * len(header),
        f"| {report['model']} | " + " | ".join(cells) + " |",
    ]
    return "\n".join(lines)


def detail_table(report: dict) -> str:
    """Rows: dataset x case; columns: NIQE, high-frequency energy ratio, colour error, LR consistency (bicubic's in
    brackets where the protocol has it)."""

    def number(values: dict, key: str, fmt: str) -> str:
        if key not in values:
            return "-"
        text = format(values[key], fmt)
        return text + (f" ({format(values['bicubic_' + key], fmt)})" if f"bicubic_{key}" in values else "")

    rows = []
    for dataset, result in report["results"].items():
        for case, values in [*result["settings"].items(), ("mean", result)]:
            cells = [number(values, "niqe", ".2f"), number(values, "hf_ratio", ".2f")]
            cells += [number(values, "colour_error", ".2f"), number(values, "lr_consistency", ".2f")]
            rows.append(f"| {dataset} | {case} | " + " | ".join(cells) + " |")
    bicubic = " (bicubic)" if report["protocol"] == "everyday" else ""
    return "\n".join(
        [
            f"{report['model']}: NIQE{bicubic}, high-frequency energy / HR's{bicubic}, colour error in "
            f"levels{bicubic}, LR consistency in dB (clean case)",
            "",
            "| dataset | case | NIQE | HF ratio | colour error | LR consistency |",
            "|---|---|---|---|---|---|",
            *rows,
        ]
    )


def _everyday_table(report: dict) -> str:
    """Rows: everyday cases and their mean; per dataset: model, bicubic and the gain in PSNR."""
    results = report["results"]
    header = [f"{d} {what}" for d in results for what in (report["model"], "bicubic", "gain (dB)")]
    rows = []
    for case in [*next(iter(results.values()))["settings"], "mean"]:
        cells = []
        for r in results.values():
            v = r if case == "mean" else r["settings"][case]
            cells += [
                f"{v['psnr']:.2f} / {v['ssim']:.4f}",
                f"{v['bicubic_psnr']:.2f} / {v['bicubic_ssim']:.4f}",
                f"{v['gain']:+.2f}",
            ]
        rows.append(f"| {case} | " + " | ".join(cells) + " |")
    return "\n".join(
        [
            f"PSNR / SSIM, protocol everyday, pipeline {report['pipeline']}, convention {report['convention']} "
            f"(Y channel, {report['scale']}-pixel border crop)",
            "",
            "| case | " + " | ".join(header) + " |",
            "|---|" + "---|" * len(header),
            *rows,
        ]
    )


def _check_headers(folders: list[str]) -> None:
    """Every image under the data folders readable and within the pixel limit, from its header: a bad file is refused
    in a second, before torch and the model load (a benchmark reads them all anyway)."""
    from pathlib import Path

    from kdsr.constants import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS
    from kdsr.image_io import probe_within_limit, visible_files

    for folder in map(Path, folders):
        if not folder.is_dir():
            raise KDSRError(f"{folder}: not a folder")
        for path in visible_files(folder, recursive=True):
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                probe_within_limit(path, DEFAULT_MAX_PIXELS)


def run(args: argparse.Namespace) -> int:
    _check_headers(args.data)
    import torch

    from kdsr.degradations.resize import imresize
    from kdsr.evaluation import run_benchmark
    from kdsr.inference.upscaler import Upscaler
    from kdsr.models import KDSRTeacher
    from kdsr.outputs import check_output

    if args.json_path:
        check_output(args.json_path, [*args.data, *model_inputs(args.model)], overwrite=args.overwrite)
    pipeline = args.pipeline
    if pipeline == "auto":
        pipeline = "raw" if args.protocol in ("gaussian8", "aniso") else "upscale"
    if args.model == "bicubic":
        scale = args.scale

        def sr_fn(lr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
            return imresize(lr, scale)

    else:
        from kdsr.checkpoint import load_model
        from kdsr.devices import resolve_device, resolve_dtype

        device = resolve_device(args.device)
        model = load_model(args.model)
        scale = model.scale
        if isinstance(model, KDSRTeacher):
            dtype = resolve_dtype(args.precision, device)
            model = model.to(device, dtype)

            def sr_fn(lr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
                return model(lr.to(device, dtype), hr.to(device, dtype)).float().cpu()

        else:
            settings = {"border_pad": 0, "fix_color": False, "idr_view": 0} if pipeline == "raw" else {}
            source = model if args.backend == "torch" else args.model  # other runtimes load the file themselves
            upscaler = Upscaler(
                source,
                device=device,
                precision=args.precision,
                tile=args.tile,
                backend=args.backend,
                calibration=args.calibration,
                **settings,
            )

            def sr_fn(lr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
                return upscaler.upscale_tensor(lr)

    lpips_model = None
    if args.lpips:
        from kdsr.metrics.lpips import load_lpips

        lpips_model = load_lpips(args.lpips)
    progress = not args.quiet and sys.stderr.isatty()
    outcome = run_benchmark(
        sr_fn, args.data, args.protocol, scale, args.convention, progress, lpips_model, detail=args.detail
    )
    report = {
        "model": args.model,
        "protocol": args.protocol,
        "convention": args.convention,
        "pipeline": "bicubic" if args.model == "bicubic" else pipeline,
        "backend": args.backend,
        "precision": args.precision,
        "scale": scale,
        "results": outcome["results"],
        "wall_time_s": round(outcome["wall_time_s"], 2),
    }
    print(markdown_table(report))
    if args.detail:
        print("\n" + detail_table(report))
    print(f"\nwall time {report['wall_time_s']:.1f} s")
    if args.json_path:
        atomic_write_bytes(args.json_path, (json.dumps(report, indent=2) + "\n").encode())
    return 0
