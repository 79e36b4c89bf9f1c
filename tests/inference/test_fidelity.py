"""Borders, flat colours, colour fidelity and alpha: what the network alone gets wrong and the upscaler fixes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kdsr.checkpoint import bundled_models
from kdsr.degradations.resize import imresize
from kdsr.image_io import read_rgb8
from kdsr.image_tensor import image_to_tensor, tensor_to_image
from kdsr.inference import Upscaler
from kdsr.inference.alpha import FlatAlpha
from kdsr.inference.fidelity import color_fix, pad_border
from tests.conftest import shared_path, synthetic_image, tiny_model

BUNDLED = sorted(bundled_models())
COLOURS = [(0, 0, 0), (255, 255, 255), (0, 200, 0), (255, 0, 0), (0, 0, 255), (128, 128, 128), (250, 200, 20)]


@pytest.fixture(scope="module", params=BUNDLED)
def upscaler(request):
    return Upscaler(request.param, device="cpu", precision="fp32")


@pytest.mark.parametrize("size", [(1, 1), (5, 7), (48, 64)])
def test_flat_colour_stays_flat_with_every_bundled_model(upscaler, size):
    for colour in COLOURS:
        image = np.zeros((*size, 3), np.uint8) + np.array(colour, np.uint8)
        out = upscaler.upscale(image)
        assert out.shape == (size[0] * 4, size[1] * 4, 3)
        assert np.abs(out.astype(int) - np.array(colour)).max() <= 3, colour


@pytest.mark.slow
def test_large_flat_image_stays_flat(upscaler):
    image = np.zeros((512, 512, 3), np.uint8) + np.array((0, 200, 0), np.uint8)
    out = upscaler.upscale(image)  # tiled (256) on the CPU: the tile seams must stay flat too
    assert np.abs(out.astype(int) - np.array((0, 200, 0))).max() <= 3


def test_without_the_fixes_flat_images_are_not_flat():
    """The failure the fixes exist for: zero padding smudges the border of the raw network output."""
    raw = Upscaler(BUNDLED[0], device="cpu", border_pad=0, fix_color=False)
    out = raw.upscale(np.zeros((48, 64, 3), np.uint8))
    assert out.max() > 10


def test_constant_alpha_stays_exact(upscaler):
    rgb = synthetic_image(40, 48)
    alpha = np.full((40, 48, 1), 255, np.uint8)
    out = upscaler.upscale(np.concatenate([rgb, alpha], axis=2))
    assert (out[:, :, 3] == 255).all()
    alpha[:, :24] = 0  # left half transparent
    out = upscaler.upscale(np.concatenate([rgb, alpha], axis=2))
    assert (out[:, : (24 - 3) * 4, 3] == 0).all()  # 0 stays 0 away from the edge
    assert (out[:, (24 + 3) * 4 :, 3] == 255).all()


def test_keep_flat_alpha_only_touches_locally_constant_pixels():
    alpha = np.zeros((10, 10), np.float32)
    alpha[:, 5:] = 1.0
    noisy = np.full((20, 20), 0.5, np.float32)
    out = FlatAlpha(alpha, 2, radius=2).apply(0, 0, noisy)
    assert (out[:, : 3 * 2] == 0).all() and (out[:, 7 * 2 :] == 1).all()
    assert (out[:, 3 * 2 : 7 * 2] == 0.5).all()


def test_pad_border_replicates_edges():
    lr = torch.arange(6.0).view(1, 1, 2, 3)
    padded = pad_border(lr, 2)
    assert padded.shape == (1, 1, 6, 7)
    assert padded[0, 0, 0, 0] == lr[0, 0, 0, 0] and padded[0, 0, -1, -1] == lr[0, 0, -1, -1]
    assert pad_border(lr, 0) is lr


def test_color_fix_removes_a_colour_shift_and_a_phase_pattern_and_keeps_detail():
    y, x = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    hr = torch.stack([0.5 + 0.3 * torch.sin(x / 9 + c) * torch.cos(y / 11 - c) for c in range(3)])[None]
    lr = F.avg_pool2d(hr, 4)
    pattern = 0.02 * torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0)).repeat(1, 1, 16, 16)
    shifted = hr + torch.tensor([0.05, -0.03, 0.02]).view(1, 3, 1, 1) + pattern
    inner = (slice(None), slice(None), slice(16, -16), slice(16, -16))  # the bilinear target is flatter at the border
    assert (color_fix(shifted, lr) - hr)[inner].abs().max() < 0.005  # offset and 4x4 pattern gone (were up to 0.1)
    assert (color_fix(hr, lr) - hr)[inner].abs().max() < 0.005  # an output consistent with its input is left alone
    assert (color_fix(hr, lr) - hr).abs().max() < 0.025
    flat = torch.full((1, 3, 3, 2), 0.3)
    out = color_fix(torch.full((1, 3, 12, 8), 0.7) + pattern[:, :, :12, :8], flat)
    torch.testing.assert_close(out, torch.full((1, 3, 12, 8), 0.3))


def test_color_fix_works_in_bf16_and_keeps_gradients():
    sr = torch.rand(1, 3, 16, 16, requires_grad=True)
    out = color_fix(sr, torch.rand(1, 3, 4, 4))
    out.sum().backward()
    assert sr.grad is not None
    assert color_fix(sr.detach().bfloat16(), torch.rand(1, 3, 4, 4)).dtype == torch.bfloat16


@pytest.mark.slow
def test_default_model_keeps_colours_on_set14():
    """The per-channel mean of the output, downscaled, equals the input's within 1 level (clean LR)."""
    upscaler = Upscaler(device="cpu")
    for path in sorted(shared_path("data", "Set14").iterdir()):
        hr = image_to_tensor(read_rgb8(path))
        hr = hr[:, :, : hr.shape[2] // 4 * 4, : hr.shape[3] // 4 * 4]
        lr = tensor_to_image(imresize(hr, 1 / 4))
        out = upscaler.upscale(lr)
        down = tensor_to_image(F.avg_pool2d(image_to_tensor(out), 4))
        offset = down.reshape(-1, 3).astype(float).mean(0) - lr.reshape(-1, 3).astype(float).mean(0)
        assert np.abs(offset).max() <= 1, (path.name, offset)


def test_cli_flags_give_the_raw_network_and_benchmark_names_its_pipeline(tmp_path):
    import json

    from kdsr import save_model
    from kdsr.cli import main
    from kdsr.image_io import read_image, write_image

    model = tiny_model()
    save_model(model, tmp_path / "m.safetensors")
    image = synthetic_image(12, 10)
    write_image(tmp_path / "a.png", image)
    args = ["upscale", "-i", str(tmp_path / "a.png"), "-n", str(tmp_path / "m.safetensors"), "-t", "0"]
    assert main([*args, "-o", str(tmp_path / "raw.png"), "--border-pad", "0", "--no-color-fix"]) == 0
    with torch.no_grad():
        expected = tensor_to_image(model(image_to_tensor(image)))
    assert np.abs(read_image(tmp_path / "raw.png").astype(int) - expected.astype(int)).max() <= 1
    assert main([*args, "-o", str(tmp_path / "fixed.png")]) == 0
    assert not np.array_equal(read_image(tmp_path / "fixed.png"), read_image(tmp_path / "raw.png"))
    write_image(tmp_path / "hr" / "b.png", synthetic_image(32, 32))
    for protocol, pipeline in (("gaussian8", "raw"), ("everyday", "upscale")):
        out = tmp_path / f"{protocol}.json"
        bench = ["benchmark", "-n", str(tmp_path / "m.safetensors"), "--data", str(tmp_path / "hr")]
        assert main([*bench, "--protocol", protocol, "--json", str(out), "-q"]) == 0
        assert json.loads(out.read_text())["pipeline"] == pipeline
