"""The everyday mixture (training) and the everyday protocol (benchmark)."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import torch

from kdsr.cli import main
from kdsr.degradations import mixture
from kdsr.degradations.classic import quantize
from kdsr.degradations.jpeg import libjpeg
from kdsr.degradations.recipes import EVERYDAY_CASES, NAMED_CASES, known_lr, named_lr
from kdsr.degradations.resize import imresize
from kdsr.degradations.sampling import DEGRADATION_KINDS
from kdsr.image_tensor import image_to_tensor, tensor_to_image
from kdsr.train import load_config
from tests.conftest import synthetic_image


def _hr(batch=6, size=64, seed=0):
    images = [image_to_tensor(synthetic_image(size, size, seed=seed + i)) for i in range(batch)]
    return torch.cat(images)


def test_libjpeg_is_a_real_libjpeg_round_trip():
    image = synthetic_image(24, 40)
    out = tensor_to_image(libjpeg(image_to_tensor(image), 50))
    ok, data = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 50])
    assert ok and np.array_equal(out, cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1])
    two = libjpeg(torch.cat([image_to_tensor(image)] * 2), torch.tensor([20.0, 95.0]))
    assert (two[0] - image_to_tensor(image)[0]).abs().mean() > (two[1] - image_to_tensor(image)[0]).abs().mean()


def test_mixture_shape_grid_and_determinism():
    hr = _hr()
    out = mixture.degrade(hr, mixture.MixtureConfig(), 4, torch.Generator().manual_seed(1))
    again = mixture.degrade(hr, mixture.MixtureConfig(), 4, torch.Generator().manual_seed(1))
    other = mixture.degrade(hr, mixture.MixtureConfig(), 4, torch.Generator().manual_seed(2))
    assert out.shape == (6, 3, 16, 16) and torch.equal(out, again) and not torch.equal(out, other)
    assert torch.equal(out, torch.round(out * 255) / 255) and out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("case", mixture.MIXTURE_CASES)
def test_every_case_alone(case):
    probs = tuple(float(c == case) for c in mixture.MIXTURE_CASES)
    config = mixture.MixtureConfig(probs=probs, box_prob=0.0, jpeg_range=(80.0, 80.0))
    hr = _hr(batch=3)
    out = mixture.degrade(hr, config, 4, torch.Generator().manual_seed(0))
    assert out.shape == (3, 3, 16, 16)
    clean = quantize(imresize(hr, 1 / 4))
    if case == "clean":
        assert torch.equal(out, clean)
    elif case == "jpeg":
        assert torch.equal(out, libjpeg(clean, 80))
    else:
        assert not torch.equal(out, clean)


def test_box_downscaling_is_the_area_average():
    config = mixture.MixtureConfig(probs=(1.0, 0, 0, 0, 0), box_prob=1.0)
    hr = _hr(batch=2)
    out = mixture.degrade(hr, config, 4, torch.Generator().manual_seed(0))
    assert torch.equal(out, quantize(torch.nn.functional.avg_pool2d(hr, 4)))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"probs": (1.0, 0.0)}, "5 values"),
        ({"probs": (0.5, 0.5, 0.5, 0.0, 0.0)}, "sum to 1"),
        ({"jpeg_range": (0.0, 50.0)}, "jpeg_range"),
        ({"noise_range": (5.0, 1.0)}, "noise_range"),
        ({"box_prob": 1.5}, "box_prob"),
    ],
)
def test_mixture_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        mixture.MixtureConfig(**kwargs)


def test_mixture_in_a_training_config(data_dir):
    config = load_config(
        None, [f"data.train=[{data_dir}]", "degradation.kind=mixture", "degradation.mixture.jpeg_range=[50, 90]"]
    )
    assert config.degradation.mixture.jpeg_range == (50.0, 90.0)


def test_everyday_cases_are_what_they_say():
    hr = _hr(batch=1)
    generator = torch.Generator().manual_seed(0)
    clean = named_lr(hr, "clean", 4, generator)
    assert torch.equal(clean, quantize(imresize(hr, 1 / 4)))
    assert torch.equal(named_lr(hr, "jpeg60", 4, generator), libjpeg(clean, 60))
    assert EVERYDAY_CASES[0] == "clean" and "realworld" in EVERYDAY_CASES and len(EVERYDAY_CASES) == 8
    assert torch.equal(named_lr(hr, "gaussian2.0", 4, generator), known_lr(hr, 4, generator, sigma=2.0))


def _inside(value: float, bounds: tuple[float, float]) -> bool:
    return bounds[0] <= value <= bounds[1]


@pytest.mark.parametrize("name", list(NAMED_CASES))
def test_named_case_contract(name):
    """Every named case runs, and is a draw its training family could make (so validation and calibration measure
    inputs the mixture trains on)."""
    sigma, noise, jpeg, family = NAMED_CASES[name]
    ranges = mixture.MixtureConfig()
    inside = {
        "clean": sigma == noise == jpeg == 0,
        "jpeg": sigma == noise == 0 and _inside(jpeg, ranges.jpeg_range),
        "blur_noise": jpeg == 0 and _inside(sigma, ranges.blur_range) and _inside(noise, ranges.noise_range),
        "camera": _inside(sigma, ranges.camera_blur_range)
        and _inside(noise, ranges.camera_noise_range)
        and _inside(jpeg, ranges.camera_jpeg_range),
        "realworld": sigma == noise == jpeg == 0,
    }
    assert set(inside) == set(mixture.MIXTURE_CASES) and inside[family]
    lr = named_lr(_hr(batch=1), name, 4, torch.Generator().manual_seed(0))
    assert lr.shape == (1, 3, 16, 16) and torch.equal(
        lr, named_lr(_hr(batch=1), name, 4, torch.Generator().manual_seed(0))
    )


def test_every_selection_of_cases_names_table_entries():
    from kdsr.export.int8 import CALIBRATION_CASES

    assert set(EVERYDAY_CASES) <= set(NAMED_CASES) and set(CALIBRATION_CASES) <= set(NAMED_CASES)


def test_everyday_protocol_scores_bicubic_at_zero_gain(tmp_path, capsys):
    folder = tmp_path / "Tiny"
    from kdsr.image_io import write_image

    write_image(folder / "a.png", synthetic_image(64, 48, seed=1))
    out = tmp_path / "e.json"
    assert (
        main(["benchmark", "-n", "bicubic", "--data", str(folder), "--protocol", "everyday", "--json", str(out)]) == 0
    )
    report = json.loads(out.read_text())
    settings = report["results"]["Tiny"]["settings"]
    assert list(settings) == list(EVERYDAY_CASES)
    assert all(v["gain"] == 0 and v["psnr"] == v["bicubic_psnr"] for v in settings.values())
    table = capsys.readouterr().out
    assert "| clean |" in table and "| mean |" in table and "gain (dB)" in table


def test_labels_come_with_the_same_draws():
    hr = torch.rand(12, 3, 32, 32)
    plain = mixture.degrade(hr, mixture.MixtureConfig(), 4, torch.Generator().manual_seed(3))
    lr, labels = mixture.degrade_with_labels(hr, mixture.MixtureConfig(), 4, torch.Generator().manual_seed(3))
    assert torch.equal(lr, plain) and labels.shape == (12, len(mixture.LABEL_FIELDS))
    cases = [mixture.MIXTURE_CASES[int(c)] for c in labels[:, 0]]
    assert set(cases) >= {"clean", "jpeg"}
    for case, (_, blur, noise, quality) in zip(cases, labels.tolist(), strict=True):
        if case == "realworld":
            assert all(math.isnan(v) for v in (blur, noise, quality))
        elif case == "clean":
            assert (blur, noise, quality) == (0, 0, 100)
        elif case == "jpeg":
            assert (blur, noise) == (0, 0) and 30 <= quality <= 95 and quality == round(quality)
        elif case == "blur_noise":
            assert 0.2 <= blur <= 3 and 0 <= noise <= 20 and quality == 100
        else:
            assert 0.2 <= blur <= 1.5 and 0 <= noise <= 8 and 60 <= quality <= 95


def test_labels_say_what_was_done():
    """A clean label means plain downscaling; a JPEG label's quality reproduces the LR exactly."""
    hr = torch.rand(6, 3, 32, 32)
    config = mixture.MixtureConfig(probs=(0.5, 0.5, 0, 0, 0), box_prob=0)
    lr, labels = mixture.degrade_with_labels(hr, config, 4, torch.Generator().manual_seed(0))
    clean = quantize(imresize(hr, 1 / 4))
    for i, (case, _, _, quality) in enumerate(labels.tolist()):
        expected = clean[i : i + 1] if case == 0 else libjpeg(clean[i : i + 1], quality)
        assert torch.equal(lr[i : i + 1], expected)


