"""Where tiles go, in plain Python and numpy: shared by the torch path (:mod:`kdsr.inference.tiling`) and the
torch-free one (:mod:`kdsr.inference.fastpath`), so both cut an image the same way.

Encoder regions get the encoder's receptive radius of real context (exact pre-pool features in their interior);
generator tiles get ``tile_pad`` pixels of context (cropped away) and overlap their neighbours by ``overlap`` pixels,
blended with linear ramps.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np


def axis_tiles(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """(start, end) of tiles covering ``[0, length)``: as few as tiles of at most ``tile`` pixels sharing at least
    ``overlap`` pixels allow, all of one size and evenly spread, so that little work is repeated."""
    if tile <= 0 or tile >= length:
        return [(0, length)]
    overlap = min(overlap, tile - 1)
    count = math.ceil((length - overlap) / (tile - overlap))
    size = math.ceil((length + (count - 1) * overlap) / count)
    starts = [round(i * (length - size) / (count - 1)) for i in range(count)]
    return [(start, start + size) for start in starts]


def tiles(height: int, width: int, tile: int, overlap: int) -> Iterator[tuple[int, int, int, int]]:
    """(y0, y1, x0, x1) of every tile, row by row."""
    for y0, y1 in axis_tiles(height, tile, overlap):
        for x0, x1 in axis_tiles(width, tile, overlap):
            yield y0, y1, x0, x1


def count_tiles(height: int, width: int, tile: int, overlap: int) -> int:
    return len(axis_tiles(height, tile, overlap)) * len(axis_tiles(width, tile, overlap))


def view_regions(height: int, width: int, view: int) -> list[tuple[int, int, int, int]]:
    """(y0, y1, x0, x1) regions whose encoder features are averaged into the IDR.

    ``view`` <= 0, or an image of at most ``view`` x ``view`` pixels: the whole image. Otherwise the image is cut into
    a G x G grid (G = ceil(H * W / view^2)) and one cell per grid row and per grid column is taken (a spread
    permutation): at most about ``view``^2 pixels, and every image border is sampled in the same proportion as the
    area, so the average matches the whole image's, whose border pixels (zero padding) the encoder sees differently.
    """
    if view <= 0 or height * width <= view * view:
        return [(0, height, 0, width)]
    grid = min(math.ceil(height * width / (view * view)), height, width)
    rows = [round(i * height / grid) for i in range(grid + 1)]
    cols = [round(i * width / grid) for i in range(grid + 1)]
    step = max(round(0.618 * grid), 1)
    while math.gcd(step, grid) != 1:
        step += 1
    picks = [(i, (step * i + grid // 2) % grid) for i in range(grid)]
    return [(rows[i], rows[i + 1], cols[j], cols[j + 1]) for i, j in picks]


def runs_whole(height: int, width: int, tile: int) -> bool:
    """Whether an image runs in one piece (no tiling asked, or it fits one tile)."""
    return tile <= 0 or (height <= tile and width <= tile)


class EncoderTile(NamedTuple):
    """An encoder input crop (with context) and, in the crop's feature map, the interior that is pooled."""

    crop: tuple[slice, slice]
    interior: tuple[slice, slice]
    pixels: int


def encoder_tiles(
    height: int, width: int, regions: list[tuple[int, int, int, int]], tile: int, halo: int
) -> Iterator[EncoderTile]:
    """A partition of ``regions`` into tiles of at most ``tile`` pixels (0: one per region), each extended by
    ``halo`` pixels of real context, so that its interior features equal the whole image's there."""
    for ry0, ry1, rx0, rx1 in regions:
        step_y, step_x = (tile, tile) if tile > 0 else (ry1 - ry0, rx1 - rx0)
        for y0, x0 in itertools.product(range(ry0, ry1, step_y), range(rx0, rx1, step_x)):
            y1, x1 = min(y0 + step_y, ry1), min(x0 + step_x, rx1)
            cy0, cx0 = max(y0 - halo, 0), max(x0 - halo, 0)
            crop = (slice(cy0, min(y1 + halo, height)), slice(cx0, min(x1 + halo, width)))
            interior = (slice(y0 - cy0, y1 - cy0), slice(x0 - cx0, x1 - cx0))
            yield EncoderTile(crop, interior, (y1 - y0) * (x1 - x0))


def ramp(length: int, fade: int, fade_start: bool, fade_end: bool) -> np.ndarray:
    """1-D blend weights (float32): linear ramps of ``fade`` pixels at the tile's inner edges, 1 elsewhere (never
    0)."""
    w = np.ones(length, np.float32)
    if fade > 0:
        up = (np.arange(length, dtype=np.float32) + np.float32(0.5)) / np.float32(fade)
        if fade_start:
            w = np.minimum(w, up)
        if fade_end:
            w = np.minimum(w, up[::-1])
    return w


class GeneratorTile(NamedTuple):
    """A generator input crop (LR, with context), the part of its output kept, where that goes in the output, and
    its (sh, sw) blend weights."""

    crop: tuple[slice, slice]
    keep: tuple[slice, slice]
    place: tuple[slice, slice]
    weight: np.ndarray


def generator_tiles(
    height: int, width: int, tile: int, tile_pad: int, overlap: int, scale: int
) -> Iterator[GeneratorTile]:
    """The generator tiles of an LR image of ``height`` x ``width`` (see :func:`axis_tiles`), with ``tile_pad``
    pixels of context and ``overlap`` (at most half a tile) blended between neighbours."""
    s, overlap = scale, min(overlap, tile // 2)
    for y0, y1, x0, x1 in tiles(height, width, tile, overlap):
        cy0, cx0 = max(y0 - tile_pad, 0), max(x0 - tile_pad, 0)
        crop = (slice(cy0, min(y1 + tile_pad, height)), slice(cx0, min(x1 + tile_pad, width)))
        keep = (slice((y0 - cy0) * s, (y1 - cy0) * s), slice((x0 - cx0) * s, (x1 - cx0) * s))
        place = (slice(y0 * s, y1 * s), slice(x0 * s, x1 * s))
        wy = ramp((y1 - y0) * s, overlap * s, y0 > 0, y1 < height)
        wx = ramp((x1 - x0) * s, overlap * s, x0 > 0, x1 < width)
        yield GeneratorTile(crop, keep, place, wy[:, None] * wx[None, :])
