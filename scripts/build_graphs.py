"""Build the split ONNX graphs of every bundled model into the package (``src/kdsr/graphs/NAME``), so that an
install without torch upscales with them (onnxruntime or OpenVINO). Run after a bundled model changes; the test
suite fails while a model's shipped graphs were built from another file (``tests/test_shipped_graphs.py``).

    python scripts/build_graphs.py            # every bundled model
    python scripts/build_graphs.py kdsr-real-x4
"""

from __future__ import annotations

import argparse
import json

from kdsr.atomic import atomic_folder
from kdsr.bundled import bundled_models
from kdsr.checkpoint import load_model
from kdsr.export.onnx import export_onnx_split
from kdsr.inference.graph_files import SHIPPED_SOURCE, file_digest, shipped_graphs_root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="bundled models (default: all)")
    args = parser.parse_args()
    models = bundled_models()
    unknown = sorted(set(args.names) - set(models))
    if unknown:
        raise SystemExit(f"not bundled: {', '.join(unknown)}")
    for name in args.names or sorted(models):
        path = models[name]
        with atomic_folder(shipped_graphs_root() / name) as folder:
            export_onnx_split(load_model(path), folder)
            (folder / SHIPPED_SOURCE).write_text(json.dumps({"weights": file_digest(path)}) + "\n")
        print(f"{name}: {shipped_graphs_root() / name}")


if __name__ == "__main__":
    main()
