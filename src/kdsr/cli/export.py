"""``kdsr export``: a student model to ONNX (dynamic height and width) or OpenVINO IR (optionally INT8)."""

from __future__ import annotations

import argparse

from kdsr.cli.options import Once, add_calibration_option, add_overwrite_option, model_inputs
from kdsr.errors import KDSRError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a student model to ONNX or OpenVINO",
        description="Export a student to ONNX: one graph, input lr (1,3,h,w), output sr (1,3,s*h,s*w), for whole "
        "images; or with --split three graphs in a folder (encoder features, encoder head, generator) that "
        "`kdsr upscale --backend onnx` runs with tiles, exactly as the torch path. --format openvino writes the "
        "three graphs as OpenVINO IR into a folder (--int8: the generator quantised) for `kdsr upscale --backend "
        "openvino -n FOLDER`.",
    )
    p.add_argument("-n", "--model", action=Once, required=True, help="bundled model, preset or checkpoint")
    p.add_argument(
        "-o", "--output", required=True, help="ONNX file to write (with --split or --format openvino: a new folder)"
    )
    p.add_argument("--split", action="store_true", help="encoder and generator as separate graphs, for tiling")
    p.add_argument("--format", default="onnx", choices=["onnx", "openvino"], help="default onnx")
    p.add_argument("--int8", action="store_true", help="--format openvino: quantise the generator to INT8")
    add_calibration_option(p)
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--check", action="store_true", help="compare with PyTorch under onnxruntime after export")
    add_overwrite_option(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from kdsr.outputs import check_output

    folder = args.split or args.format == "openvino"
    check_output(args.output, model_inputs(args.model), overwrite=args.overwrite, folder=folder)
    from kdsr.model_check import check_model_source

    check_model_source(args.model)
    if args.format == "openvino":
        return _run_openvino(args)
    if args.int8 or args.calibration:
        raise KDSRError("--int8 and --calibration are for --format openvino")
    import torch

    from kdsr.checkpoint import load_model

    try:
        import onnx  # noqa: F401

        from kdsr.export import export_onnx, export_onnx_split
        from kdsr.inference.onnx_runtime import OnnxGraphs, OnnxStudent
    except ImportError:
        raise KDSRError("ONNX export needs the onnx package: pip install 'kdsr[onnx]'") from None

    model = load_model(args.model)
    (export_onnx_split if args.split else export_onnx)(model, args.output, args.opset)
    print(args.output)
    if args.check:
        lr = torch.rand(1, 3, 37, 53, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            expected = model(lr)
        if args.split:
            graphs = OnnxGraphs(args.output)
            got = graphs.super_resolve(lr, graphs.encoder(lr).d)
        else:
            got = OnnxStudent(args.output)(lr)
        diff = (got - expected).abs().max().item()
        print(f"max abs difference to PyTorch at 37x53: {diff:.2e}")
    return 0


def _run_openvino(args: argparse.Namespace) -> int:
    if args.calibration and not args.int8:
        raise KDSRError("--calibration is for --int8")
    from kdsr.export.openvino import export_openvino

    folder = export_openvino(args.model, args.output, int8=args.int8, calibration=args.calibration)
    print(folder)
    if args.check:
        import torch

        from kdsr.checkpoint import load_model
        from kdsr.inference.backends import OpenVinoGraphs

        model = load_model(args.model)
        lr = torch.rand(1, 3, 37, 53, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            expected = model(lr)
        graphs = OpenVinoGraphs(folder, "fp32")
        got = graphs.super_resolve(lr, graphs.encoder(lr).d)
        print(f"max abs difference to PyTorch at 37x53: {(got - expected).abs().max().item():.2e}")
    return 0
