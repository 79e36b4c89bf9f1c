"""Ship a trained student inside the package: src/kdsr/weights/NAME.safetensors with its model card embedded.

    python scripts/bundle_model.py runs/real-student/last.safetensors kdsr-real-x4 \
        --card docs/models/kdsr-real-x4.md --summary "kdsr-s student, real-world degradations (default model)"

The card (markdown) is stored under the ``model_card`` metadata key and printed by ``kdsr models NAME``; the
summary is the one line ``kdsr models`` lists; a degradation estimator and an IDR map fitted into the checkpoint
(``kdsr estimate --fit ... [--idr-map] -o CHECKPOINT``) are kept, so that ``kdsr estimate`` and ``--assume`` /
``--denoise`` work with the bundled model. ``--insight-from MODEL`` takes what the checkpoint lacks from another
model file: its estimator when the two compute the same D' (which the estimator reads), its IDR map when they
compute the same D (a generator fine-tuned with ``distill.freeze_encoder``, which keeps D').
Weights are stored in float32, as trained.
"""

from __future__ import annotations

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _insight(model, source: str) -> dict[str, str]:
    """The estimator (when ``source`` computes the same D', which it reads) and the IDR map (when it computes the same
    D, which it maps to) of another model file."""
    from kdsr.bundled import model_file
    from kdsr.checkpoint import load_model, read_metadata
    from kdsr.readout.head import HEAD_KEY
    from kdsr.readout.steering import MAP_KEY

    path = model_file(source)
    theirs = load_model(path).encoder.state_dict()
    differs = [key for key, value in model.encoder.state_dict().items() if not value.equal(theirs[key])]
    metadata, kept = read_metadata(path), {}
    if all(key.startswith("compress.") for key in differs):
        kept[HEAD_KEY] = metadata.get(HEAD_KEY)
    if not differs:
        kept[MAP_KEY] = metadata.get(MAP_KEY)
    if not any(kept.values()):
        raise SystemExit(f"{source}: its encoder differs, so neither its estimator nor its IDR map applies")
    return {k: v for k, v in kept.items() if v}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="trained student checkpoint (our safetensors format)")
    parser.add_argument("name", help="bundled name, e.g. kdsr-iso-x4")
    parser.add_argument("--card", required=True, help="model card markdown file")
    parser.add_argument("--summary", required=True, help="one line for `kdsr models`")
    parser.add_argument(
        "--insight-from",
        help="take the estimator and IDR map the checkpoint lacks from this model file, where they apply",
    )
    args = parser.parse_args()

    from kdsr.checkpoint import load_model, read_metadata, save_model
    from kdsr.models import KDSRStudent
    from kdsr.readout.head import HEAD_KEY
    from kdsr.readout.steering import MAP_KEY

    model = load_model(args.checkpoint)
    if not isinstance(model, KDSRStudent):
        raise SystemExit(f"{args.checkpoint}: a teacher cannot be bundled (upscaling needs the LR-only student)")
    target = REPO / "src" / "kdsr" / "weights" / f"{args.name}.safetensors"
    target.parent.mkdir(exist_ok=True)
    card = Path(args.card).read_text()
    metadata = {"summary": args.summary, "model_card": card, "source": args.checkpoint}
    if args.checkpoint.endswith(".safetensors"):  # an estimator and IDR map fitted into it (kdsr estimate --fit) stay
        metadata.update({k: v for k, v in read_metadata(args.checkpoint).items() if k in (HEAD_KEY, MAP_KEY)})
    if args.insight_from:
        metadata.update({k: v for k, v in _insight(model, args.insight_from).items() if k not in metadata})
    save_model(model, target, metadata=metadata)
    print(f"{target.relative_to(REPO)}: {target.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
