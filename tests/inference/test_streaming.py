"""The bounded-memory pipeline (:mod:`kdsr.inference.streaming`) against the whole-image one it replaces for arrays:
same pixels, every output pixel written once, float buffers a fraction of the output whatever the image's size."""

from __future__ import annotations

import tracemalloc
import warnings

import cv2
import numpy as np
import pytest
import torch

from kdsr.constants import TAIL_BAND
from kdsr.errors import UntrainedModelWarning
from kdsr.inference.alpha import bicubic_rows
from kdsr.inference.fidelity import color_fix
from kdsr.inference.streaming import Layout, fix_block, stream_upscale
from kdsr.inference.upscaler import Upscaler, run_pipeline
from kdsr.models import KDSRStudent
from kdsr.models.kdsr import KDSRConfig


@pytest.fixture(scope="module")
def upscaler_of():
    warnings.simplefilter("ignore", UntrainedModelWarning)
    torch.manual_seed(0)
    model = KDSRStudent(KDSRConfig(n_feats=8, n_blocks=2, n_resblocks=1, scale=4)).eval()
    return lambda tile: Upscaler(model, device="cpu", precision="fp32", tile=tile)


def _streamed(upscaler: Upscaler, lr: np.ndarray, d: torch.Tensor, fix_color: bool) -> tuple[np.ndarray, np.ndarray]:
    c, h, w = lr.shape
    out, written = np.zeros((c, 4 * h, 4 * w), np.float32), np.zeros((4 * h, 4 * w), np.int64)

    def emit(top: int, left: int, block: np.ndarray) -> None:
        out[:, top : top + block.shape[1], left : left + block.shape[2]] = block
        written[top : top + block.shape[1], left : left + block.shape[2]] += 1

    def run_tile(crop: np.ndarray) -> np.ndarray:
        return upscaler.backend.generate(torch.from_numpy(crop), d).numpy()

    layout = Layout(4, upscaler.tile, upscaler.tile_pad, upscaler.tile_overlap, upscaler.border_pad, fix_color)
    stream_upscale(lr, run_tile, emit, layout)
    return out, written


@pytest.mark.parametrize(
    ("height", "width", "tile", "fix_color"),
    [(70, 90, 32, True), (70, 90, 0, True), (33, 200, 40, False), (130, 61, 24, True), (17, 9, 16, True)],
)
def test_streamed_pipeline_equals_the_whole_image_one(upscaler_of, height, width, tile, fix_color):
    upscaler = upscaler_of(tile)
    lr = np.random.default_rng(height).random((3, height, width), dtype=np.float32)
    tensor = torch.from_numpy(lr)[None]
    with torch.inference_mode():
        d = upscaler.backend.estimate_idr(tensor)
        whole = run_pipeline(upscaler.backend, tensor, upscaler.border_pad, fix_color, idr=d)[0].numpy()
        streamed, written = _streamed(upscaler, lr, d, fix_color)
    assert (written == 1).all()  # every output pixel exactly once
    np.testing.assert_allclose(streamed, whole, atol=1e-6)


def test_colour_fix_of_a_block_equals_the_torch_colour_fix():
    """The numpy colour fix (every upscaling path's) against torch's (tensors, spandrel): a change of one side's
    sigma, radius or phase layout fails here, with or without OpenVINO installed."""
    rng = np.random.default_rng(1)
    lr = rng.random((3, 40, 50), dtype=np.float32)
    sr = rng.random((3, 160, 200), dtype=np.float32)
    whole = color_fix(torch.from_numpy(sr)[None], torch.from_numpy(lr)[None])[0].clamp(0, 1).numpy()
    window, keep = (5, 40, 0, 37), (17, 29, 0, 25)  # the bottom edge and left edge are the image's
    block = fix_block(sr[:, 20:160, 0:148], lr, window, keep, 4)
    np.testing.assert_allclose(block, whole[:, 68:116, 0:100], atol=2e-6)


def test_streaming_holds_a_fraction_of_the_output_in_float():
    """A tall image in small tiles: numpy's peak allocation stays a small fraction of one float copy of the output,
    (the whole-image pipeline held about ten such copies)."""
    lr = np.random.default_rng(2).random((3, 2400, 60), dtype=np.float32)
    output_floats = 3 * 9600 * 240 * 4

    def run_tile(crop: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(crop, 4, axis=2), 4, axis=3)

    tracemalloc.start()
    try:
        stream_upscale(lr, run_tile, lambda top, left, block: None, Layout(4, 32, 8, 4, 4))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 0.25 * output_floats


def test_bicubic_rows_equal_the_whole_image_resize():
    alpha = np.random.default_rng(3).random((37, 23), dtype=np.float32)
    whole = cv2.resize(alpha, (92, 148), interpolation=cv2.INTER_CUBIC)
    bands = np.concatenate([bicubic_rows(alpha, 4, top, min(top + 10, 37)) for top in range(0, 37, 10)])
    np.testing.assert_array_equal(bands, whole)


def test_generator_tail_in_bands_equals_the_whole_tail():
    torch.manual_seed(4)
    model = KDSRStudent(KDSRConfig(n_feats=8, n_blocks=2, n_resblocks=1, scale=4)).eval()
    lr = torch.rand(1, 3, TAIL_BAND * 3 + 5, 21)
    d = torch.rand(1, 8)
    with torch.no_grad():
        banded = model.super_resolve(lr, d)
    whole = model.super_resolve(lr, d).detach()  # grad enabled: one tail
    torch.testing.assert_close(banded, whole, atol=1e-6, rtol=0)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_whole_factor_downscales_are_averaged_block_by_block(upscaler_of, channels):
    """``outscale`` 2 and 1 of a x4 model never hold the x4 output: the blocks are averaged as they come, within one
    level of area-resizing the whole x4 output."""
    upscaler = upscaler_of(32)
    image = (np.random.default_rng(channels).random((37, 45, channels)) * 255).astype(np.uint8)
    full = upscaler.upscale(image)
    for outscale in (2, 1):
        got = upscaler.upscale(image, outscale=outscale)
        size = (45 * outscale, 37 * outscale)
        reference = cv2.resize(full, size, interpolation=cv2.INTER_AREA).reshape(got.shape)
        assert got.shape == (37 * outscale, 45 * outscale, channels)
        assert np.abs(got.astype(int) - reference).max() <= 1
