"""Blend a GAN fine-tune with the model it started from, weight by weight (ESRGAN's network interpolation): one knob
between the sharp model's looks and the L1 model's fidelity, without training.

    python scripts/interpolate_models.py runs/real-x4-gan/last.safetensors kdsr-real-x4 0.7 -o blend.safetensors

``ALPHA`` is the sharp model's share (1: the sharp model, 0: the base). With ``--base-encoder`` the encoder (KD-IDE)
is the base model's unchanged, so its IDR, and a degradation estimator fitted on it, stay exactly the base's; the
estimator stored in the base file is then carried over.
"""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sharp", help="the fine-tuned (GAN) student")
    parser.add_argument("base", help="the student it was fine-tuned from (bundled name or file)")
    parser.add_argument("alpha", type=float, help="the sharp model's share, 0 to 1")
    parser.add_argument("-o", "--output", required=True, help="safetensors file to write")
    parser.add_argument("--base-encoder", action="store_true", help="keep the base's encoder (and its estimator)")
    args = parser.parse_args()
    if not 0 <= args.alpha <= 1:
        raise SystemExit("alpha must lie in [0, 1]")

    from kdsr.checkpoint import load_model, save_model
    from kdsr.readout.head import HEAD_KEY, read_head

    sharp, base = load_model(args.sharp), load_model(args.base)
    if sharp.config != base.config or type(sharp) is not type(base):
        raise SystemExit("the two models must share one architecture")
    base_state = base.state_dict()
    blended = {}
    for key, value in sharp.state_dict().items():
        keep_base = args.base_encoder and not key.startswith("G.")
        blended[key] = (
            base_state[key]
            if keep_base or not value.is_floating_point()
            else (args.alpha * value + (1 - args.alpha) * base_state[key])
        )
    sharp.load_state_dict(blended)
    head = read_head(args.base) if args.base_encoder else None
    save_model(sharp, args.output, metadata={HEAD_KEY: head.to_json()} if head else {})
    print(f"{args.output}: {args.alpha:g} x {args.sharp} + {1 - args.alpha:g} x {args.base}"
          + (" (the base's encoder)" if args.base_encoder else ""))  # fmt: skip


if __name__ == "__main__":
    main()
