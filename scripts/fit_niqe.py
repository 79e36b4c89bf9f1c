"""Fit the NIQE pristine model kdsr ships (src/kdsr/assets/niqe-pristine.json) on HR photos.

    python scripts/fit_niqe.py [--data ../shared/data/T91 ../shared/data/BSD200 ../shared/data/BSDS500-test]

The published method (kdsr.metrics.niqe.fit_pristine): 96x96 blocks, those sharper than 0.75 of each photo's
sharpest, 36 features each; the model is their mean and covariance. The default photos are kdsr's training HR sets
(never the evaluation sets).
"""

from __future__ import annotations

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=[str(SHARED / n) for n in ("T91", "BSD200", "BSDS500-test")])
    parser.add_argument("-o", "--output", default=str(REPO / "src" / "kdsr" / "assets" / "niqe-pristine.json"))
    args = parser.parse_args()

    from kdsr.atomic import atomic_write_bytes
    from kdsr.image_io import list_images, read_rgb8
    from kdsr.metrics.niqe import fit_pristine

    paths = [path for folder in args.data for path in list_images(folder)]
    model = fit_pristine(read_rgb8(path) for path in paths)
    atomic_write_bytes(Path(args.output), model.to_json().encode())
    print(f"{args.output}: fitted on {len(paths)} photos ({', '.join(args.data)})")


if __name__ == "__main__":
    main()
