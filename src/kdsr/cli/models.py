"""``kdsr models``: the architecture presets and the bundled trained models."""

from __future__ import annotations

import argparse

from kdsr.bundled import bundled_models
from kdsr.errors import KDSRError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "models",
        help="list presets and bundled models; with a name, print that model's card",
        description="List the architecture presets and the bundled trained models; with a name, print that "
        "model's card (how it was trained, what it measures, its limits).",
    )
    p.add_argument("name", nargs="?", help="a bundled model whose model card to print")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # no torch: the presets are plain configs and a model's card and summary sit in its file's header
    from kdsr.architecture import PRESETS
    from kdsr.readout.head import safetensors_metadata as read_metadata

    bundled = bundled_models()
    if args.name:
        if args.name not in bundled:
            known = ", ".join(bundled) or "none in this version"
            raise KDSRError(f"'{args.name}' is not a bundled model (bundled: {known})")
        print(read_metadata(bundled[args.name]).get("model_card", "(this model has no card)").rstrip())
        return 0
    width = max(len(name) for name in [*PRESETS, *bundled])
    for name, preset in PRESETS.items():
        c = preset.config
        shape = f"C={c.n_feats} N={c.n_blocks} R={c.n_resblocks}"
        print(f"{name:<{width}} preset  {shape}  {preset.description} (untrained)")
    for name, path in sorted(bundled.items()):
        summary = read_metadata(path).get("summary", "trained model")
        print(f"{name:<{width}} bundled {summary}")
    if not bundled:
        print("(no trained model is bundled in this version)")
    return 0
