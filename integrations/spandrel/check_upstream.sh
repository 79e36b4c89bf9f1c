#!/usr/bin/env bash
# Run the KDSR contribution's tests with spandrel's own test helpers: copy it into a scratch copy of a spandrel
# checkout (given as $1) and run tests/test_KDSR.py there (needs pytest, syrupy, requests, beautifulsoup4, cv2).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$1"/. "$work"
cp -r "$here/libs" "$work/"
cp "$here/tests/test_KDSR.py" "$work/tests/"
cd "$work"
PYTHONPATH="$work/libs/spandrel${PYTHONPATH:+:$PYTHONPATH}" python -m pytest -q -p no:cacheprovider tests/test_KDSR.py
