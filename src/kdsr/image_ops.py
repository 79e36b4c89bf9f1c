"""The few filters and resizes of OpenCV that kdsr's pipeline uses, run by OpenCV where it is installed and by numpy
(or Pillow) where it is not, so that the core install needs no OpenCV (which would replace a host's numpy or cv2).
The numpy versions follow OpenCV's definitions (edge-replicated borders, OpenCV's bicubic); the tests compare both.
"""

from __future__ import annotations

import numpy as np

from kdsr.image_io import opencv


def separable_filter(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C) float32 filtered by the odd-length 1-D ``kernel`` along rows and columns, borders
    edge-replicated (OpenCV's ``sepFilter2D`` with ``BORDER_REPLICATE``)."""
    cv2 = opencv()
    kernel = kernel.astype(np.float32)
    if cv2 is not None:
        return cv2.sepFilter2D(x, cv2.CV_32F, kernel, kernel, borderType=cv2.BORDER_REPLICATE).reshape(x.shape)
    radius = len(kernel) // 2
    out = x.astype(np.float32)
    for axis in (0, 1):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="edge")
        length = out.shape[axis]
        out = sum(
            np.float32(weight) * np.take(padded, np.arange(tap, tap + length), axis=axis)
            for tap, weight in enumerate(kernel)
        )
    return out.astype(np.float32)


def smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian-like low-pass of (H, W) or (H, W, C) float32 of width ``sigma`` pixels, for weights that only need
    to be smooth (OpenCV's Gaussian; without it, three box filters of the same variance, whose cost does not grow
    with ``sigma``)."""
    cv2 = opencv()
    if cv2 is not None:
        return cv2.GaussianBlur(x, (0, 0), sigma)
    width = max(int(round(np.sqrt(4 * sigma * sigma + 1))), 1) | 1  # 3 boxes of width w: variance 3 (w^2 - 1) / 12
    out = x.astype(np.float32)
    for _ in range(3):
        for axis in (0, 1):
            out = _box(out, width, axis)
    return out


def _box(x: np.ndarray, width: int, axis: int) -> np.ndarray:
    """Mean over ``width`` (odd) neighbours along ``axis``, edge-replicated, by a running sum."""
    radius = width // 2
    pad = [(0, 0)] * x.ndim
    pad[axis] = (radius + 1, radius)
    sums = np.cumsum(np.pad(x, pad, mode="edge"), axis=axis, dtype=np.float64)
    length = x.shape[axis]
    upper = np.take(sums, np.arange(width, width + length), axis=axis)
    lower = np.take(sums, np.arange(0, length), axis=axis)
    return ((upper - lower) / width).astype(np.float32)


def local_min_max(x: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """The minimum and maximum of (H, W) ``x`` over each (2 radius + 1)^2 square, borders edge-replicated (OpenCV's
    erode and dilate)."""
    size = 2 * radius + 1
    cv2 = opencv()
    if cv2 is not None:
        kernel = np.ones((size, size), np.uint8)
        return (cv2.erode(x, kernel, borderType=cv2.BORDER_REPLICATE),
                cv2.dilate(x, kernel, borderType=cv2.BORDER_REPLICATE))  # fmt: skip
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(x, radius, mode="edge"), (size, size))
    return windows.min(axis=(2, 3)), windows.max(axis=(2, 3))


#: OpenCV's bicubic coefficient
CUBIC_A = -0.75


def _cubic_weights(scale: int) -> np.ndarray:
    """(scale, 4) weights of the 4 source taps of each output phase of an x ``scale`` bicubic upsampling."""
    offsets = (np.arange(scale) + 0.5) / scale - 0.5
    frac = offsets - np.floor(offsets)
    distances = np.abs(frac[:, None] - np.arange(-1, 3)[None, :])
    a = CUBIC_A
    near = ((a + 2) * distances - (a + 3)) * distances**2 + 1
    far = ((a * distances - 5 * a) * distances + 8 * a) * distances - 4 * a
    return np.where(distances <= 1, near, np.where(distances < 2, far, 0)).astype(np.float32)


def cubic_upscale(x: np.ndarray, scale: int) -> np.ndarray:
    """(H, W) float32 upscaled by the whole factor ``scale`` with OpenCV's bicubic (``INTER_CUBIC``: a = -0.75,
    pixel centres aligned, borders replicated)."""
    cv2 = opencv()
    height, width = x.shape
    if cv2 is not None:
        return cv2.resize(x, (width * scale, height * scale), interpolation=cv2.INTER_CUBIC)
    weights = _cubic_weights(scale)
    out = x.astype(np.float32)
    for axis in (0, 1):
        length = out.shape[axis]
        pad = [(0, 0)] * out.ndim
        pad[axis] = (2, 3)
        padded = np.pad(out, pad, mode="edge")
        phases = []
        for phase in range(scale):  # output pixel i * scale + phase sits at i + shift in the source
            left = int(np.floor((phase + 0.5) / scale - 0.5))  # its nearest source pixel on the left is i + left
            taps = [np.take(padded, np.arange(length) + left + k + 1, axis=axis) for k in range(4)]
            phases.append(sum(np.float32(w) * t for w, t in zip(weights[phase], taps, strict=True)))
        out = np.stack(phases, axis=axis + 1).reshape(*out.shape[:axis], length * scale, *out.shape[axis + 1 :])
    return out


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, C) uint8/uint16 resized to ``size`` (width, height): Lanczos when enlarging, area averaging when
    shrinking (OpenCV's; Pillow's Lanczos and box filters without it)."""
    cv2 = opencv()
    enlarge = size[0] * size[1] > image.shape[0] * image.shape[1]
    if cv2 is not None:
        interpolation = cv2.INTER_LANCZOS4 if enlarge else cv2.INTER_AREA
        return cv2.resize(image, size, interpolation=interpolation).reshape(size[1], size[0], -1)
    from PIL import Image

    method = Image.Resampling.LANCZOS if enlarge else Image.Resampling.BOX
    peak = np.float32(np.iinfo(image.dtype).max)
    out = np.empty((size[1], size[0], image.shape[2]), image.dtype)
    for c in range(image.shape[2]):
        channel = Image.fromarray(image[:, :, c].astype(np.float32), "F").resize(size, method)
        out[:, :, c] = np.clip(np.rint(np.asarray(channel)), 0, peak)
    return out
