"""IDR insight: separability measures, the degradation estimator (fit, store, predict), `kdsr idr` / `kdsr estimate`."""

import json

import numpy as np
import pytest

from kdsr.checkpoint import read_metadata, save_model
from kdsr.cli import main
from kdsr.errors import CheckpointError, KDSRError
from kdsr.insight.collect import Degradation, IDRSamples, collect_idr
from kdsr.insight.estimator import FitRanges, fit_ridge, write_head
from kdsr.readout.head import DegradationEstimator, read_head
from tests.conftest import synthetic_image, tiny_model

pytest.importorskip("sklearn")


def _samples(separable: bool, images: int = 6, seed: int = 0) -> IDRSamples:
    """Three blur settings x ``images`` images; features follow sigma (plus image content) or are pure noise."""
    rng = np.random.default_rng(seed)
    settings = [Degradation(s) for s in (1.2, 2.4, 3.6)]
    rows, labels, groups = [], [], []
    for image in range(images):
        content = rng.normal(0, 1, 8)
        for index, setting in enumerate(settings):
            signal = setting.sigma * np.linspace(1, 2, 8) if separable else 0
            rows.append(content * 0.1 + signal + rng.normal(0, 0.05, 8))
            labels.append(index)
            groups.append(image)
    return IDRSamples(np.array(rows), np.array(labels), np.array(groups), settings)


def test_separability_tells_separable_features_from_noise():
    from kdsr.insight.separability import separability

    good, bad = separability(_samples(True)), separability(_samples(False))
    assert good["knn_accuracy"] == 1.0 and good["probe_r2"] > 0.95 and good["silhouette"] > 0.5
    assert good["probe_target"] == "sigma"
    assert bad["knn_accuracy"] < 0.7 and bad["probe_r2"] < 0.5 and bad["silhouette"] < 0.2


def test_ridge_head_round_trip_on_synthetic_features():
    rng = np.random.default_rng(0)
    sigma, noise = rng.uniform(0.2, 4, 300), rng.uniform(0, 20, 300)
    mixing = rng.normal(0, 1, (2, 16))
    features = np.stack([sigma, noise], axis=1) @ mixing + rng.normal(0, 0.01, (300, 16)) + 5
    head = fit_ridge(features, {"blur_sigma": sigma, "noise": noise}, {"note": "synthetic"})
    again = DegradationEstimator.from_json(head.to_json())
    predicted = again.predict(np.array([2.0, 10.0]) @ mixing + 5)
    assert predicted == pytest.approx({"blur_sigma": 2.0, "noise": 10.0}, abs=0.05)
    assert again.predict(np.array([-5.0, -50.0]) @ mixing + 5)["noise"] == 0  # clipped to the valid range
    with pytest.raises(CheckpointError, match="expects an IDR of 16"):
        again.predict(np.zeros(3))


def test_a_quadratic_read_out_follows_what_a_linear_one_cannot():
    """A target that grows with a feature's square (as noise does in the IDR of a JPEG) is read by the quadratic
    head and missed by the linear one; the terms travel in the JSON, and older heads (no field) are linear."""
    import json

    rng = np.random.default_rng(2)
    noise = rng.uniform(0, 20, 400)
    signed = np.sqrt(noise) * rng.choice([-1.0, 1.0], 400)  # the feature is +-sqrt(noise): its sign says nothing
    features = np.stack([signed, rng.normal(size=400)], axis=1)
    errors = {}
    for terms in ("linear", "quadratic"):
        head = DegradationEstimator.from_json(fit_ridge(features, {"noise": noise}, {}, terms=terms).to_json())
        assert head.terms == terms and np.shape(head.coef)[-1] == 2 * (1 + (terms == "quadratic"))
        errors[terms] = np.mean([abs(head.predict(row)["noise"] - n) for row, n in zip(features, noise, strict=True)])
    assert errors["quadratic"] < 0.1 < 4 < errors["linear"]
    old = {k: v for k, v in json.loads(head.to_json()).items() if k != "terms"}
    old["coef"] = np.asarray(old["coef"])[..., :2].tolist()
    assert DegradationEstimator.from_json(json.dumps(old)).terms == "linear"
    with pytest.raises(CheckpointError, match="read-out terms"):
        DegradationEstimator.from_json(json.dumps({**old, "terms": "cubic"}))


