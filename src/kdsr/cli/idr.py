"""``kdsr idr``: the paper's Fig. 6 as a command: the IDR of degraded HR images, t-SNE per model, separability."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

from kdsr.atomic import atomic_write_bytes
from kdsr.cli.options import add_overwrite_option, model_inputs
from kdsr.errors import KDSRError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "idr",
        help="how well a model's IDR separates degradations (t-SNE, k-NN, probe)",
        description="Degrade each HR image under every (sigma, noise) setting, collect the IDR each model's encoder "
        "makes (a teacher sees LR + HR, a student the LR), draw one t-SNE panel per model coloured by setting (paper "
        "Fig. 6) and measure separability: leave-one-image-out k-NN accuracy of the setting, R^2 of a ridge probe "
        "for sigma, silhouette. Needs the insight extra: pip install 'kdsr[insight]'.",
    )
    p.add_argument("-n", "--model", action="append", required=True, help="bundled model or checkpoint; repeatable")
    p.add_argument("--data", required=True, help="folder of HR images")
    p.add_argument(
        "--sigmas", type=float, nargs="+", default=[1.2, 2.4, 3.6], help="blur widths (default: 1.2 2.4 3.6)"
    )
    p.add_argument(
        "--blur",
        choices=["iso", "aniso"],
        default="iso",
        help="default iso; aniso: lambda1=sigma, lambda2=sigma/2 at a per-image angle",
    )
    p.add_argument("--noise", type=float, nargs="+", default=[0.0], help="noise levels, 0-255 scale (default: 0)")
    p.add_argument(
        "--cases",
        nargs="+",
        metavar="CASE",
        help="everyday cases instead of the sigma x noise grid (e.g. clean jpeg40 blur2.0+noise15 realworld)",
    )
    p.add_argument("--crop", type=int, default=0, help="HR centre crop in pixels (default 0: whole images)")
    p.add_argument("--max-images", type=int, default=0, help="use the first N images (default 0: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise and angles (default 0)")
    p.add_argument("--plot", help="write the t-SNE figure here (PNG)")
    p.add_argument("--json", dest="json_path", help="write the separability numbers here")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_overwrite_option(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from kdsr.checkpoint import load_model
    from kdsr.image_io import list_images
    from kdsr.insight.collect import Degradation, collect_idr
    from kdsr.insight.separability import separability, tsne_figure
    from kdsr.outputs import check_outputs

    outputs = [p for p in (args.plot, args.json_path) if p]
    check_outputs(outputs, [args.data, *model_inputs(*args.model)], args.overwrite)

    if min(args.sigmas) < 0 or min(args.noise) < 0 or args.max_images < 0 or args.crop < 0:
        raise KDSRError("--sigmas, --noise, --crop and --max-images must be >= 0")
    settings = [Degradation(s, n, aniso=args.blur == "aniso") for n, s in itertools.product(args.noise, args.sigmas)]
    if args.cases:
        settings = [Degradation.everyday(case) for case in args.cases]
    if len(set(settings)) < 2:
        raise KDSRError("give at least two settings (several --sigmas or --noise levels)")
    folder = Path(args.data)
    if not folder.is_dir():
        raise KDSRError(f"{folder}: not a folder")
    paths = list_images(folder)[: args.max_images or None]
    if len(paths) < 2:
        raise KDSRError(f"{folder}: needs at least two images (the k-NN and probe leave one image out)")
    panels, models = {}, {}
    for name in args.model:
        model = load_model(name)
        samples = collect_idr(
            model, paths, settings, crop=args.crop, seed=args.seed, progress=not args.quiet and sys.stderr.isatty()
        )
        panels[name], models[name] = samples, separability(samples)
    width = max(len("model"), *map(len, models))
    print(f"{'model':<{width}}  {'k-NN acc':>9} {'probe R2':>9} {'silhouette':>11}")
    for name, values in models.items():
        print(
            f"{name:<{width}}  {values['knn_accuracy']:>9.3f} {values['probe_r2']:>9.3f} {values['silhouette']:>11.3f}"
        )
    if args.plot:
        stems = [Path(name).stem for name in panels]
        titles = stems if len(set(stems)) == len(stems) else list(panels)  # two "last" files: their full paths
        tsne_figure(dict(zip(titles, panels.values(), strict=True)), Path(args.plot), args.seed)
    if args.json_path:
        report = {
            "models": models,
            "settings": [s.label for s in settings],
            "images": len(paths),
            "data": str(folder),
            "seed": args.seed,
        }
        atomic_write_bytes(Path(args.json_path), (json.dumps(report, indent=2) + "\n").encode())
    return 0
