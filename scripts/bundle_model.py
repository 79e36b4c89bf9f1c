"""Ship a trained student inside the package: src/kdsr/weights/NAME.safetensors with its model card embedded.

    python scripts/bundle_model.py runs/real-student/last.safetensors kdsr-real-x4 \
        --card docs/models/kdsr-real-x4.md --summary "kdsr-s student, real-world degradations (default model)"

The card (markdown) is stored under the ``model_card`` metadata key and printed by ``kdsr models NAME``; the
summary is the one line ``kdsr models`` lists; a degradation estimator and an IDR map fitted into the checkpoint
(``kdsr estimate --fit ... [--idr-map] -o CHECKPOINT``) are kept, so that ``kdsr estimate`` and ``--assume`` /
``--denoise`` work with the bundled model. ``--insight-from MODEL`` takes them from another model file whose encoder
is the same (a generator fine-tuned under a frozen encoder: its IDR, so what they read and map, is unchanged).
Weights are stored in float32, as trained.
"""

from __future__ import annotations

import argparse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="trained student checkpoint (our safetensors format)")
    parser.add_argument("name", help="bundled name, e.g. kdsr-iso-x4")
    parser.add_argument("--card", required=True, help="model card markdown file")
    parser.add_argument("--summary", required=True, help="one line for `kdsr models`")
    parser.add_argument(
        "--insight-from", help="take the estimator and IDR map from this model file (its encoder must be the same)"
    )
    args = parser.parse_args()

    from kdsr.bundled import model_file
    from kdsr.checkpoint import load_model, read_metadata, save_model
    from kdsr.insight.head import HEAD_KEY
    from kdsr.insight.steering import MAP_KEY
    from kdsr.models import KDSRStudent

    model = load_model(args.checkpoint)
    if not isinstance(model, KDSRStudent):
        raise SystemExit(f"{args.checkpoint}: a teacher cannot be bundled (upscaling needs the LR-only student)")
    target = REPO / "src" / "kdsr" / "weights" / f"{args.name}.safetensors"
    target.parent.mkdir(exist_ok=True)
    card = Path(args.card).read_text()
    metadata = {"summary": args.summary, "model_card": card, "source": args.checkpoint}
    insight = args.checkpoint
    if args.insight_from:
        insight = str(model_file(args.insight_from))
        same = load_model(insight).encoder.state_dict()
        if any(not value.equal(same[key]) for key, value in model.encoder.state_dict().items()):
            raise SystemExit(f"{args.insight_from}: its encoder differs, so its estimator and IDR map do not apply")
    if insight.endswith(".safetensors"):  # an estimator and IDR map fitted into it (kdsr estimate --fit) stay
        metadata.update({k: v for k, v in read_metadata(insight).items() if k in (HEAD_KEY, MAP_KEY)})
    save_model(model, target, metadata=metadata)
    print(f"{target.relative_to(REPO)}: {target.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
