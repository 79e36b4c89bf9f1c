"""Average the weights of several checkpoints of one training run (checkpoint averaging, a posteriori EMA): GAN
fine-tunes swing from checkpoint to checkpoint (sharpness, fidelity, artefacts), and their mean is steadier than any
one of them.

    python scripts/average_models.py run-s1000.safetensors run-s1100.safetensors ... -o mean.safetensors

Every file must hold the same architecture. The first file's metadata (training config, degradation estimator) is
kept, with ``averaged_from`` listing the files.
"""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", help="student checkpoints of one architecture")
    parser.add_argument("-o", "--output", required=True, help="safetensors file to write")
    args = parser.parse_args()
    if len(args.checkpoints) < 2:
        raise SystemExit("give at least two checkpoints")

    import json

    import torch

    from kdsr.checkpoint import load_model, read_metadata, save_model

    models = [load_model(path) for path in args.checkpoints]
    first = models[0]
    if any(m.config != first.config or type(m) is not type(first) for m in models):
        raise SystemExit("the checkpoints must share one architecture")
    states = [m.state_dict() for m in models]
    mean = {
        key: torch.stack([s[key] for s in states]).mean(dim=0) if value.is_floating_point() else value
        for key, value in states[0].items()
    }
    first.load_state_dict(mean)
    metadata = {k: v for k, v in read_metadata(args.checkpoints[0]).items() if k != "averaged_from"}
    metadata["averaged_from"] = json.dumps(args.checkpoints)
    save_model(first, args.output, metadata=metadata)
    print(f"{args.output}: the mean of {len(models)} checkpoints")


if __name__ == "__main__":
    main()
