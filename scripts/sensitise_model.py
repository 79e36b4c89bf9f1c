"""Write a copy of a trained student whose generator responds ``GAIN`` times as strongly to its IDR's departures
from the mean IDR (kdsr.models.grow.sensitise), as the start of a counterfactual fine-tune (configs/real-x4-steer.yaml):

    python scripts/sensitise_model.py kdsr-real-x4 3 -o runs/sensitised.safetensors --data ../shared/data/T91

The mean IDR is that of 4 everyday-mixture LRs (seeded) of the top-left 192-px crop of each of the first
``--images`` HR images of ``--data`` that are that large; the estimator and IDR map of the model file are kept
(the encoder is unchanged).
"""

from __future__ import annotations

import argparse

CROP = 192  # HR pixels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="trained student (bundled name or file)")
    parser.add_argument("gain", type=float, help="sensitivity factor (1: unchanged)")
    parser.add_argument("-o", "--output", required=True, help="where to write the copy (safetensors)")
    parser.add_argument("--data", required=True, help="folder of HR images the mean IDR is taken over")
    parser.add_argument("--images", type=int, default=64)
    args = parser.parse_args()

    import torch

    from kdsr.bundled import model_file
    from kdsr.checkpoint import load_model, read_metadata, save_model
    from kdsr.data.patches import load_rgb_folder
    from kdsr.degradations.mixture import degrade
    from kdsr.image_tensor import image_to_tensor
    from kdsr.models.grow import sensitise
    from kdsr.readout.head import HEAD_KEY
    from kdsr.readout.steering import MAP_KEY

    model = load_model(args.checkpoint)
    images = [image for image in load_rgb_folder([args.data])[: args.images] if min(image.shape[:2]) >= CROP]
    hrs = [image_to_tensor(image[:CROP, :CROP]) for image in images]
    with torch.no_grad():
        idrs = [
            model.encode(degrade(hr.repeat(4, 1, 1, 1), generator=torch.Generator().manual_seed(i))).d
            for i, hr in enumerate(hrs)
        ]
    sensitised = sensitise(model, torch.cat(idrs).mean(dim=0), args.gain)
    path = model_file(args.checkpoint)
    kept = read_metadata(path) if path.suffix == ".safetensors" else {}
    save_model(sensitised, args.output, metadata={k: v for k, v in kept.items() if k in (HEAD_KEY, MAP_KEY)})
    print(f"{args.output}: the generator {args.gain:g}x as sensitive to its IDR (mean over {len(idrs) * 4} LRs)")


if __name__ == "__main__":
    main()
