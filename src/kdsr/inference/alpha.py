"""The alpha channel of RGBA images: colour under transparent pixels filled so that edges do not darken, alpha
upscaled by the network (as a grey image) or bicubic, and constant alpha kept exact (opaque stays 255, transparent 0).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from kdsr.image_ops import cubic_upscale, local_min_max, smooth

if TYPE_CHECKING:
    from kdsr.inference.streaming import StreamRGB


def fill_transparent(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Replace the colour of fully transparent pixels by that of nearby visible ones.

    Files often store black under alpha 0; upscaling that would bleed dark fringes into the visible edges.
    """
    visible = (alpha > 0).astype(np.float32)
    if visible.all() or not visible.any():
        return rgb
    filled = rgb.copy()
    todo = visible == 0
    for sigma in (2.0, 8.0, 32.0, 128.0):
        weight = smooth(visible, sigma)
        colour = smooth(rgb * visible[..., None], sigma)
        reached = todo & (weight > 1e-4)
        filled[reached] = colour[reached] / weight[reached][:, None]
        todo &= ~reached
        if not todo.any():
            return filled
    filled[todo] = (rgb * visible[..., None]).sum((0, 1)) / visible.sum()
    return filled


class FlatAlpha:
    """Where the LR alpha is locally constant ((2 radius + 1)^2 neighbourhood), the upscaled alpha is set to exactly
    that value: opaque stays 255, transparent stays 0, whatever the network did near them. Applied to output blocks
    as they are made."""

    def __init__(self, alpha: np.ndarray, scale: int, radius: int = 2) -> None:
        low, high = local_min_max(alpha, radius)
        self.flat, self.alpha, self.scale = low == high, alpha, scale

    def apply(self, top: int, left: int, block: np.ndarray) -> np.ndarray:
        """An (h, w) block of the upscaled alpha whose top-left output pixel is (``top``, ``left``), on whole LR
        pixels, with the flat pixels set."""
        s = self.scale
        box = (slice(top // s, (top + block.shape[0]) // s), slice(left // s, (left + block.shape[1]) // s))
        flat = np.repeat(np.repeat(self.flat[box], s, axis=0), s, axis=1)
        value = np.repeat(np.repeat(self.alpha[box], s, axis=0), s, axis=1)
        return np.where(flat, value, block)


def bicubic_rows(channel: np.ndarray, scale: int, first: int, last: int) -> np.ndarray:
    """Output rows of LR rows ``[first, last)`` of the bicubic x ``scale`` upsampling (OpenCV's) of (H, W) float32
    ``channel``: the same as those rows of the whole image's, from the LR rows they need (a 4-tap kernel)."""
    height = channel.shape[0]
    context = 3
    top, bottom = max(first - context, 0), min(last + context, height)
    part = cubic_upscale(channel[top:bottom], scale)
    return part[(first - top) * scale : (last - top) * scale]


def upscale_rgba(
    pixels: np.ndarray,
    stream_rgb: StreamRGB,
    out: np.ndarray,
    scale: int,
    upsampler: str,
    to_output: Callable[[np.ndarray], np.ndarray],
) -> None:
    """(H, W, 4) float RGBA in [0, 1] upscaled into ``out`` (sH, sW, 4), block by block.
    ``stream_rgb(lr, own_idr, emit)`` upscales a (3, H, W) float image with the network (``own_idr``: the image's own
    IDR, for the alpha channel; else the caller's choice); ``to_output`` turns float pixels into ``out``'s dtype.
    ``upsampler`` is ``kdsr`` (alpha through the network, then :class:`FlatAlpha`) or ``bicubic``."""
    height = pixels.shape[0]
    rgb, alpha = pixels[:, :, :3], np.ascontiguousarray(pixels[:, :, 3])

    def emit_rgb(top: int, left: int, block: np.ndarray) -> None:
        out[top : top + block.shape[1], left : left + block.shape[2], :3] = to_output(block.transpose(1, 2, 0))

    stream_rgb(np.ascontiguousarray(fill_transparent(rgb, alpha).transpose(2, 0, 1)), False, emit_rgb)
    if upsampler == "kdsr":
        flat = FlatAlpha(alpha, scale)

        def emit_alpha(top: int, left: int, block: np.ndarray) -> None:
            value = np.clip(flat.apply(top, left, block.mean(axis=0)), 0, 1)
            out[top : top + block.shape[1], left : left + block.shape[2], 3] = to_output(value)

        stream_rgb(np.repeat(alpha[None], 3, axis=0), True, emit_alpha)
        return
    strip = 64
    for first in range(0, height, strip):
        last = min(first + strip, height)
        value = np.clip(bicubic_rows(alpha, scale, first, last), 0, 1)
        out[first * scale : last * scale, :, 3] = to_output(value)
