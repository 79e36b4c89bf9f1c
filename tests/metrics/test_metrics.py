"""PSNR/SSIM in the official and BasicSR conventions, against closed-form values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kdsr.metrics import psnr, ssim
from kdsr.metrics.psnr_ssim import y_channel
from tests.conftest import synthetic_image


def test_identical_images():
    a = synthetic_image(32, 32)
    assert psnr(a, a) == math.inf
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)


def test_psnr_official_closed_form():
    # One 8-bit level on every channel: the official Y difference is (65.738 + 129.057 + 25.064) / 256 / 255.
    a = np.full((20, 20, 3), 100, np.uint8)
    b = a + 1
    expected = -20 * math.log10((65.738 + 129.057 + 25.064) / 256 / 255)
    assert psnr(a, b, border=4) == pytest.approx(expected, abs=1e-9)


def test_psnr_basicsr_closed_form():
    a = np.full((20, 20, 3), 100, np.uint8)
    b = a + 1
    expected = 20 * math.log10(255 / (65.481 + 128.553 + 24.966) * 255)
    assert psnr(a, b, border=4, convention="basicsr") == pytest.approx(expected, abs=1e-9)


def test_official_psnr_quantizes_float_inputs():
    a = synthetic_image(24, 24).astype(np.float64) / 255
    assert psnr(a + 0.4 / 255, a) == math.inf  # rounds back to the same 8-bit values


def test_ssim_of_constant_images_is_the_luminance_term():
    a = np.full((40, 40, 3), 100, np.uint8)
    b = np.full((40, 40, 3), 110, np.uint8)
    ya, yb = y_channel(a)[0, 0], y_channel(b)[0, 0]
    c1 = (0.01 * 255) ** 2
    assert ssim(a, b) == pytest.approx((2 * ya * yb + c1) / (ya**2 + yb**2 + c1), abs=1e-12)


def test_official_ssim_y_is_scaled_by_256_over_255():
    white = np.full((1, 1, 3), 255, np.uint8)
    assert y_channel(white)[0, 0] == pytest.approx(16 + 219.859, abs=1e-9)
    assert y_channel(white, "basicsr")[0, 0] == pytest.approx(235.0, abs=1e-9)


def test_border_crop_matters_and_shapes_are_checked():
    a = synthetic_image(32, 32)
    b = a.copy()
    b[:4] = 0  # damage only the cropped border
    assert psnr(a, b, border=4) == math.inf and psnr(a, b, border=0) < 30
    with pytest.raises(ValueError):
        psnr(a, a[:16])
    with pytest.raises(ValueError):
        ssim(a, a, convention="matlab")


def test_ssim_decreases_with_noise():
    a = synthetic_image(48, 48)
    rng = np.random.default_rng(0)
    values = [ssim(a, np.clip(a + rng.normal(0, s, a.shape), 0, 255).astype(np.uint8)) for s in (2, 8, 20)]
    assert 1 > values[0] > values[1] > values[2] > 0
