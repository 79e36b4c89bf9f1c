"""Flat colours and borders: how far from its colour a flat image comes out, with and without the upscaler's
border padding and colour fix (not a test; the tests check the fixed path within 3 levels).

    python benchmarks/flat_colour.py [-n kdsr-real-x4 -n kdsr-iso-x4]

Prints, per model and image size, the largest deviation in 8-bit levels over seven colours (black, white, saturated
green, red, blue, grey, orange) for the raw network (zero padding, no fix), with border padding only, and with both
(what ``kdsr upscale`` does).
"""

from __future__ import annotations

import argparse

import numpy as np

from kdsr.inference import Upscaler

COLOURS = [(0, 0, 0), (255, 255, 255), (0, 200, 0), (255, 0, 0), (0, 0, 255), (128, 128, 128), (250, 200, 20)]
SIZES = [(1, 1), (5, 7), (48, 64), (512, 512)]
WAYS = {"raw": {"border_pad": 0, "fix_color": False}, "border pad": {"fix_color": False}, "pad + colour fix": {}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--model", action="append", default=None)
    args = parser.parse_args()
    print("| model | size (h x w) | " + " | ".join(WAYS) + " |")
    print("|---|---|" + "---|" * len(WAYS))
    for name in args.model or ["kdsr-real-x4", "kdsr-iso-x4"]:
        upscalers = {way: Upscaler(name, device="cpu", precision="fp32", **kw) for way, kw in WAYS.items()}
        for size in SIZES:
            cells = []
            for upscaler in upscalers.values():
                worst = 0
                for colour in COLOURS:
                    out = upscaler.upscale(np.zeros((*size, 3), np.uint8) + np.array(colour, np.uint8))
                    worst = max(worst, int(np.abs(out.astype(int) - np.array(colour)).max()))
                cells.append(str(worst))
            print(f"| {name} | {size[0]} x {size[1]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
