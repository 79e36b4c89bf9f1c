#!/usr/bin/env bash
# Packaging check (CI, and before a release): build the wheel and the sdist, check their metadata, install the wheel
# alone into a fresh venv (the core dependencies: no torch, no OpenCV) and run the core commands from outside the
# clone, so that a file missing from the wheel or a core path that needs torch fails here; then install it beside a
# host's pinned numpy and opencv-python (a venv like chaiNNer's or ComfyUI's) and check that neither changes; last,
# `pip install .` of the clone's own files (no generated graphs) into a fresh venv: its first run writes the bundled
# model's graphs from the weights, still without torch.
#   scripts/check_core_install.sh            (run from the repository root, in a venv with build and twine)
set -euo pipefail
repo=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python scripts/build_graphs.py >/dev/null  # the bundled models' graphs (generated, not in git) go into the wheel
python -m build --wheel --sdist --outdir "$work/dist" . >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
twine check --strict "$work"/dist/*
wheel=$(ls "$work"/dist/*.whl)

python3 -m venv "$work/core"
start=$(date +%s)
"$work/core/bin/pip" install -q "$wheel"
echo "core install: $(($(date +%s) - start)) s, $(du -sm "$work/core" | cut -f1) MB"
cd "$work"
export KDSR_CACHE="$work/cache"
"$work/core/bin/kdsr" models >/dev/null
"$work/core/bin/kdsr" upscale -i "$repo/assets/sample.png" -o "$work/out.png" -v 2>"$work/upscale.log"
grep -q "torch-free path" "$work/upscale.log" || { cat "$work/upscale.log"; exit 1; }
"$work/core/bin/kdsr" estimate -i "$repo/assets/sample.png" | grep -q "noise (0-255)"
if "$work/core/bin/kdsr" train x.yaml -o run 2>"$work/train.log"; then exit 1; fi
grep -q "needs PyTorch" "$work/train.log" || { cat "$work/train.log"; exit 1; }
"$work/core/bin/python" - "$repo/assets/sample.png" <<'PY'
import sys
import kdsr
out = kdsr.upscale(sys.argv[1], denoise=0.5)
assert out.shape == (320, 480, 3), out.shape
assert "torch" not in sys.modules and "cv2" not in sys.modules, "the core path imported torch or OpenCV"
PY
echo "core install: upscale, estimate, models and the Python API ran without torch"

python3 -m venv "$work/host"
"$work/host/bin/pip" install -q numpy==1.24.4 opencv-python==4.8.0.76
"$work/host/bin/pip" install -q "$wheel"
"$work/host/bin/python" -c "
import numpy, cv2
assert numpy.__version__ == '1.24.4' and cv2.__version__.startswith('4.8.0'), (numpy.__version__, cv2.__version__)
import kdsr
assert kdsr.upscale('$repo/assets/sample.png').shape == (320, 480, 3)
"
echo "host venv: numpy 1.24.4 and opencv-python 4.8.0.76 unchanged by the install, and kdsr runs there"

mkdir "$work/clone"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf -) | tar -xf - -C "$work/clone"
test ! -e "$work/clone/src/kdsr/graphs"
python3 -m venv "$work/bare"
start=$(date +%s)
"$work/bare/bin/pip" install -q "$work/clone"
echo "clone install (pip install .): $(($(date +%s) - start)) s, $(du -sm "$work/bare" | cut -f1) MB"
export KDSR_CACHE="$work/bare-cache"
start=$(date +%s%N)
"$work/bare/bin/kdsr" upscale -i "$repo/assets/sample.png" -o "$work/bare-out.png" -v 2>"$work/bare.log"
echo "clone install: first image $(( ($(date +%s%N) - start) / 1000000 )) ms, graphs written on the way"
grep -q "torch-free path" "$work/bare.log" || { cat "$work/bare.log"; exit 1; }
test "$(find "$work/bare-cache" -name '*.onnx' | wc -l)" = 3
"$work/bare/bin/python" -c "import importlib.util as u; assert u.find_spec('torch') is None, 'torch was installed'"
echo "clone install: kdsr upscale wrote the default model's graphs from its weights and ran without torch"
