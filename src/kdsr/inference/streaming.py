"""kdsr's image pipeline in bounded memory: the generator tile by tile, the output finished block by block.

Upscaling a 3000x2000 photo x4 makes a 12000x8000 result: 288 MB as 8-bit, 1.15 GB as one float32 copy, and the
whole-image pipeline (:func:`kdsr.inference.upscaler.run_pipeline`: blended accumulator, border crop, colour fix)
held many such copies. Here the generator's tiles run row by row, left to right (:mod:`kdsr.inference.tile_plan`);
a block of the output is complete once no later tile reaches it, and final once the pixels the colour fix looks at
(:data:`~kdsr.constants.COLOR_FIX_SIGMA` x 3 LR pixels around it) are complete too; it is then handed to the
caller, who writes it into a preallocated 8/16-bit output. Float buffers hold a band of the previous tile row and a
window of the current one, whatever the image's size.

The result equals the whole-image pipeline's within float rounding: the same tiles and blend weights, the colour fix
with its full context (the image's edges replicated as before). Torch-free: the torch backend and the graph
runtimes only supply the tile function.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from kdsr.constants import COLOR_FIX_SIGMA
from kdsr.inference.tile_plan import axis_tiles, generator_tiles, ramp, runs_whole

#: LR rows per colour-fixed block: its temporaries (a dozen float copies of the block and the fix's context) stay
#: small, at the price of blurring the context rows again for the next block
FIX_ROWS = 48

#: (1, 3, h, w) float32 LR crop -> (1, 3, sh, sw) float32 generator output (the IDR is the caller's)
TileFunction = Callable[[np.ndarray], np.ndarray]

#: ``emit(top, left, block)``: a final output block (3, h, w) float32 in [0, 1] whose top-left output pixel is
#: (``top``, ``left``); the blocks tile the output exactly once
Emit = Callable[[int, int, np.ndarray], None]

#: ``stream_rgb(lr, own_idr, emit)``: (3, H, W) float32 in [0, 1] upscaled, its final blocks handed to ``emit``;
#: ``own_idr`` asks for the image's own IDR (the alpha channel) instead of the caller's choice.
StreamRGB = Callable[[np.ndarray, bool, Emit], None]


def color_fix_radius(sigma: float = COLOR_FIX_SIGMA) -> int:
    """LR pixels either side that the colour fix's Gaussian reaches."""
    return max(math.ceil(3 * sigma), 1)


