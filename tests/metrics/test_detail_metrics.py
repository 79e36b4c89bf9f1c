"""NIQE and the reference-free detail metrics (kdsr.metrics.niqe, kdsr.metrics.detail)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from kdsr.export.int8 import default_calibration_folder
from kdsr.image_io import list_images, read_rgb8
from kdsr.metrics.detail import colour_error, high_frequency_ratio, lr_consistency, subpixel_grid
from kdsr.metrics.niqe import PristineModel, default_model, fit_pristine, niqe
from tests.conftest import FIXTURES, shared_path

PHOTOS = [read_rgb8(path) for path in list_images(default_calibration_folder())]  # six 192x192 photo crops


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigma)


def test_niqe_with_the_release_parameters_gives_matlabs_value_on_baboon():
    """The NIQE release's pristine model (niqe_release.zip, as BasicSR stores it) and MATLAB R2021a's score of
    Set14's baboon (its 492 left columns, as BasicSR's test image): 5.72957338."""
    params = np.load(FIXTURES / "niqe-release-params.npz")
    release = PristineModel(params["mu_pris_param"][0].astype(np.float64), params["cov_pris_param"].astype(np.float64))
    baboon = read_rgb8(shared_path("data", "Set14", "baboon.png"))[:, :492]
    assert niqe(baboon, release) == pytest.approx(5.72957338, abs=1e-3)


def test_niqe_rises_with_blur_and_noise():
    """Mean over the six crops (four 96-pixel blocks each, so one crop alone is a noisy estimate)."""
    rng = np.random.default_rng(0)
    clean = np.mean([niqe(photo) for photo in PHOTOS])
    blurred = np.mean([niqe(_blur(photo, 2.0)) for photo in PHOTOS])
    noisy = np.mean([niqe(np.clip(p + rng.normal(0, 25, p.shape), 0, 255).astype(np.uint8)) for p in PHOTOS])
    assert clean < 7 < 10 < blurred and noisy > 12


def test_fit_pristine_keeps_sharp_blocks_and_refuses_tiny_photos():
    model = fit_pristine(PHOTOS)
    assert model.mean.shape == (36,) and model.cov.shape == (36, 36)
    assert np.allclose(model.cov, model.cov.T) and np.all(np.linalg.eigvalsh(model.cov) > -1e-9)
    assert PristineModel.from_json(model.to_json()).mean.tolist() == model.mean.tolist()
    with pytest.raises(ValueError, match="no photo of at least 96x96"):
        fit_pristine([PHOTOS[0][:50, :50]])
    with pytest.raises(ValueError, match="at least 96x96"):
        niqe(PHOTOS[0][:90])
    shipped = default_model()
    assert shipped.mean.shape == (36,) and np.isfinite(shipped.cov).all()


def test_high_frequency_ratio_is_one_for_the_photo_and_orders_soft_and_sharp():
    photo = PHOTOS[0]
    assert high_frequency_ratio(photo, photo) == pytest.approx(1.0)
    soft = _blur(photo, 1.0)
    sharp = np.clip(photo.astype(float) * 2 - _blur(photo, 1.0), 0, 255).astype(np.uint8)  # unsharp mask
    assert high_frequency_ratio(soft, photo) < 0.6 < 1.2 < high_frequency_ratio(sharp, photo)


def test_lr_consistency_and_colour_error():
    from kdsr.degradations.resize import imresize
    from kdsr.image_tensor import image_to_tensor, tensor_to_image

    photo = PHOTOS[1]
    lr = tensor_to_image(imresize(image_to_tensor(photo), 1 / 4))
    assert lr_consistency(photo, lr, 4) == float("inf")  # the HR explains its own LR exactly
    assert 25 < lr_consistency(_blur(photo, 3.0), lr, 4) < 40
    assert colour_error(photo, photo) == 0
    darker = (photo.astype(int) - 8).clip(0, 255).astype(np.uint8)
    assert colour_error(darker, photo) == pytest.approx(8 * np.mean(photo >= 8), abs=0.5)
    assert colour_error(_blur(photo, 1.0), photo) < 0.5  # detail is not colour


def test_subpixel_grid_is_low_for_photos_and_high_for_a_grid_locked_to_lr_pixels():
    photos = [subpixel_grid(photo) for photo in PHOTOS]
    assert np.mean(photos) < 0.1  # 192-pixel crops: 0.04-0.15 each (whole photos about 0.03)
    photo = PHOTOS[0].astype(np.float64)
    columns = np.arange(photo.shape[1]) % 4 == 1
    gridded = photo.copy()
    gridded[:, columns] = photo[:, columns] * 0.85 + 20  # every fourth column lifted: a sub-pixel grid
    assert subpixel_grid(np.clip(gridded, 0, 255).astype(np.uint8)) > 0.2
    lr = cv2.resize(PHOTOS[0], (48, 48), interpolation=cv2.INTER_AREA)
    blocky = cv2.resize(lr, (192, 192), interpolation=cv2.INTER_NEAREST)  # detail only at LR pixel edges
    assert subpixel_grid(blocky) > 1
    assert subpixel_grid(blocky, scale=4, border=6) == pytest.approx(subpixel_grid(blocky, border=4))  # aligned


def test_flat_region_grid_finds_a_pattern_locked_to_lr_pixels_on_smooth_areas_only():
    from kdsr.metrics.detail import flat_region_grid

    y, x = np.mgrid[0:192, 0:192]
    herringbone = np.where((x % 4 == 1) ^ (y % 4 == 2), 6.0, -6.0)[:, :, None]  # a faint pattern on the LR grid
    rng = np.random.default_rng(0)
    scores = {"photo": [], "pattern": [], "noise": []}
    for photo in PHOTOS:  # 192-pixel crops: nine flat blocks each, so single scores are rough (photos 0.11-0.23)
        patterned = np.clip(photo + herringbone, 0, 255).astype(np.uint8)
        noisy = np.clip(photo + rng.normal(0, 6, photo.shape), 0, 255).astype(np.uint8)  # as much detail, unlocked
        for key, image in (("photo", photo), ("pattern", patterned), ("noise", noisy)):
            scores[key].append(flat_region_grid(image, photo))
    mean = {key: np.mean(values) for key, values in scores.items()}
    assert mean["photo"] < 0.25 and mean["noise"] < mean["photo"]
    assert min(scores["pattern"]) > 0.3 and mean["pattern"] > 2 * mean["photo"]
