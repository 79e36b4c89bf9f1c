"""What every upscaler does around a network that upscales float RGB (torch-free): grey, RGB and RGBA layouts,
uint8/uint16 samples, the final size (``outscale`` or width/height) and the refusal of absurd output sizes. Shared
by the torch :class:`~kdsr.inference.upscaler.Upscaler` and the torch-free
:class:`~kdsr.inference.fastpath.FastUpscaler`, so both treat an image the same way."""

from __future__ import annotations

import os

import numpy as np

from kdsr.errors import ImageError
from kdsr.image_io import from_float, read_image, to_float
from kdsr.inference.alpha import upscale_rgba
from kdsr.inference.streaming import Emit, StreamRGB

#: Largest output we agree to build (pixels); a 16384x16384 result already needs about 4 GB of accumulators.
MAX_OUTPUT_PIXELS = 16384 * 16384


def fit_size(width: int, height: int, target_width: int | None, target_height: int | None) -> tuple[int, int] | None:
    """The final size for ``--width``/``--height``: one given, the other side follows the aspect ratio; both, that
    exact size; neither, None."""
    if target_width and target_height:
        return target_width, target_height
    if target_width:
        return target_width, max(1, round(height * target_width / width))
    if target_height:
        return max(1, round(width * target_height / height)), target_height
    return None


def check_outscale(outscale: float | None) -> None:
    """A final scale must be a positive number (None: the model's own)."""
    if outscale is not None and not outscale > 0:
        raise ImageError(f"outscale must be > 0, got {outscale}")


#: What an upscale holds besides its output and input at most (the runtime, a tile's network, the float buffers
#: of :mod:`kdsr.inference.streaming`): benchmarks/memory.py measured 510-590 MB in all at 1000x1000 to 1500x1000
WORKING_MEMORY = 600 * 2**20


def _check_memory(image: np.ndarray, scale: int, size: tuple[int, int] | None) -> None:
    """Refuse up front, with the size it would need, an upscale whose output cannot fit the memory the system has
    available now (rather than swapping for minutes, or being killed half-way)."""
    from kdsr.heap import available_memory

    height, width, channels = image.shape
    pixels = height * width * scale**2 + (size[0] * size[1] if size else 0)
    needed = pixels * channels * image.itemsize + height * width * 4 * 4 + WORKING_MEMORY  # + the float input
    available = available_memory()
    if available is not None and needed > available:
        raise ImageError(
            f"upscaling {width}x{height} x{scale} needs about {needed / 2**30:.1f} GB of memory; "
            f"{available / 2**30:.1f} GB is available"
        )


def _exact_shrink(width: int, height: int, scale: int, size: tuple[int, int] | None) -> int:
    """k > 1 when ``size`` is the model's output shrunk by a whole factor k that divides ``scale`` (x4 model, final
    x2 or x1), else 1."""
    for k in range(2, scale + 1):
        if scale % k == 0 and size == (width * scale // k, height * scale // k):
            return k
    return 1


def _shrinking(stream_rgb: StreamRGB, k: int) -> StreamRGB:
    """``stream_rgb`` whose blocks are reduced k x k by averaging (area downscaling, exact: the blocks lie on the LR
    grid, so no k x k box straddles two), handed on at the reduced coordinates."""

    def stream(lr: np.ndarray, own_idr: bool, emit: Emit) -> None:
        def reduce(top: int, left: int, block: np.ndarray) -> None:
            c, h, w = block.shape
            emit(top // k, left // k, block.reshape(c, h // k, k, w // k, k).mean(axis=(2, 4)))

        stream_rgb(lr, own_idr, reduce)

    return stream


def upscale_array(
    image: np.ndarray | str | os.PathLike,
    stream_rgb: StreamRGB,
    scale: int,
    alpha_upsampler: str,
    outscale: float | None = None,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """An (H, W, C) uint8/uint16 array (grey, RGB or RGBA; or (H, W) grey) upscaled by ``stream_rgb`` at the model's
    ``scale``, then resized to ``outscale`` or ``size`` (width, height; Lanczos up, area down); same layout and
    dtype out. A path is read first. The output is allocated once and filled block by block, so memory beyond it
    stays bounded whatever the image's size; a final size that is the model's output shrunk by a whole factor
    (``outscale`` 2 or 1 of a x4 model) is averaged block by block too, so the model-scale output is never held."""
    if isinstance(image, str | os.PathLike):
        image = read_image(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.dtype not in (np.uint8, np.uint16) or image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ImageError(f"expected an (H, W, 1|3|4) uint8 or uint16 array, got {image.shape} {image.dtype}")
    height, width, channels = image.shape
    check_outscale(outscale)
    factor = outscale or scale
    if size is None and outscale and outscale != scale:
        size = (max(round(width * outscale), 1), max(round(height * outscale), 1))
    if size is not None and min(size) < 1:
        raise ImageError(f"output size must be at least 1x1, got {size[0]}x{size[1]}")
    final = size[0] * size[1] if size else 0
    if max(height * width * scale**2, final) > MAX_OUTPUT_PIXELS:
        limit = f"limit {MAX_OUTPUT_PIXELS} pixels"
        raise ImageError(f"output of {width}x{height} at x{factor} would be too large ({limit})")
    _check_memory(image, scale, size)
    shrink = _exact_shrink(width, height, scale, size)
    if shrink > 1:  # area downscaling by a whole factor: each finished block is averaged as it comes
        stream_rgb, scale, size = _shrinking(stream_rgb, shrink), scale // shrink, None
    out = np.empty((height * scale, width * scale, channels), image.dtype)

    def to_output(rows: np.ndarray) -> np.ndarray:
        return from_float(rows, image.dtype)

    if channels == 4:
        upscale_rgba(to_float(image), stream_rgb, out, scale, alpha_upsampler, to_output)
    else:

        def emit(top: int, left: int, block: np.ndarray) -> None:
            block = block.mean(axis=0)[:, :, None] if channels == 1 else block.transpose(1, 2, 0)
            out[top : top + block.shape[0], left : left + block.shape[1]] = to_output(block)

        lr = image.transpose(2, 0, 1).astype(np.float32)  # (C, H, W): the one float copy of the input
        lr /= np.float32(np.iinfo(image.dtype).max)
        stream_rgb(np.repeat(lr, 3, axis=0) if channels == 1 else lr, False, emit)
    if size is not None and size != (out.shape[1], out.shape[0]):
        from kdsr.image_ops import resize

        out = resize(out, size)
    return out
