"""FLOP counting: the dynamic grouped conv is seen, and totals match closed forms and the spec's measurement."""

from __future__ import annotations

import pytest

from kdsr.models import create_model
from kdsr.profiling import count_flops


def _closed_form_macs_per_pixel(c: int, n: int, r: int) -> int:
    """Per-LR-pixel MACs of the x4 student: generator (LR part + 2x and 4x parts, with the two 1x1 mean-shift
    convs) and encoder."""
    g = 9 + 16 * 9 + 27 * c + n * (9 * c * c + 9 * c) + 9 * c * c + 36 * c * c + 4 * 36 * c * c + 16 * 27 * c
    e = 27 * c + r * 18 * c * c + 9 * (2 * c * c + 4 * c * c + 8 * c * c)
    return g + e


@pytest.mark.parametrize("name, c, n, r", [("kdsr-m", 64, 53, 9), ("kdsr-s", 32, 8, 2)])
def test_flops_match_closed_form(name, c, n, r):
    h, w = 18, 32
    macs = count_flops(create_model(name), h, w) // 2
    vectors = 2 * (4 * c) ** 2 + 4 * c * c + n * (c * c + 9 * c * c)  # mlp, compress, kernel generators
    assert macs == _closed_form_macs_per_pixel(c, n, r) * h * w + vectors


def test_gan_preset_matches_spec_measurement():
    # official-gan.md 1.7: 762.30 GMACs for the full KDSR_S-GAN student at LR 180x320.
    assert count_flops(create_model("kdsr-gan"), 180, 320) / 2 / 1e9 == pytest.approx(762.30, abs=0.01)
