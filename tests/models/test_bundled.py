"""The trained models shipped in the package: present, small, self-describing, real (better than bicubic)."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
import torch

import kdsr
from kdsr.bundled import default_model_name
from kdsr.checkpoint import bundled_models, load_model, read_metadata
from kdsr.cli import main
from kdsr.degradations import classic, realworld
from kdsr.degradations.kernels import isotropic_gaussian
from kdsr.degradations.resize import imresize
from kdsr.image_io import read_rgb8
from kdsr.image_tensor import image_to_tensor, tensor_to_image
from kdsr.metrics import psnr, ssim
from kdsr.models import KDSRStudent
from tests.conftest import ASSETS, REPO, shared_path

BUNDLED = ("kdsr-iso-x4", "kdsr-real-x4", "kdsr-real-x4-gan")


def test_bundled_models_are_present_small_and_described():
    bundled = bundled_models()
    assert set(BUNDLED) <= set(bundled)
    assert sum(path.stat().st_size for path in bundled.values()) < 20e6
    for name in BUNDLED:
        assert isinstance(load_model(name), KDSRStudent)
        metadata = read_metadata(bundled[name])
        assert metadata["summary"] and name in metadata["model_card"]
        assert (REPO / "docs" / "models" / f"{name}.md").read_text() == metadata["model_card"]


def test_real_world_model_is_the_default():
    assert default_model_name() == "kdsr-real-x4"


def test_models_command_lists_bundled_and_prints_cards(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert all(f"{name} " in out and "bundled" in out for name in BUNDLED)
    assert main(["models", "kdsr-iso-x4"]) == 0
    assert "# kdsr-iso-x4" in capsys.readouterr().out
    assert main(["models", "kdsr-nope"]) == 1


def _sample_hr() -> torch.Tensor:
    image = read_rgb8(ASSETS / "sample.png")
    h, w = image.shape[0] // 4 * 4, image.shape[1] // 4 * 4
    return image_to_tensor(image[:h, :w])


def test_iso_model_beats_bicubic_on_the_sample():
    hr = _sample_hr()
    lr = classic.degrade(hr, isotropic_gaussian(2.0)[0], 4)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")  # a trained model: no UntrainedModelWarning
        sr = load_model("kdsr-iso-x4")(lr)
    reference = tensor_to_image(hr)
    bicubic = psnr(tensor_to_image(imresize(lr, 4)), reference, 4)
    assert psnr(tensor_to_image(sr), reference, 4) > bicubic + 0.5


def test_iso_model_estimates_the_blur_of_the_sample():
    """`kdsr estimate` works out of the box with kdsr-iso-x4: its shipped estimator reads the blur of the sample
    blurred at sigma 1, 2 and 3 (classic pipeline) in order and within 0.6 of the truth."""
    from kdsr.insight.estimator import load_estimator

    estimate, hr = load_estimator("kdsr-iso-x4"), _sample_hr()
    readings = []
    for sigma in (1.0, 2.0, 3.0):
        lr = classic.degrade(hr, isotropic_gaussian(sigma)[0], 4)
        readings.append(estimate(tensor_to_image(lr))["blur_sigma"])
    assert readings == sorted(readings) and np.abs(np.array(readings) - [1, 2, 3]).max() < 0.6, readings


def test_default_model_estimates_the_noise_of_the_sample():
    """`kdsr estimate` works out of the box with the default too: its shipped estimator reads the noise of the sample
    (blur 1, noise 0, 10 and 20, classic pipeline) in order and within 8 levels of the truth. The sample's LR is
    30x20 pixels, where strong noise reads low: on the 19 Set5 + Set14 centre crops of that size the mean error at
    noise 20 is 6.8 (5.9 with session 10's linear read-out, which was worse at noise 0: 4.4 against 1.9)."""
    from kdsr.insight.estimator import load_estimator

    estimate, hr = load_estimator("kdsr-real-x4"), _sample_hr()
    readings = []
    for noise in (0.0, 10.0, 20.0):
        lr = classic.degrade(hr, isotropic_gaussian(1.0)[0], 4, noise, torch.Generator().manual_seed(0))
        readings.append(estimate(tensor_to_image(lr))["noise"])
    assert readings == sorted(readings) and np.abs(np.array(readings) - [0, 10, 20]).max() < 8, readings


def test_real_model_beats_bicubic_on_the_sample():
    """Averaged over eight real-world degradations of the 30x20-pixel LR sample (the hardest everyday case), through
    what `kdsr upscale` does: above bicubic in SSIM, and not below it in PSNR by more than 0.1 dB (the larger sets of
    the model card gain 0.2 to 0.4 dB)."""
    hr = _sample_hr()
    reference = tensor_to_image(hr)
    upscaler = kdsr.Upscaler("kdsr-real-x4", device="cpu")
    ours, bicubic = [], []
    for seed in range(8):
        lr = realworld.degrade(hr, scale=4, generator=torch.Generator().manual_seed(seed))
        for scores, sr in ((ours, upscaler.upscale(tensor_to_image(lr))), (bicubic, tensor_to_image(imresize(lr, 4)))):
            scores.append((psnr(sr, reference, 4), ssim(sr, reference, 4)))
    ours, bicubic = np.mean(ours, axis=0), np.mean(bicubic, axis=0)
    assert ours[0] > bicubic[0] - 0.1 and ours[1] > bicubic[1] + 0.005, (ours, bicubic)


@pytest.mark.slow
def test_iso_model_reproduces_the_model_card_numbers(tmp_path):
    """Model card / README: `kdsr benchmark -n kdsr-iso-x4 --protocol gaussian8` on Set5 and Set14."""
    sets = [shared_path("data", "Set5"), shared_path("data", "Set14")]
    out = tmp_path / "r.json"
    command = [
        "benchmark",
        "-n",
        "kdsr-iso-x4",
        "--data",
        *map(str, sets),
        "--protocol",
        "gaussian8",
        "--json",
        str(out),
    ]
    assert main(command) == 0
    card = read_metadata(bundled_models()["kdsr-iso-x4"])["model_card"]
    for name, result in json.loads(out.read_text())["results"].items():
        assert f"{result['psnr']:.2f} / {result['ssim']:.4f}" in card, name


@pytest.mark.slow
def test_default_model_beats_bicubic_on_every_everyday_case_and_matches_its_card(tmp_path):
    """Model card / README: `kdsr benchmark -n kdsr-real-x4 --protocol everyday` on Set5 (what `kdsr upscale` does)."""
    out = tmp_path / "e.json"
    command = ["benchmark", "-n", "kdsr-real-x4", "--data", str(shared_path("data", "Set5"))]
    assert main([*command, "--protocol", "everyday", "--json", str(out), "-q"]) == 0
    result = json.loads(out.read_text())["results"]["Set5"]
    assert all(case["gain"] > 0 for case in result["settings"].values())  # never below bicubic
    card = read_metadata(bundled_models()["kdsr-real-x4"])["model_card"]
    for name, case in [*result["settings"].items(), ("mean", result)]:
        assert f"{case['psnr']:.2f} / {case['ssim']:.4f}" in card, name


def test_default_model_beats_bicubic_on_a_clean_downscaled_sample():
    hr = _sample_hr()
    lr = classic.quantize(imresize(hr, 1 / 4))
    sr = image_to_tensor(kdsr.upscale(tensor_to_image(lr), device="cpu"))
    reference = tensor_to_image(hr)
    assert psnr(tensor_to_image(sr), reference, 4) > psnr(tensor_to_image(imresize(lr, 4)), reference, 4) + 0.3


def test_gan_model_is_sharper_than_the_default_and_stays_faithful():
    """The six photo crops shipped for int8 calibration, cleanly downscaled: finer detail than the default on every
    crop (means 0.28 / 0.22 of the HR's at bundling), PSNR within 1 dB of it and above bicubic, no sub-pixel grid."""
    from kdsr.export.int8 import default_calibration_folder
    from kdsr.image_io import list_images
    from kdsr.metrics.detail import high_frequency_ratio, subpixel_grid

    psnrs, detail = {"bicubic": [], "kdsr-real-x4": [], "kdsr-real-x4-gan": []}, {}
    upscalers = {name: kdsr.Upscaler(name, device="cpu") for name in ("kdsr-real-x4", "kdsr-real-x4-gan")}
    for path in list_images(default_calibration_folder()):
        hr = read_rgb8(path)
        lr = tensor_to_image(classic.quantize(imresize(image_to_tensor(hr), 1 / 4)))
        psnrs["bicubic"].append(psnr(tensor_to_image(imresize(image_to_tensor(lr), 4)), hr, 4))
        for name, upscaler in upscalers.items():
            sr = upscaler.upscale(lr)
            psnrs[name].append(psnr(sr, hr, 4))
            detail.setdefault(name, []).append(high_frequency_ratio(sr, hr))
            assert name != "kdsr-real-x4-gan" or subpixel_grid(sr) < 0.2
    mean = {name: sum(values) / len(values) for name, values in psnrs.items()}
    assert all(g > d for g, d in zip(detail["kdsr-real-x4-gan"], detail["kdsr-real-x4"], strict=True))
    assert mean["kdsr-real-x4"] - 1.0 < mean["kdsr-real-x4-gan"] and mean["bicubic"] + 0.3 < mean["kdsr-real-x4-gan"]


def test_the_default_models_denoise_dial_moves_its_output_the_right_way():
    """The sample (blur 1, noise 20, classic pipeline) through `kdsr upscale --denoise X`: fine detail (the noise
    kept with it) falls as X rises, X = 0 keeps well over the blind output's, and stating what was estimated
    reproduces the blind output exactly."""
    from kdsr.metrics.detail import detail_energy

    hr = _sample_hr()
    lr = tensor_to_image(classic.degrade(hr, isotropic_gaussian(1.0)[0], 4, 20.0, torch.Generator().manual_seed(0)))
    energies, readings = [], {}
    for x in (0.0, 0.5, 1.0, 1.5):
        upscaler = kdsr.Upscaler("kdsr-real-x4", device="cpu", precision="fp32", backend="torch", denoise=x)
        energies.append(detail_energy(upscaler.upscale(lr)))
        readings[x] = upscaler.last_steering
    assert energies == sorted(energies, reverse=True) and energies[0] > 1.3 * energies[2], energies
    assert readings[1.0] is None and readings[0.0].used["noise"] == 0 and readings[0.0].used["jpeg_quality"] == 100
    estimated = readings[0.0].estimated
    stated = {"noise": estimated["noise"], "jpeg": estimated["jpeg_quality"], "blur": estimated["blur_sigma"]}
    blind = kdsr.upscale(lr, device="cpu", precision="fp32", backend="torch")
    told = kdsr.upscale(lr, device="cpu", precision="fp32", backend="torch", assume=stated)
    assert np.array_equal(told, blind)


def test_the_detail_dial_blends_the_default_with_its_gan_partner(tmp_path, monkeypatch, capsys):
    """`--detail D`: the weights (1 - D) * default + D * GAN (ESRGAN's network interpolation), written once per D;
    fine detail of the sample's output rises with D; D = 0 is the default itself, D = 1 the GAN model."""
    from safetensors.numpy import load_file

    from kdsr.detail import with_detail
    from kdsr.errors import KDSRError
    from kdsr.image_io import read_image, write_image
    from kdsr.metrics.detail import detail_energy

    monkeypatch.setenv("KDSR_CACHE", str(tmp_path / "cache"))
    models = bundled_models()
    assert with_detail(None, 0) is None and with_detail("kdsr-real-x4", 0.0) == "kdsr-real-x4"
    assert with_detail(None, 1) == str(models["kdsr-real-x4-gan"])
    half = with_detail(None, 0.5)
    blended, faithful, sharp = (load_file(p) for p in (half, models["kdsr-real-x4"], models["kdsr-real-x4-gan"]))
    key = "G.body.0.body.0.da_conv1.kernel.0.weight"
    np.testing.assert_allclose(blended[key], (faithful[key] + sharp[key]) / 2, atol=1e-7)
    assert read_metadata(half)["idr_map"] == read_metadata(models["kdsr-real-x4"])["idr_map"]  # its dials still work
    written = os.stat(half).st_ino, os.stat(half).st_mtime_ns
    assert with_detail(None, 0.501) == half  # rounded to 0.01: the same cached file, not written again
    assert (os.stat(half).st_ino, os.stat(half).st_mtime_ns) == written
    for bad, message in ((("kdsr-real-x4", 1.5), "must be in 0-1"), (("kdsr-iso-x4", 0.5), "has none")):
        with pytest.raises(KDSRError, match=message):
            with_detail(*bad)

    hr = _sample_hr()[:, :, :96, :96]
    lr = tensor_to_image(classic.quantize(imresize(hr, 1 / 4)))
    energies = [
        detail_energy(kdsr.upscale(lr, device="cpu", precision="fp32", backend="torch", detail=d)) for d in (0, 0.5, 1)
    ]
    assert energies == sorted(energies) and energies[2] > 1.2 * energies[0], energies
    write_image(tmp_path / "lr.png", lr)
    assert main(["upscale", "-i", str(tmp_path / "lr.png"), "-o", str(tmp_path / "out.png"), "--backend", "torch",
                 "--detail", "0.5", "-q"]) == 0  # fmt: skip
    expected = kdsr.upscale(lr, device="cpu", backend="torch", detail=0.5)
    assert np.array_equal(read_image(tmp_path / "out.png"), expected)
    pytest.importorskip("openvino")
    assert main(["upscale", "-i", str(tmp_path / "lr.png"), "-o", str(tmp_path / "fast.png"), "--detail", "0.5",
                 "-q"]) == 0  # the default backend: the blend's graphs built, then the torch-free path  # fmt: skip
    assert np.abs(read_image(tmp_path / "fast.png").astype(int) - expected.astype(int)).max() <= 1
    assert main(["upscale", "-i", str(tmp_path / "lr.png"), "-o", str(tmp_path / "x.png"), "-n", "kdsr-iso-x4",
                 "--detail", "0.5"]) == 1  # fmt: skip
    assert "has none" in capsys.readouterr().err
