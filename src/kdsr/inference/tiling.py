"""Tiled inference with the IDR estimated once per image.

The IDR is a property of the whole image. :func:`estimate_idr` computes it exactly as the untiled encoder does, but
in tiles: every conv of the encoder is 3x3, so a tile extended by the encoder's receptive radius yields exact
pre-pool features in its interior, and the global average pool is the sum of the tile interiors divided by the pixel
count. On large images a bounded view (grid cells, one per row and column) caps the encoder's cost.
:func:`tiled_super_resolve` then runs the generator tile by tile with that one IDR: each tile gets
``tile_pad`` pixels of context (cropped away) and adjacent tiles overlap by ``overlap`` pixels that are blended with
linear ramps, so no seams show. Peak memory depends on the tile size, not on the image size.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator

import torch

from kdsr.models import IDR, KDSRStudent


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


@torch.no_grad()
def estimate_idr(
    model: KDSRStudent,
    lr: torch.Tensor,
    tile: int = 0,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
    view: int = 0,
) -> IDR:
    """The student's IDR of ``lr`` (B, 3, H, W), computed in tiles of ``tile`` pixels (0: at once) on ``device`` in
    ``dtype`` (default: those of ``lr``), from the features of :func:`view_regions` (``view`` 0: the whole image).

    Every region is computed with the encoder's receptive radius of real context around it, so the pooled features
    are exactly the whole-image features averaged over the regions: with ``view`` 0 the result equals
    ``model.encode(lr)`` up to float summation order.
    """
    encoder = model.encoder
    device, dtype = device or lr.device, dtype or lr.dtype
    _, _, height, width = lr.shape
    regions = view_regions(height, width, view)
    if len(regions) == 1 and (tile <= 0 or (height <= tile and width <= tile)):
        return encoder(lr.to(device, dtype))
    halo = encoder.receptive_radius
    lr = encoder.prepare(lr)  # the energy encoder standardises by the whole image's statistics, then tiles
    total, count = None, 0
    for ry0, ry1, rx0, rx1 in regions:
        step_y, step_x = (tile, tile) if tile > 0 else (ry1 - ry0, rx1 - rx0)
        for y0, x0 in itertools.product(range(ry0, ry1, step_y), range(rx0, rx1, step_x)):  # a partition
            y1, x1 = min(y0 + step_y, ry1), min(x0 + step_x, rx1)
            cy0, cx0 = max(y0 - halo, 0), max(x0 - halo, 0)
            crop = lr[:, :, cy0 : min(y1 + halo, height), cx0 : min(x1 + halo, width)].to(device, dtype)
            features = encoder.feature_map(crop)[:, :, y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0]
            part = features.float().sum(dim=(2, 3))
            total = part if total is None else total + part
            count += (y1 - y0) * (x1 - x0)
    return encoder.from_pooled((total / count).to(dtype))


def _ramp(length: int, fade: int, fade_start: bool, fade_end: bool) -> torch.Tensor:
    """1-D blend weights: linear ramps of ``fade`` pixels at the tile's inner edges, 1 elsewhere (never 0)."""
    w = torch.ones(length)
    if fade > 0:
        ramp = (torch.arange(length, dtype=torch.float32) + 0.5) / fade
        if fade_start:
            w = torch.minimum(w, ramp)
        if fade_end:
            w = torch.minimum(w, ramp.flip(0))
    return w


@torch.no_grad()
def tiled_super_resolve(
    model: KDSRStudent,
    lr: torch.Tensor,
    d: torch.Tensor,
    tile: int,
    tile_pad: int,
    overlap: int,
    device: torch.device,
    dtype: torch.dtype,
    on_tile: Callable[[], None] | None = None,
) -> torch.Tensor:
    """Generator output for ``lr`` (B, 3, H, W, on any device) conditioned on ``d``, as float32 on ``lr.device``.

    Only one tile at a time lives on ``device``; the output is accumulated on ``lr``'s device.
    """
    s = model.scale
    b, _, height, width = lr.shape
    d = d.to(device, dtype)
    if tile <= 0 or (height <= tile and width <= tile):
        out = model.super_resolve(lr.to(device, dtype), d).float().to(lr.device)
        if on_tile:
            on_tile()
        return out
    overlap = min(overlap, tile // 2)
    out = torch.zeros(b, 3, height * s, width * s, dtype=torch.float32, device=lr.device)
    weight = torch.zeros(1, 1, height * s, width * s, dtype=torch.float32, device=lr.device)
    for y0, y1, x0, x1 in tiles(height, width, tile, overlap):
        cy0, cx0 = max(y0 - tile_pad, 0), max(x0 - tile_pad, 0)
        cy1, cx1 = min(y1 + tile_pad, height), min(x1 + tile_pad, width)
        sr = model.super_resolve(lr[:, :, cy0:cy1, cx0:cx1].to(device, dtype), d).float().to(lr.device)
        sr = sr[:, :, (y0 - cy0) * s : (y1 - cy0) * s, (x0 - cx0) * s : (x1 - cx0) * s]
        wy = _ramp((y1 - y0) * s, overlap * s, y0 > 0, y1 < height)
        wx = _ramp((x1 - x0) * s, overlap * s, x0 > 0, x1 < width)
        w = (wy[:, None] * wx[None, :]).to(lr.device)
        out[:, :, y0 * s : y1 * s, x0 * s : x1 * s] += sr * w
        weight[:, :, y0 * s : y1 * s, x0 * s : x1 * s] += w
        if on_tile:
            on_tile()
    return out.div_(weight)