def test_an_estimator_reads_the_idr_vector_it_was_fitted_on(tmp_path):
    """A head fitted on D' (``feature="d_prime"``) keeps that in its JSON and reads D' (4C values) off an image; a head
    written before the field existed reads D."""
    import json

    from kdsr.insight.estimator import estimate_image

    model = tiny_model()
    rng = np.random.default_rng(1)
    features = rng.normal(size=(40, 4 * model.config.n_feats))
    head = fit_ridge(features, {"blur_sigma": rng.uniform(0.2, 4, 40)}, {}, feature="d_prime")
    again = DegradationEstimator.from_json(head.to_json())
    assert again.feature == "d_prime"
    assert isinstance(estimate_image(model, again, synthetic_image(24, 24))["blur_sigma"], float | str)
    old = {k: v for k, v in json.loads(head.to_json()).items() if k != "feature"}
    assert DegradationEstimator.from_json(json.dumps(old)).feature == "d"
    with pytest.raises(CheckpointError, match="feature"):
        DegradationEstimator.from_json(json.dumps({**old, "feature": "e"}))


def test_cross_validated_errors_with_a_single_target():
    rng = np.random.default_rng(2)
    sigma = rng.uniform(0.2, 4, 60)
    features = sigma[:, None] * rng.normal(0, 1, (1, 6)) + rng.normal(0, 0.01, (60, 6))
    head = fit_ridge(features, {"blur_sigma": sigma}, {}, groups=np.arange(60) // 6)
    assert set(head.fitted_on["cv_mae"]) == {"blur_sigma"} and head.fitted_on["cv_mae"]["blur_sigma"] < 0.05


def test_readings_outside_the_fitted_range_say_so():
    from kdsr.readout.head import describe

    rng = np.random.default_rng(1)
    sigma, noise = rng.uniform(0.2, 4, 200), rng.uniform(0, 20, 200)
    mixing = rng.normal(0, 1, (2, 8))
    features = np.stack([sigma, noise], axis=1) @ mixing
    ranges = {"sigma": [0.2, 4.0], "noise": [0.0, 20.0], "jpeg": [30, 95], "jpeg_prob": 0.0}
    head = fit_ridge(features, {"blur_sigma": sigma, "noise": noise}, {"ranges": ranges})
    inside = head.read(np.array([2.0, 10.0]) @ mixing)
    assert inside == pytest.approx({"blur_sigma": 2.0, "noise": 10.0}, abs=0.05)
    assert inside.beyond == {} and inside.to_json() == dict(inside)
    outside = head.read(np.array([7.0, 10.0]) @ mixing)
    assert outside["blur_sigma"] == 4.0 and outside.beyond == {"blur_sigma": "above"}  # held at the bound, flagged
    assert describe(outside).startswith("blur sigma (HR px) above 4, outside the fitted range, noise (0-255) 10.0")
    below = head.read(np.array([2.0, -9.0]) @ mixing)
    assert below["noise"] == 0.0 and below.to_json()["beyond_fitted_range"] == {"noise": "below"}
    assert "below 0, outside the fitted range" in describe(below)


@pytest.mark.parametrize("text", ["not json", '{"targets": ["colour"]}', '{"targets": ["x"], "mean": []}'])
def test_broken_head_is_a_checkpoint_error(text):
    with pytest.raises(CheckpointError):
        DegradationEstimator.from_json(text)


def test_fit_ranges_are_checked_and_draw_within_them():
    with pytest.raises(ValueError):
        FitRanges(sigma=(3.0, 1.0))
    with pytest.raises(ValueError):
        FitRanges(jpeg_prob=1.5)
    ranges = FitRanges(sigma=(1, 2), noise=(0, 10), jpeg_prob=0.5)
    assert ranges.targets() == ["blur_sigma", "noise", "jpeg_quality"]
    draws = ranges.draw(np.random.default_rng(0), 200)
    assert all(1 <= d.sigma <= 2 and 0 <= d.noise <= 10 for d in draws)
    assert 60 < sum(d.jpeg > 0 for d in draws) < 140 and all(d.jpeg == 0 or 30 <= d.jpeg <= 95 for d in draws)


def test_collect_idr_is_seeded_and_teachers_see_the_hr(data_dir):
    paths = sorted(data_dir.iterdir())[:2]
    settings = [Degradation(1.0), Degradation(2.0, noise=5.0)]
    student = collect_idr(tiny_model(), paths, settings)
    assert student.features.shape == (4, 8) and list(student.image) == [0, 0, 1, 1]
    np.testing.assert_array_equal(student.features, collect_idr(tiny_model(), paths, settings).features)
    teacher = collect_idr(tiny_model(teacher=True), paths, settings)
    assert teacher.features.shape == (4, 8)


def test_everyday_cases_as_settings(data_dir, tmp_path):
    """``kdsr idr --cases``: an everyday case degrades as the everyday protocol does and is labelled by its name."""
    import torch

    from kdsr.degradations.recipes import named_lr

    jpeg, real = Degradation.everyday("jpeg40"), Degradation.everyday("realworld")
    assert (jpeg.sigma, jpeg.noise, jpeg.jpeg, jpeg.label) == (0, 0, 40, "jpeg40") and real.label == "realworld"
    hr = torch.rand(1, 3, 32, 32)
    expected = named_lr(hr, "realworld", 4, torch.Generator().manual_seed(1))
    assert torch.equal(real.apply(hr, 4, torch.Generator().manual_seed(1)), expected)
    with pytest.raises(KDSRError, match="unknown everyday case 'jpeg41'"):
        Degradation.everyday("jpeg41")
    model = tmp_path / "tiny.safetensors"
    save_model(tiny_model(), model)
    args = ["idr", "-n", str(model), "--data", str(data_dir), "--cases", "clean", "jpeg40", "realworld", "-q"]
    assert main([*args, "--json", str(tmp_path / "idr.json")]) == 0
    assert json.loads((tmp_path / "idr.json").read_text())["settings"] == ["clean", "jpeg40", "realworld"]


def test_write_head_keeps_the_model_card(tmp_path):
    source = tmp_path / "m.safetensors"
    save_model(tiny_model(), source, metadata={"model_card": "# card"})
    head = fit_ridge(np.random.default_rng(0).normal(size=(20, 8)), {"blur_sigma": np.arange(20.0)}, {})
    write_head(source, head, tmp_path / "with-head.safetensors")
    assert read_metadata(tmp_path / "with-head.safetensors")["model_card"] == "# card"
    assert read_head(tmp_path / "with-head.safetensors") == head
    assert read_head(source) is None


def test_idr_and_estimate_commands_end_to_end(data_dir, tmp_path, capsys):
    model = tmp_path / "tiny.safetensors"
    save_model(tiny_model(), model)
    teacher = tmp_path / "teacher.safetensors"
    save_model(tiny_model(teacher=True), teacher)
    args = ["idr", "-n", str(model), "-n", str(teacher), "--data", str(data_dir), "--sigmas", "1", "3", "-q"]
    assert (
        main([*args, "--noise", "0", "10", "--json", str(tmp_path / "idr.json"), "--plot", str(tmp_path / "f.png")])
        == 0
    )
    report = json.loads((tmp_path / "idr.json").read_text())
    assert set(report) == {"models", "settings", "images", "data", "seed"} and report["images"] == 4
    assert report["settings"] == ["sigma 1", "sigma 3", "sigma 1, noise 10", "sigma 3, noise 10"]
    assert set(report["models"][str(model)]) == {"knn_accuracy", "probe_r2", "probe_target", "silhouette"}
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"

    fitted = tmp_path / "fitted.safetensors"
    fit = ["estimate", "-n", str(model), "--fit", str(data_dir), "-o", str(fitted), "--noise-range", "0", "20"]
    assert main([*fit, "--per-image", "3", "-q"]) == 0
    assert read_head(fitted).targets == ["blur_sigma", "noise"]
    (data_dir / "notes.txt").write_text("not an image")
    try:
        assert main(["estimate", "-n", str(fitted), "-i", str(data_dir), "--json", str(tmp_path / "e.json")]) == 0
    finally:
        (data_dir / "notes.txt").unlink()
    estimates = json.loads((tmp_path / "e.json").read_text())
    assert estimates["model"] == str(fitted) and sorted(estimates["images"]) == ["0.png", "1.png", "2.png", "3.png"]
    values = [v[name] for v in estimates["images"].values() for name in ("blur_sigma", "noise")]
    assert all(set(v) - {"beyond_fitted_range"} == {"blur_sigma", "noise"} for v in estimates["images"].values())
    assert all(isinstance(x, float) and x >= 0 for x in values)  # numbers, where numbers belong
    flags = [v.get("beyond_fitted_range", {}) for v in estimates["images"].values()]
    assert all(set(f.values()) <= {"above", "below"} for f in flags)
    assert "skipped 1 file(s) that are not images" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["estimate", "-n", "kdsr-iso-x4"], "either -i IMAGES"),
        (["estimate", "--fit", "x", "-i", "y"], "either -i IMAGES"),
        (["estimate", "--fit", "nowhere", "-o", "o.safetensors"], "nowhere: not a folder"),
        (["estimate", "--fit", ".", "-o", "o.pt"], ".safetensors"),
        (["estimate", "--fit", ".", "-o", "o.safetensors", "--sigma-range", "3", "1"], "sigma range"),
        (["idr", "-n", "kdsr-iso-x4", "--data", ".", "--sigmas", "1"], "at least two settings"),
    ],
)
def test_bad_arguments_are_one_line_errors(argv, message, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_estimate_needs_a_model_with_an_estimator(tmp_path, capsys):
    model = tmp_path / "tiny.safetensors"
    save_model(tiny_model(), model)
    assert main(["estimate", "-n", str(model), "-i", str(tmp_path)]) == 1
    assert "has no degradation estimator" in capsys.readouterr().err
