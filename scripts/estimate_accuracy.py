"""Accuracy of a model's degradation estimator (``kdsr estimate``) on HR images it was not fitted on: mean absolute
error of each estimated quantity per setting, as a markdown table (for the model cards).

    python scripts/estimate_accuracy.py -n kdsr-iso-x4 --data ../shared/data/Set5 ../shared/data/Set14 \
        --sigmas 1 2 3
    python scripts/estimate_accuracy.py -n kdsr-real-x4 --data ../shared/data/Set5 ../shared/data/Set14 \
        --sigmas 1 --noise 0 10 20 --jpeg 0 40 70
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--model", required=True, help="bundled model or file with a degradation estimator")
    parser.add_argument("--data", nargs="+", required=True, help="HR folders")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[1.0, 2.0, 3.0])
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0])
    parser.add_argument("--jpeg", type=float, nargs="+", default=[0.0], help="JPEG qualities (0: none)")
    args = parser.parse_args()

    from kdsr.checkpoint import load_model
    from kdsr.image_io import list_images
    from kdsr.insight.collect import Degradation
    from kdsr.insight.estimator import head_errors
    from kdsr.readout.head import read_head

    head = read_head(args.model)
    if head is None:
        raise SystemExit(f"{args.model} has no degradation estimator")
    paths = [p for folder in args.data for p in list_images(folder)]
    settings = [Degradation(s, n, j) for s, n, j in itertools.product(args.sigmas, args.noise, args.jpeg)]
    errors = head_errors(load_model(args.model), head, paths, settings, progress=sys.stderr.isatty())
    print(f"{args.model}, {len(paths)} images ({', '.join(Path(d).name for d in args.data)}): mean absolute error\n")
    print("| setting | " + " | ".join(head.targets) + " |")
    print("|---|" + "---|" * len(head.targets))
    for label, values in errors.items():
        print(f"| {label} | " + " | ".join(f"{values[name]:.2f}" for name in head.targets) + " |")


if __name__ == "__main__":
    main()