@pytest.mark.parametrize("kind", sorted(DEGRADATION_KINDS))
def test_every_degradation_kind_degrades_a_batch_the_same_way_per_seed(kind):
    """The contract of an entry of kdsr.degradations.sampling.DEGRADATION_KINDS (no new test code for a new one):
    its default settings degrade a batch to the LR size in [0, 1], the same for the same seed; a kind that declares
    labels gives one row per image from the same draws."""
    from kdsr.degradations.sampling import DegradationSampling, sample_lr, sample_lr_with_labels

    sampling = DegradationSampling(kind=kind)
    hr = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    a, b = (sample_lr(sampling, hr, 4, torch.Generator().manual_seed(5)) for _ in range(2))
    assert a.shape == (3, 3, 16, 16) and torch.equal(a, b) and 0 <= a.min() and a.max() <= 1
    if DEGRADATION_KINDS[kind].with_labels is None:
        with pytest.raises(ValueError, match="no degradation labels"):
            sample_lr_with_labels(sampling, hr, 4, torch.Generator().manual_seed(5))
    else:
        lr, labels = sample_lr_with_labels(sampling, hr, 4, torch.Generator().manual_seed(5))
        assert lr.shape == a.shape and labels.shape[0] == 3


def test_every_training_stage_name_has_its_stage():
    from kdsr.train.config import STAGES
    from kdsr.train.stages import STAGE_CLASSES

    assert tuple(STAGE_CLASSES) == STAGES