def gaussian_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian low-pass of (H, W, C) float32 with edge-replicated borders (a flat image stays flat)."""
    from kdsr.image_ops import separable_filter

    radius = color_fix_radius(sigma)
    taps = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-(taps**2) / (2 * sigma**2))
    return separable_filter(x, (kernel / kernel.sum()).astype(np.float32))


def bilinear_block(lr: np.ndarray, rows: tuple[int, int], columns: tuple[int, int], scale: int) -> np.ndarray:
    """The part of the bilinear upsampling (torch's, ``align_corners=False``) of (C, H, W) ``lr`` by ``scale`` that
    LR rows ``rows`` and columns ``columns`` (start, stop) become, computed from the LR pixels it needs."""
    _, height, width = lr.shape

    def taps(n: int, span: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        source = np.arange(span[0] * scale, span[1] * scale, dtype=np.float32)
        source = np.maximum((source + 0.5) / scale - 0.5, 0)
        low = source.astype(np.int64)
        return low, np.minimum(low + 1, n - 1), (source - low).astype(np.float32)

    low, high, fy = taps(height, rows)
    part = lr[:, low] * (1 - fy)[None, :, None] + lr[:, high] * fy[None, :, None]
    low, high, fx = taps(width, columns)
    return part[:, :, low] * (1 - fx) + part[:, :, high] * fx


def fix_block(
    sr: np.ndarray,
    lr: np.ndarray,
    window: tuple[int, int, int, int],
    keep: tuple[int, int, int, int],
    scale: int,
    sigma: float = COLOR_FIX_SIGMA,
) -> np.ndarray:
    """The colour fix (:func:`kdsr.inference.fidelity.color_fix`) of the LR box ``keep`` (y0, y1, x0, x1) of the
    output, from ``sr``: the network output of the LR box ``window``, which holds ``keep`` and the
    :func:`color_fix_radius` around it (less where the image ends, whose edges are replicated as in the whole-image
    fix). Returns (C, h, w) for ``keep``, clipped to [0, 1]."""
    s = scale
    wy0, wy1, wx0, wx1 = window
    ky0, ky1, kx0, kx1 = keep
    c, rows, columns = lr.shape[0], wy1 - wy0, wx1 - wx0
    diff = bilinear_block(lr, (wy0, wy1), (wx0, wx1), s) - sr
    phases = diff.reshape(c, rows, s, columns, s).transpose(1, 3, 0, 2, 4).reshape(rows, columns, -1)
    low = gaussian_blur(np.ascontiguousarray(phases), sigma)[ky0 - wy0 : ky1 - wy0, kx0 - wx0 : kx1 - wx0]
    back = low.reshape(ky1 - ky0, kx1 - kx0, c, s, s).transpose(2, 0, 3, 1, 4).reshape(c, (ky1 - ky0) * s, -1)
    out = sr[:, (ky0 - wy0) * s : (ky1 - wy0) * s, (kx0 - wx0) * s : (kx1 - wx0) * s] + back
    return np.clip(out, 0, 1, out=out)


class Layout(NamedTuple):
    """How :func:`stream_upscale` cuts and finishes an image: the model's scale, the LR tile (0: whole), its context
    and blended overlap, the edge replication around the image, and the colour fix."""

    scale: int
    tile: int
    tile_pad: int
    overlap: int
    border_pad: int
    fix_color: bool = True


def stream_upscale(
    lr: np.ndarray, run_tile: TileFunction, emit: Emit, layout: Layout, on_tile: Callable[[], None] | None = None
) -> None:
    """Upscale (3, H, W) float32 ``lr`` in [0, 1] as :func:`kdsr.inference.upscaler.run_pipeline` does (edges
    replicated, generator tiles with context blended over their overlaps, border cropped, colour fix; ``layout``),
    handing each final block to ``emit`` as soon as it is known.

    Tiles run row by row, left to right. After tile (i, j), the output is complete above tile row i + 1 and, within
    the rows of tile row i, left of tile j + 1; a block is final once it and the colour fix's radius around it are
    complete. So only a band of the previous tile row (full width, 2 radii + the overlap high) and a window of the
    current one (about one tile wide) are held in float.
    """
    s, pad, tile_pad, fix_color = layout.scale, layout.border_pad, layout.tile_pad, layout.fix_color
    _, height, width = lr.shape
    tile = 0 if runs_whole(height + 2 * pad, width + 2 * pad, layout.tile) else layout.tile
    overlap = min(layout.overlap, tile // 2)
    radius = color_fix_radius() if fix_color else 0
    row_spans = [_real(span, pad, height) for span in axis_tiles(height + 2 * pad, tile, overlap)]
    column_spans = [_real(span, pad, width) for span in axis_tiles(width + 2 * pad, tile, overlap)]
    row_weight = _axis_weight(height + 2 * pad, tile, overlap, s)[pad * s : (height + pad) * s]
    column_weight = _axis_weight(width + 2 * pad, tile, overlap, s)[pad * s : (width + pad) * s]
    final_rows = _final_bounds(row_spans, radius, height)
    final_columns = _final_bounds(column_spans, radius, width)
    parts = generator_tiles(height + 2 * pad, width + 2 * pad, tile, tile_pad, overlap, s)
    carry = _Window(0, 0, s, width)  # blended sums the previous tile row left for this one (full width)

    def finish(window: _Window, keep: tuple[int, int, int, int]) -> None:
        """Emit the final block ``keep`` (LR box) from ``window``, which holds it and its colour-fix context."""
        context = (max(keep[0] - radius, 0), min(keep[1] + radius, height),
                   max(keep[2] - radius, 0), min(keep[3] + radius, width))  # fmt: skip
        weight = row_weight[context[0] * s : context[1] * s, None] * column_weight[context[2] * s : context[3] * s]
        block = window.read(context) / weight
        emit(keep[0] * s, keep[2] * s, fix_block(block, lr, context, keep, s) if fix_color else np.clip(block, 0, 1))

    for i, (top, bottom) in enumerate(row_spans):
        window = _Window(max(final_rows[i] - radius, 0), bottom, s, 0)  # the rows this tile row's blocks read
        next_top = max(final_rows[i + 1] - radius, 0) if i + 1 < len(row_spans) else bottom
        next_carry = _Window(next_top, bottom, s, width)
        for j, (tile_left, tile_right) in enumerate(column_spans):
            part = next(parts)
            window.widen(tile_right, carry)
            sr = run_tile(_padded_crop(lr, pad, *part.crop))[0][(..., *part.keep)] * part.weight
            y0, x0 = part.place[0].start // s - pad, part.place[1].start // s - pad  # the tile's LR origin
            window.add(sr[:, (top - y0) * s : (bottom - y0) * s, (tile_left - x0) * s : (tile_right - x0) * s],
                       top, tile_left)  # fmt: skip
            if on_tile:
                on_tile()
            if final_columns[j + 1] > final_columns[j]:
                for y_top, y_bottom in _chunks(final_rows[i], final_rows[i + 1], FIX_ROWS):
                    finish(window, (y_top, y_bottom, final_columns[j], final_columns[j + 1]))
            last = j + 1 == len(column_spans)
            window.release(tile_right if last else max(final_columns[j + 1] - radius, window.left), next_carry)
        carry = next_carry


class _Window:
    """Blended (not yet normalised) output of the LR rows [top, bottom) and columns [left, left + width): what a
    tile row holds in float. It grows to the right as tiles come and lets go of columns no later block reads."""

    def __init__(self, top: int, bottom: int, scale: int, width: int) -> None:
        self.top, self.bottom, self.scale, self.left = top, bottom, scale, 0
        self.data = np.zeros((3, (bottom - top) * scale, width * scale), np.float32)

    @property
    def right(self) -> int:
        return self.left + self.data.shape[2] // self.scale

    def rows(self, top: int, bottom: int) -> slice:
        return slice((top - self.top) * self.scale, (bottom - self.top) * self.scale)

    def columns(self, left: int, right: int) -> slice:
        return slice((left - self.left) * self.scale, (right - self.left) * self.scale)

    def widen(self, right: int, carry: _Window) -> None:
        """Reach column ``right``, the new columns starting from what the tile row above left in ``carry``."""
        if right <= self.right:
            return
        grown = np.zeros((*self.data.shape[:2], (right - self.left) * self.scale), np.float32)
        grown[:, :, : self.data.shape[2]] = self.data
        y0, y1 = max(carry.top, self.top), min(carry.bottom, self.bottom)
        if y1 > y0:
            grown[:, self.rows(y0, y1), (self.right - self.left) * self.scale :] = carry.data[
                :, carry.rows(y0, y1), carry.columns(self.right, right)
            ]
        self.data = grown

    def add(self, part: np.ndarray, top: int, left: int) -> None:
        h, w = part.shape[1] // self.scale, part.shape[2] // self.scale
        self.data[:, self.rows(top, top + h), self.columns(left, left + w)] += part

    def read(self, box: tuple[int, int, int, int]) -> np.ndarray:
        return self.data[:, self.rows(box[0], box[1]), self.columns(box[2], box[3])]

    def release(self, drop: int, carry: _Window) -> None:
        """Let go of the columns left of ``drop``, first copying the rows the next tile row needs into ``carry``."""
        if drop <= self.left:
            return
        carry.data[:, :, carry.columns(self.left, drop)] = self.data[
            :, self.rows(carry.top, self.bottom), : (drop - self.left) * self.scale
        ]
        self.data, self.left = self.data[:, :, (drop - self.left) * self.scale :].copy(), drop


def _padded_crop(lr: np.ndarray, pad: int, rows: slice, columns: slice) -> np.ndarray:
    """(1, C, h, w): the crop ``rows`` x ``columns`` of ``lr`` with its edges replicated ``pad`` pixels on every side
    (coordinates of that padded image), made without padding the whole image."""
    _, height, width = lr.shape
    y = np.clip(np.arange(rows.start, rows.stop) - pad, 0, height - 1)
    x = np.clip(np.arange(columns.start, columns.stop) - pad, 0, width - 1)
    return np.ascontiguousarray(lr[:, y][:, :, x][None])


def _chunks(start: int, stop: int, size: int) -> list[tuple[int, int]]:
    return [(y, min(y + size, stop)) for y in range(start, stop, size)]


def _real(span: tuple[int, int], pad: int, length: int) -> tuple[int, int]:
    """A tile span of the border-padded axis as a span of the image's own pixels."""
    return min(max(span[0] - pad, 0), length), min(max(span[1] - pad, 0), length)


def _final_bounds(spans: list[tuple[int, int]], radius: int, length: int) -> list[int]:
    """Where the final blocks split an axis: after tile k, everything before tile k + 1's start is complete, and
    what lies ``radius`` before it is final."""
    bounds = [0]
    for start, _ in spans[1:]:
        bounds.append(min(max(start - radius, bounds[-1]), length))
    return [*bounds, length]


def _axis_weight(length: int, tile: int, overlap: int, scale: int) -> np.ndarray:
    """The sum of the blend ramps of every tile along one axis (output pixels): tiles form a grid, so the total
    weight at (y, x) is this of y times this of x."""
    total = np.zeros(length * scale, np.float32)
    spans = axis_tiles(length, tile, overlap)
    for start, stop in spans:
        total[start * scale : stop * scale] += ramp((stop - start) * scale, overlap * scale, start > 0, stop < length)
    return total
