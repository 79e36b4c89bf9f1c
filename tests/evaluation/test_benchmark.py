"""Benchmark protocols and ``kdsr degrade``: reference numbers of the official code, JSON layout, manifests."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kdsr.cli import main
from kdsr.image_io import read_image, write_image
from tests.conftest import shared_path, synthetic_image


@pytest.mark.slow
def test_bicubic_gaussian8_matches_official_code(tmp_path, capsys):
    # Measured by running the official KDSR code: Set5 25.87 / 0.7294, Set14 24.30 / 0.6246.
    data = [str(shared_path("data", "Set5")), str(shared_path("data", "Set14"))]
    out = tmp_path / "bicubic.json"
    assert (
        main(["benchmark", "-n", "bicubic", "--data", *data, "--protocol", "gaussian8", "--json", str(out), "-q"]) == 0
    )
    report = json.loads(out.read_text())
    assert report["model"] == "bicubic" and report["protocol"] == "gaussian8" and report["convention"] == "official"
    set5, set14 = report["results"]["Set5"], report["results"]["Set14"]
    assert set5["psnr"] == pytest.approx(25.87, abs=0.01) and set5["ssim"] == pytest.approx(0.7294, abs=0.0001)
    assert set14["psnr"] == pytest.approx(24.30, abs=0.01) and set14["ssim"] == pytest.approx(0.6246, abs=0.0001)
    assert len(set5["settings"]) == 8
    assert "| bicubic | 25.87 / 0.7294 | 24.30 / 0.6246 |" in capsys.readouterr().out


@pytest.fixture
def hr_folder(tmp_path):
    folder = tmp_path / "Tiny"
    folder.mkdir()
    write_image(folder / "a.png", synthetic_image(34, 30, seed=1))  # not a multiple of 4: mod-cropped
    write_image(folder / "b.png", synthetic_image(24, 28, 1, seed=2))  # grey: replicated to RGB
    return folder


def test_aniso_protocol_is_order_independent(tmp_path, hr_folder):
    def run(folder):
        out = tmp_path / f"{folder.name}.json"
        assert (
            main(["benchmark", "-n", "bicubic", "--data", str(folder), "--protocol", "aniso", "--json", str(out), "-q"])
            == 0
        )
        return json.loads(out.read_text())["results"][folder.name]

    both = run(hr_folder)
    singles = []
    for name in ("a.png", "b.png"):  # each image alone: its noise must not depend on what ran before it
        folder = tmp_path / f"only_{name[0]}"
        folder.mkdir()
        (folder / name).write_bytes((hr_folder / name).read_bytes())
        singles.append(run(folder))
    assert len(both["settings"]) == 27
    assert both["settings"]["k3/noise=10"]["psnr"] > both["settings"]["k3/noise=20"]["psnr"]
    for setting, values in both["settings"].items():
        expected = (singles[0]["settings"][setting]["psnr"] + singles[1]["settings"][setting]["psnr"]) / 2
        assert values["psnr"] == pytest.approx(expected, abs=1e-9)


def test_model_benchmark_and_teacher_upper_bound(tmp_path, hr_folder):
    from kdsr import save_model
    from tests.conftest import tiny_model

    for teacher in (False, True):
        path = tmp_path / f"m{teacher}.safetensors"
        save_model(tiny_model(teacher=teacher), path)
        out = tmp_path / f"r{teacher}.json"
        assert (
            main(["benchmark", "-n", str(path), "--data", str(hr_folder), "--json", str(out), "-q", "--device", "cpu"])
            == 0
        )
        assert set(json.loads(out.read_text())["results"]["Tiny"]) == {"psnr", "ssim", "settings"}


def test_degrade_classic_manifest_and_reproducibility(tmp_path, hr_folder):
    args = [
        "degrade",
        "-i",
        str(hr_folder),
        "--blur",
        "aniso",
        "--lambda1",
        "4",
        "--lambda2",
        "1.5",
        "--theta",
        "120",
        "--noise",
        "10",
        "--seed",
        "3",
    ]
    assert main([*args, "-o", str(tmp_path / "x")]) == 0
    assert main([*args, "-o", str(tmp_path / "y")]) == 0
    a, b = read_image(tmp_path / "x" / "a.png"), read_image(tmp_path / "y" / "a.png")
    assert a.shape == (8, 7, 3) and np.array_equal(a, b)
    manifest = json.loads((tmp_path / "x" / "manifest.json").read_text())
    assert manifest["settings"]["lambda1"] == 4 and manifest["settings"]["theta"] == 120
    assert manifest["images"]["a.png"]["hr_size"] == [32, 28]
    assert read_image(tmp_path / "x" / "b.png").shape == (6, 7, 3)


def test_degrade_realworld_paired_then_benchmark(tmp_path, hr_folder):
    assert main(["degrade", "-i", str(hr_folder), "-o", str(tmp_path / "rw"), "--realworld", "--paired"]) == 0
    assert read_image(tmp_path / "rw" / "LR" / "a.png").shape == (8, 7, 3)
    assert read_image(tmp_path / "rw" / "HR" / "a.png").shape == (32, 28, 3)
    assert main(["benchmark", "-n", "bicubic", "--data", str(tmp_path / "rw"), "--protocol", "paired", "-q"]) == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["degrade", "--blur", "iso"], "--sigma"),
        (["benchmark", "-n", "bicubic", "--protocol", "paired"], "LR/ and HR/"),
    ],
)
def test_cli_errors(tmp_path, hr_folder, capsys, args, message):
    extra = ["-i", str(hr_folder), "-o", str(tmp_path / "o")] if args[0] == "degrade" else ["--data", str(hr_folder)]
    assert main([*args, *extra]) == 1
    assert message in capsys.readouterr().err


def test_benchmark_under_another_backend(tmp_path, data_dir, monkeypatch):
    pytest.importorskip("openvino")
    pytest.importorskip("onnx")
    import json

    from kdsr.checkpoint import save_model
    from kdsr.cli import main
    from tests.conftest import tiny_model

    monkeypatch.setenv("KDSR_CACHE", str(tmp_path / "cache"))  # the exported graphs stay in the test's folder
    model = tmp_path / "m.safetensors"
    save_model(tiny_model(), model)
    reports = {}
    for backend in ("torch", "openvino"):
        out = tmp_path / f"{backend}.json"
        argv = ["benchmark", "-n", str(model), "--data", str(data_dir), "--backend", backend, "--json", str(out), "-q"]
        assert main(argv) == 0
        reports[backend] = json.loads(out.read_text())
    assert reports["openvino"]["backend"] == "openvino"
    torch_psnr = reports["torch"]["results"][data_dir.name]["psnr"]
    assert reports["openvino"]["results"][data_dir.name]["psnr"] == pytest.approx(torch_psnr, abs=0.01)


def test_detail_metrics_in_the_everyday_benchmark(tmp_path, capsys):
    """``--detail``: NIQE, high-frequency ratio and colour error per case for the method and bicubic, and the LR
    consistency of the clean case only; the JSON carries every number."""
    from kdsr.export.int8 import default_calibration_folder
    from kdsr.image_io import list_images, read_rgb8

    folder = tmp_path / "Photos"
    folder.mkdir()
    for path in list_images(default_calibration_folder())[:2]:  # 192x192 photo crops: two NIQE blocks a side
        write_image(folder / path.name, read_rgb8(path))
    out = tmp_path / "r.json"
    args = ["benchmark", "-n", "bicubic", "--data", str(folder), "--protocol", "everyday", "--detail", "-q"]
    assert main([*args, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| Photos | clean |" in printed and "LR consistency" in printed
    result = json.loads(out.read_text())["results"]["Photos"]
    clean, jpeg = result["settings"]["clean"], result["settings"]["jpeg40"]
    assert clean["niqe"] == clean["bicubic_niqe"] and clean["hf_ratio"] < 1  # bicubic is softer than the photo
    assert 30 < clean["lr_consistency"] and "lr_consistency" not in jpeg
    assert jpeg["niqe"] > clean["niqe"]  # blocking is unnatural
    assert result["lr_consistency"] == clean["lr_consistency"]  # the mean over the records that have it
