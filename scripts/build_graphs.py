"""Build the split ONNX graphs of every bundled model into the package (``src/kdsr/graphs/NAME``), so that a wheel
built after it installs and upscales without torch (onnxruntime or OpenVINO). The graphs are generated files, not in
git: run this before ``python -m build`` (``.ci/run`` and ``scripts/check_core_install.sh`` do; the test session
builds missing ones itself).

    python scripts/build_graphs.py            # every bundled model
    python scripts/build_graphs.py kdsr-real-x4
"""

from __future__ import annotations

import argparse

from kdsr.bundled import bundled_models
from kdsr.inference.graph_cache import build_shipped_graphs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="bundled models (default: all)")
    args = parser.parse_args()
    models = bundled_models()
    unknown = sorted(set(args.names) - set(models))
    if unknown:
        raise SystemExit(f"not bundled: {', '.join(unknown)}")
    for name in args.names or sorted(models):
        print(f"{name}: {build_shipped_graphs(name, models[name])}")


if __name__ == "__main__":
    main()
