"""LPIPS with small self-made weights: key layout of the lpips package, metric properties, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdsr.errors import KDSRError
from kdsr.metrics.lpips import LPIPS, load_lpips, lpips_distance
from tests.conftest import synthetic_image


@pytest.fixture
def weights(tmp_path):
    torch.manual_seed(0)
    model = LPIPS()
    with torch.no_grad():
        for k in range(5):  # LPIPS's learned weights are non-negative
            getattr(model, f"lin{k}").model[1].weight.abs_()
    state = {
        **model.state_dict(),
        "scaling_layer.shift": torch.zeros(1, 3, 1, 1),
        "scaling_layer.scale": torch.ones(1, 3, 1, 1),
    }
    path = tmp_path / "lpips_vgg.pth"
    torch.save(state, path)
    return path


def test_key_layout_matches_the_lpips_package():
    keys = set(LPIPS().state_dict())
    assert {
        "net.slice1.0.weight",
        "net.slice2.5.weight",
        "net.slice5.28.bias",
        "lin0.model.1.weight",
        "lin4.model.1.weight",
    } <= keys
    assert len([k for k in keys if k.startswith("net.")]) == 26  # 13 convolutions


def test_metric_properties(weights):
    model = load_lpips(weights)
    a, b = synthetic_image(32, 32, seed=1), synthetic_image(32, 32, seed=2)
    noisy = np.clip(a.astype(int) + np.random.default_rng(0).integers(-40, 40, a.shape), 0, 255).astype(np.uint8)
    assert lpips_distance(model, a, a) == pytest.approx(0, abs=1e-7)
    assert lpips_distance(model, a, b) == pytest.approx(lpips_distance(model, b, a), rel=1e-5)
    assert 0 < lpips_distance(model, a, noisy)
    with pytest.raises(ValueError):
        model(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))


def test_missing_or_wrong_weights(tmp_path):
    with pytest.raises(KDSRError, match="lpips.LPIPS"):
        load_lpips(tmp_path / "nope.pth")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(KDSRError, match="not LPIPS VGG weights"):
        load_lpips(tmp_path / "other.pth")


def test_benchmark_reports_lpips(tmp_path, weights):
    from kdsr.cli import main
    from kdsr.image_io import write_image

    for sub in ("LR", "HR"):
        (tmp_path / "pairs" / sub).mkdir(parents=True)
    write_image(tmp_path / "pairs" / "HR" / "a.png", synthetic_image(32, 32))
    write_image(tmp_path / "pairs" / "LR" / "a.png", synthetic_image(8, 8))
    out = tmp_path / "r.json"
    assert (
        main(
            [
                "benchmark",
                "-n",
                "bicubic",
                "--data",
                str(tmp_path / "pairs"),
                "--protocol",
                "paired",
                "--lpips",
                str(weights),
                "--json",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    import json

    from kdsr.degradations.resize import imresize
    from kdsr.image_io import read_image
    from kdsr.image_tensor import image_to_tensor, tensor_to_image

    # the reported value is LPIPS between the HR and the bicubic upscale of the LR as written and read back
    lr = image_to_tensor(read_image(tmp_path / "pairs" / "LR" / "a.png"))
    bicubic = tensor_to_image(imresize(lr, 4))
    expected = lpips_distance(load_lpips(weights), bicubic, read_image(tmp_path / "pairs" / "HR" / "a.png"))
    assert expected > 0.001
    assert json.loads(out.read_text())["results"]["pairs"]["lpips"] == pytest.approx(expected, rel=1e-6)
