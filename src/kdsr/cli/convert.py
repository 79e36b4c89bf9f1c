"""``kdsr convert``: official KDSR checkpoint (or any supported model file) -> our safetensors format."""

from __future__ import annotations

import argparse

from kdsr.cli.options import add_overwrite_option


def add_parser(sub) -> None:
    p = sub.add_parser(
        "convert",
        help="convert an official checkpoint to kdsr safetensors",
        description="Read an official KDSR .pt/.pth checkpoint (or our format) and write our format.",
    )
    p.add_argument("input", help="checkpoint to read")
    p.add_argument("output", help="safetensors file to write")
    add_overwrite_option(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from kdsr.model_check import check_model_source
    from kdsr.outputs import check_output

    check_output(args.output, [args.input], overwrite=args.overwrite)
    check_model_source(args.input)
    from kdsr.checkpoint import load_model, save_model

    model = load_model(args.input)
    save_model(model, args.output, metadata={"converted_from": str(args.input)})
    c = model.config
    role = "teacher" if c.teacher else "student"
    print(f"{args.output}: {role}, n_feats={c.n_feats} n_blocks={c.n_blocks} n_resblocks={c.n_resblocks} x{c.scale}")
    return 0
