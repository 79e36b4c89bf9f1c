"""The kdsr command: upscale files and folders, errors as one line, profile, models, python -m kdsr."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from kdsr import save_model
from kdsr.cli import main
from kdsr.image_io import read_image, write_image
from tests.conftest import ASSETS, synthetic_image, tiny_model


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "tiny.safetensors"
    save_model(tiny_model(), path)
    return str(path)


def test_upscale_single_file_to_named_output(tmp_path, model_file):
    write_image(tmp_path / "in.png", synthetic_image(9, 7))
    assert main(["upscale", "-i", str(tmp_path / "in.png"), "-o", str(tmp_path / "big.png"), "-n", model_file]) == 0
    assert read_image(tmp_path / "big.png").shape == (36, 28, 3)


def test_upscale_folder_with_bad_files(tmp_path, model_file, capsys):
    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "a.png", synthetic_image(8, 8))
    write_image(src / "b.jpg", synthetic_image(6, 10))
    write_image(src / "g16.png", synthetic_image(5, 5, 1, np.uint16))
    write_image(src / "rgba.png", synthetic_image(5, 6, 4))
    (src / "notes.txt").write_text("not an image")
    (src / "empty.png").write_bytes(b"")
    (src / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    out = tmp_path / "out"
    status = main(["upscale", "-i", str(src), "-o", str(out), "-n", model_file, "-t", "4"])
    captured = capsys.readouterr()
    assert status == 1
    assert sorted(p.name for p in out.iterdir()) == ["a_out.png", "b_out.jpg", "g16_out.png", "rgba_out.png"]
    assert read_image(out / "g16_out.png").dtype == np.uint16
    assert read_image(out / "rgba_out.png").shape == (20, 24, 4)
    assert "2 file(s) failed" in captured.err  # a .txt file is skipped (not an image by extension), not a failure
    for name in ("empty.png", "corrupt.png"):
        assert name in captured.err
    assert "skipped" in captured.err and "notes.txt: not an image or video" in captured.err
    assert "4 written, 1 skipped, 2 failed in" in captured.err  # the run's summary line
    assert "Traceback" not in captured.err


def test_upscale_ext_suffix_and_alpha_forces_png(tmp_path, model_file):
    write_image(tmp_path / "a.png", synthetic_image(4, 4, 4))
    write_image(tmp_path / "b.png", synthetic_image(4, 4))
    for name in ("a", "b"):
        assert (
            main(
                [
                    "upscale",
                    "-i",
                    str(tmp_path / f"{name}.png"),
                    "-o",
                    str(tmp_path / "o"),
                    "-n",
                    model_file,
                    "--ext",
                    "jpg",
                    "--suffix",
                    "x4",
                ]
            )
            == 0
        )
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a_x4.png", "b_x4.jpg"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["-n", "no-such-model"], "unknown model 'no-such-model'"),
        (["--device", "cuda:0"], "CUDA was requested"),
        (["-t", "-5"], ">= 0"),
        (["-s", "0"], "outscale must be > 0"),
        (["-s", "-2"], "outscale must be > 0"),
    ],
)
def test_user_errors_are_one_line(tmp_path, capsys, args, message):
    write_image(tmp_path / "a.png", synthetic_image(4, 4))
    if "cuda" in args[-1]:
        pytest.importorskip("torch")
        import torch

        if torch.cuda.is_available():
            pytest.skip("CUDA present")
    status = main(["upscale", "-i", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and len(err) == 1 and message in err[0]


@pytest.mark.parametrize(
    "command",
    [["benchmark", "--data", "x"], ["estimate", "-i", "x"], ["export", "-o", "x.onnx"], ["profile"], ["upscale"]],
)
def test_a_second_model_is_refused_not_silently_taken(command, capsys):
    """One-model commands used to run only the last of two ``-n`` (argparse's last-one-wins)."""
    with pytest.raises(SystemExit) as stop:
        main([command[0], "-n", "kdsr-real-x4", *command[1:], "--model", "kdsr-iso-x4"])
    assert stop.value.code == 2
    assert "--model given twice (kdsr-real-x4, then kdsr-iso-x4)" in capsys.readouterr().err


def test_missing_input_and_bad_checkpoint(tmp_path, capsys):
    assert main(["upscale", "-i", str(tmp_path / "nothing"), "-n", "kdsr-s"]) == 1
    assert "no such file or folder" in capsys.readouterr().err
    (tmp_path / "bad.pth").write_bytes(b"garbage")
    write_image(tmp_path / "a.png", synthetic_image(4, 4))
    assert main(["upscale", "-i", str(tmp_path / "a.png"), "-n", str(tmp_path / "bad.pth")]) == 1
    assert "cannot read checkpoint" in capsys.readouterr().err


def test_never_overwrites_the_input(tmp_path, model_file, capsys):
    write_image(tmp_path / "a.png", synthetic_image(4, 4))
    before = (tmp_path / "a.png").read_bytes()
    assert main(["upscale", "-i", str(tmp_path / "a.png"), "-o", str(tmp_path), "--suffix", "", "-n", model_file]) == 1
    assert (tmp_path / "a.png").read_bytes() == before
    assert "overwrite the input" in capsys.readouterr().err


def test_untrained_preset_warns_in_one_line(tmp_path, capsys):
    write_image(tmp_path / "a.png", synthetic_image(4, 4))
    assert main(["upscale", "-i", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "-n", "kdsr-s"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("kdsr: warning: 'kdsr-s' is an untrained") and len(err.strip().splitlines()) == 1


def test_profile_json(capsys):
    assert main(["profile", "-n", "kdsr-s", "--lr-size", "12x16", "--runs", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"params", "trainable_params", "flops", "latency_ms"} <= set(report)
    assert report["params"] == 445_219 and report["latency_ms"] > 0
    assert main(["profile", "--lr-size", "12by16"]) == 1


def test_models_lists_presets(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("kdsr-m", "kdsr-l", "kdsr-gan", "kdsr-s"):
        assert name in out


@pytest.mark.slow
def test_python_dash_m_on_the_shipped_sample(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "kdsr", "upscale", "-i", str(ASSETS / "sample.png"), "-o", str(tmp_path), "-q"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    out = read_image(tmp_path / "sample_out.png")
    sample = read_image(ASSETS / "sample.png")
    assert out.shape[:2] == tuple(4 * v for v in sample.shape[:2])
    from kdsr.inference import Upscaler  # the same default pipeline, in this process

    expected = Upscaler(device="cpu").upscale(sample)
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1


def test_onnx_export_parity_and_backend(tmp_path, model_file):
    pytest.importorskip("onnxruntime")
    import torch

    from kdsr import load_model
    from kdsr.inference.onnx_runtime import OnnxStudent

    onnx_path = tmp_path / "m.onnx"
    assert main(["export", "-n", model_file, "-o", str(onnx_path)]) == 0
    model, runner = load_model(model_file), OnnxStudent(onnx_path)
    for shape in [(1, 3, 1, 1), (1, 3, 17, 29), (2, 3, 40, 24)]:
        lr = torch.rand(*shape, generator=torch.Generator().manual_seed(1))
        with torch.inference_mode():
            assert (runner(lr) - model(lr)).abs().max().item() <= 1e-4
    write_image(tmp_path / "a.png", synthetic_image(9, 11))
    args = ["upscale", "-i", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "-n", str(onnx_path), "-q"]
    assert main([*args, "--backend", "onnx", "-t", "0"]) == 0
    via_onnx = read_image(tmp_path / "o" / "a_out.png").astype(int)
    assert main(["upscale", "-i", str(tmp_path / "a.png"), "-o", str(tmp_path / "t"), "-n", model_file, "-t", "0"]) == 0
    assert np.abs(via_onnx - read_image(tmp_path / "t" / "a_out.png").astype(int)).max() <= 1
    assert main([*args, "--backend", "onnx", "-t", "64"]) == 1


def test_onnx_export_of_a_real_preset(tmp_path):
    pytest.importorskip("onnxruntime")
    assert main(["export", "-n", "kdsr-s", "-o", str(tmp_path / "s.onnx"), "--check"]) == 0


def test_cli_and_package_import_no_heavy_modules():
    """`kdsr --help` and argument errors answer without loading torch, OpenCV or NumPy (subcommands import them in
    their run())."""
    code = (
        "import sys, kdsr, kdsr.cli\n"
        "from kdsr.cli import build_parser\n"
        "build_parser().format_help()\n"
        "print(sorted(m for m in ('torch', 'cv2', 'numpy', 'PIL', 'sklearn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["upscale", "-i", "x", "--quality", "0"], "--quality"),
        (["upscale", "-i", "x", "-s", "-1"], "outscale must be > 0"),
        (["upscale", "-i", "x", "--width", "0"], "--width and --height"),
    ],
)
def test_upscale_argument_mistakes_are_answered_before_any_work(argv, message, capsys):
    assert main(argv) == 1
    assert message in capsys.readouterr().err


def test_readme_python_blocks_run_as_written(tmp_path, monkeypatch):
    """Every ```python block of the README runs, in a folder that has the repo's assets/ (as a fresh clone)."""
    import re
    import shutil

    readme = (ASSETS.parent / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert blocks
    shutil.copytree(ASSETS, tmp_path / "assets")
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    assert (tmp_path / "sample_x4.png").is_file()
