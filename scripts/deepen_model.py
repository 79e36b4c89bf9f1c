"""Write a deeper copy of a trained student or teacher that computes exactly what it did (kdsr.models.grow), to
continue training with more IDR-DCRBs:

    python scripts/deepen_model.py src/kdsr/weights/kdsr-real-x4.safetensors 24 -o runs/deep24-init.safetensors

then train a student stage with ``distill.init`` set to the new file.
"""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="trained checkpoint (ours, or an official one)")
    parser.add_argument("n_blocks", type=int, help="IDR-DCRBs of the deeper copy")
    parser.add_argument("-o", "--output", required=True, help="where to write the deeper checkpoint (safetensors)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the inserted blocks' kernel generators")
    args = parser.parse_args()

    import torch

    from kdsr.checkpoint import load_model, save_model
    from kdsr.models.grow import deepen

    model = load_model(args.checkpoint)
    deeper = deepen(model, args.n_blocks, seed=args.seed)
    lr = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        if model.config.teacher:
            hr = torch.rand(1, 3, 24 * model.scale, 24 * model.scale)
            diff = (model(lr, hr) - deeper(lr, hr)).abs().max().item()
        else:
            diff = (model(lr) - deeper(lr)).abs().max().item()
    save_model(deeper, args.output, metadata={"source": args.checkpoint})
    print(f"{args.output}: {model.config.n_blocks} -> {args.n_blocks} blocks, max output change {diff:.1e}")


if __name__ == "__main__":
    main()
