"""The trained (non-EMA) weights of a run's last checkpoint as a model file: ``last.safetensors`` holds the EMA copy,
which over a short fine-tune (a few hundred steps at decay 0.999) is still mostly the starting model.

    python scripts/raw_weights.py runs/gan-teacher -o runs/gan-teacher-raw.safetensors
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="run folder (with state.pt and last.safetensors)")
    parser.add_argument("-o", "--output", required=True, help="safetensors file to write")
    args = parser.parse_args()

    import torch

    from kdsr.checkpoint import load_model, read_metadata, save_model
    from kdsr.train.runstate import STATE_FILE, read_state

    state = read_state(args.run / STATE_FILE, torch.device("cpu"))
    model = load_model(args.run / "last.safetensors")  # the architecture, and the EMA weights to replace
    model.load_state_dict(state["model"])
    metadata = {k: v for k, v in read_metadata(args.run / "last.safetensors").items() if not k.startswith("kdsr_")}
    metadata["source"] = f"{args.run}: the trained (non-EMA) weights at step {state['step']}"
    save_model(model, args.output, metadata)
    print(f"{args.output}: step {state['step']}")


if __name__ == "__main__":
    main()
