"""The alpha channel of RGBA images: colour under transparent pixels filled so that edges do not darken, alpha
upscaled by the network (as a grey image) or bicubic, and constant alpha kept exact (opaque stays 255, transparent 0).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np


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
        weight = cv2.GaussianBlur(visible, (0, 0), sigma)
        colour = cv2.GaussianBlur(rgb * visible[..., None], (0, 0), sigma)
        reached = todo & (weight > 1e-4)
        filled[reached] = colour[reached] / weight[reached][:, None]
        todo &= ~reached
        if not todo.any():
            return filled
    filled[todo] = (rgb * visible[..., None]).sum((0, 1)) / visible.sum()
    return filled


def keep_flat_alpha(alpha_out: np.ndarray, alpha: np.ndarray, scale: int, radius: int = 2) -> np.ndarray:
    """Upscaled alpha (sH, sW) with every pixel whose LR neighbourhood ((2 radius + 1)^2 pixels) has one alpha value
    set to exactly that value: opaque stays 255, transparent stays 0, whatever the network did near them."""
    size = 2 * radius + 1
    kernel = np.ones((size, size), np.uint8)
    low = cv2.erode(alpha, kernel, borderType=cv2.BORDER_REPLICATE)
    high = cv2.dilate(alpha, kernel, borderType=cv2.BORDER_REPLICATE)
    flat = np.repeat(np.repeat(low == high, scale, axis=0), scale, axis=1)
    value = np.repeat(np.repeat(alpha, scale, axis=0), scale, axis=1)
    return np.where(flat, value, alpha_out)


def upscale_rgba(
    pixels: np.ndarray, run_rgb: Callable[[np.ndarray, bool], np.ndarray], scale: int, upsampler: str
) -> np.ndarray:
    """(H, W, 4) float RGBA in [0, 1] -> (sH, sW, 4). ``run_rgb(rgb, own_idr)`` upscales an (H, W, 3) float image
    with the network (``own_idr``: the image's own IDR, for the alpha channel; else the caller's choice).
    ``upsampler`` is ``kdsr`` (alpha through the network, then :func:`keep_flat_alpha`) or ``bicubic``."""
    height, width = pixels.shape[:2]
    rgb, alpha = pixels[:, :, :3], pixels[:, :, 3]
    rgb_out = run_rgb(fill_transparent(rgb, alpha), False)
    if upsampler == "kdsr":
        alpha_out = run_rgb(np.repeat(alpha[:, :, None], 3, axis=2), True).mean(axis=2)
        alpha_out = keep_flat_alpha(alpha_out, alpha, scale)
    else:
        alpha_out = cv2.resize(alpha, (width * scale, height * scale), interpolation=cv2.INTER_CUBIC)
    return np.concatenate([rgb_out, np.clip(alpha_out, 0, 1)[:, :, None]], axis=2)
