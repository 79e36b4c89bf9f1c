"""The core install: the bundled models' graphs shipped in the package, the one upscaler entry
(``kdsr.open_upscaler`` / ``kdsr.upscale``) that runs them without torch, a one-line error where torch is needed,
and OpenCV replaced by numpy / Pillow where it is not installed (the tests compare both)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import kdsr
import kdsr.image_io as image_io
import kdsr.image_ops as image_ops
from kdsr.bundled import bundled_models
from kdsr.errors import ImageError, KDSRError
from kdsr.image_io import read_image, write_image
from kdsr.inference.graph_files import (
    SHIPPED_SOURCE,
    file_digest,
    find_graph_files,
    shipped_graphs_root,
    shipped_split_folder,
)
from kdsr.inference.opening import open_upscaler
from kdsr.inference.settings import UpscaleSettings
from tests.conftest import ASSETS, synthetic_image

#: a Python start-up that behaves as if torch were not installed (import and find_spec both fail)
NO_TORCH = (
    "import sys, importlib.util; sys.modules['torch'] = None; _find = importlib.util.find_spec; "
    "importlib.util.find_spec = lambda n, *a: None if n.split('.')[0] == 'torch' else _find(n, *a); "
)


@pytest.mark.parametrize("name", sorted(bundled_models()))
def test_every_bundled_models_graphs_carry_its_digest_and_are_found(name):
    path = bundled_models()[name]
    folder = shipped_graphs_root() / name
    built_from = json.loads((folder / SHIPPED_SOURCE).read_text())["weights"]
    assert built_from == file_digest(path), f"{name} changed: run python scripts/build_graphs.py {name}"
    assert shipped_split_folder(path) == folder
    found = find_graph_files(name)
    assert found is not None and found.files[0].parent == folder


def test_shipped_graphs_are_for_the_bundled_files_only(tmp_path, monkeypatch):
    monkeypatch.setenv("KDSR_CACHE", str(tmp_path / "cache"))
    copy = tmp_path / "kdsr-real-x4.safetensors"  # same name and bytes, another file: a user's checkpoint
    copy.write_bytes(bundled_models()["kdsr-real-x4"].read_bytes())
    assert shipped_split_folder(copy) is None
    assert find_graph_files(str(copy)) is None  # its own graphs are not built yet


def test_open_upscaler_takes_the_torch_free_path_for_bundled_models():
    pytest.importorskip("onnxruntime")
    from kdsr.inference.fastpath import FastUpscaler
    from kdsr.inference.upscaler import Upscaler

    fast = open_upscaler("kdsr-iso-x4", UpscaleSettings(backend="onnx", tile=32))
    assert isinstance(fast, FastUpscaler) and fast.backend_name == "onnx"
    assert isinstance(open_upscaler("kdsr-iso-x4", UpscaleSettings(backend="torch")), Upscaler)
    with pytest.warns(UserWarning, match="untrained"):  # a preset: torch builds it
        assert isinstance(open_upscaler("kdsr-s", UpscaleSettings()), Upscaler)
    image = synthetic_image(20, 24)
    out = kdsr.upscale(image, "kdsr-iso-x4", backend="onnx", tile=32)
    reference = Upscaler("kdsr-iso-x4", backend="torch", precision="fp32", tile=32).upscale(image)
    assert out.shape == (80, 96, 3) and np.abs(out.astype(int) - reference.astype(int)).max() <= 1


def test_upscale_settings_refuse_bad_and_unknown_values():
    with pytest.raises(KDSRError, match="unknown upscale setting"):
        UpscaleSettings.of(tiles=3)
    for bad, match in (
        ({"backend": "cuda"}, "unknown backend"),
        ({"tile": -1}, "must be >= 0"),
        ({"alpha_upsampler": "nearest"}, "unknown alpha upsampler"),
        ({"detail": 2.0}, "detail must be in 0-1"),
        ({"precision": "int8", "backend": "onnx"}, "runs on the OpenVINO backend"),
    ):
        with pytest.raises(KDSRError, match=match):
            UpscaleSettings.of(**bad)
    with pytest.raises(KDSRError):
        UpscaleSettings(assume="noise=ten")


def _no_torch_cli(tmp_path, *args: str) -> subprocess.CompletedProcess:
    code = NO_TORCH + "from kdsr.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {"KDSR_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)


@pytest.mark.slow
def test_without_torch_the_cli_upscales_and_estimates_and_names_what_needs_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    source = tmp_path / "in.png"
    write_image(source, synthetic_image(24, 30))
    done = _no_torch_cli(tmp_path, "upscale", "-i", str(source), "-o", str(tmp_path / "out.png"), "--backend", "onnx",
                         "-v", "--denoise", "0.5")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "torch-free path" in done.stderr and "restored as" in done.stderr
    assert read_image(tmp_path / "out.png").shape == (96, 120, 3)
    sharper = _no_torch_cli(tmp_path, "upscale", "-i", str(source), "-o", str(tmp_path / "d.png"), "--backend", "onnx",
                            "--detail", "0.5")  # fmt: skip
    assert sharper.returncode == 0, sharper.stderr  # the blend's graphs blended from the shipped ones, no torch
    estimated = _no_torch_cli(tmp_path, "estimate", "-i", str(source), "--json", str(tmp_path / "e.json"))
    assert estimated.returncode == 0 and "noise (0-255)" in estimated.stdout, estimated.stderr
    for args, what in (
        (["train", "x.yaml", "-o", str(tmp_path / "run")], "kdsr train needs PyTorch"),
        (["upscale", "-i", str(source), "-o", str(tmp_path / "t.png"), "--backend", "torch"], "the torch backend"),
        (["upscale", "-i", str(source), "-o", str(tmp_path / "s.png"), "-n", "kdsr-s"], "an architecture preset"),
    ):
        refused = _no_torch_cli(tmp_path, *args)
        lines = refused.stderr.strip().splitlines()
        assert refused.returncode == 1 and len(lines) == 1 and what in lines[0], refused.stderr
        assert "pip install 'kdsr[torch]'" in lines[0]


def _without_opencv(monkeypatch):
    monkeypatch.setattr(image_io, "opencv", lambda: None)
    monkeypatch.setattr(image_ops, "opencv", lambda: None)


def test_numpy_filters_equal_opencvs(monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.random((37, 53), dtype=np.float32)
    x3 = rng.random((29, 31, 3), dtype=np.float32)
    alpha = (rng.random((30, 20)) * 255).astype(np.uint8)
    kernel = np.exp(-(np.arange(-6, 7) ** 2) / 18.0).astype(np.float32)
    kernel /= kernel.sum()
    with_cv2 = (
        [image_ops.cubic_upscale(x, s) for s in (2, 3, 4)],
        image_ops.separable_filter(x3, kernel),
        image_ops.local_min_max(alpha, 2),
    )
    _without_opencv(monkeypatch)
    without = (
        [image_ops.cubic_upscale(x, s) for s in (2, 3, 4)],
        image_ops.separable_filter(x3, kernel),
        image_ops.local_min_max(alpha, 2),
    )
    for ours, theirs in zip(with_cv2[0], without[0], strict=True):
        np.testing.assert_allclose(ours, theirs, atol=1e-5)
    np.testing.assert_allclose(with_cv2[1], without[1], atol=1e-5)
    assert all(np.array_equal(a, b) for a, b in zip(with_cv2[2], without[2], strict=True))


def test_without_opencv_images_read_write_and_upscale_alike(tmp_path, monkeypatch):
    pytest.importorskip("cv2")
    pytest.importorskip("onnxruntime")
    rgb = read_image(ASSETS / "sample.png")
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 180, np.uint8)], axis=2)
    rgba[:10, :12, 3] = 0
    grey16 = synthetic_image(20, 30, 1).astype(np.uint16) * 257
    files = {"rgb.png": rgb, "rgba.png": rgba, "grey16.png": grey16, "rgb.bmp": rgb, "grey16.tif": grey16}
    for name, image in files.items():
        write_image(tmp_path / name, image)
    write_image(tmp_path / "rgb.jpg", rgb, quality=90)
    upscaler = open_upscaler("kdsr-iso-x4", UpscaleSettings(backend="onnx"))
    with_cv2 = {name: read_image(tmp_path / name) for name in [*files, "rgb.jpg"]}
    outputs = {"rgba": upscaler.upscale(rgba), "sized": upscaler.upscale(rgb, size=(150, 100))}
    _without_opencv(monkeypatch)
    for name, image in with_cv2.items():
        ours = read_image(tmp_path / name)
        assert ours.dtype == image.dtype and ours.shape == image.shape, name
        limit = 3 if name.endswith(".jpg") else 0  # JPEG decoders may differ in their rounding
        assert np.abs(ours.astype(int) - image.astype(int)).max() <= limit, name
    for name, image in files.items():  # written by Pillow, read back the same
        write_image(tmp_path / f"pillow-{name}", image)
        assert np.array_equal(read_image(tmp_path / f"pillow-{name}"), image), name
    rgba_out = upscaler.upscale(rgba)  # the colour under transparent pixels is filled by box filters instead
    visible = outputs["rgba"][:, :, 3] >= 64  # where the fill shows through little
    assert np.array_equal(rgba_out[:, :, 3], outputs["rgba"][:, :, 3])
    difference = np.abs(rgba_out[visible].astype(int) - outputs["rgba"][visible].astype(int))
    assert difference.max() <= 6 and difference.mean() < 0.1  # only near the transparent edge
    sized = upscaler.upscale(rgb, size=(150, 100))  # Pillow's Lanczos where OpenCV's was
    assert sized.shape == outputs["sized"].shape
    assert np.abs(sized.astype(int) - outputs["sized"].astype(int)).mean() < 1.0


def test_without_opencv_a_16_bit_colour_file_is_one_line_error(tmp_path, monkeypatch):
    rgb16 = synthetic_image(8, 10).astype(np.uint16) * 257
    write_image(tmp_path / "deep.png", rgb16)
    _without_opencv(monkeypatch)
    with pytest.raises(ImageError, match="16-bit colour PNG; reading it needs OpenCV"):
        read_image(tmp_path / "deep.png")
    with pytest.raises(ImageError, match="16-bit colour '.tif' output needs OpenCV"):
        write_image(tmp_path / "deep.tif", rgb16)
    assert not (tmp_path / "deep.tif").exists()


@pytest.mark.slow
def test_the_python_api_upscales_a_file_without_importing_torch():
    code = (
        "import sys, kdsr; out = kdsr.upscale(sys.argv[1]); "
        "assert out.shape == (320, 480, 3), out.shape; assert 'torch' not in sys.modules, 'torch was imported'"
    )
    done = subprocess.run([sys.executable, "-c", code, str(ASSETS / "sample.png")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_detail_blend_runs_torch_free_as_the_torch_blend(tmp_path, monkeypatch):
    """--detail between 0 and 1 without torch: the blend is a model file of ours, so its graphs are written from its
    weights on first use, and they run as the torch blend does."""
    pytest.importorskip("onnxruntime")
    from kdsr.detail import with_detail
    from kdsr.inference.graph_files import cached_split_folder
    from kdsr.inference.upscaler import Upscaler

    monkeypatch.setenv("KDSR_CACHE", str(tmp_path / "cache"))
    image = synthetic_image(20, 24)
    fast = open_upscaler(None, UpscaleSettings(backend="onnx", detail=0.3, tile=32))
    assert (cached_split_folder(Path(with_detail(None, 0.3))) / "generator.onnx").is_file()
    reference = Upscaler(None, backend="torch", precision="fp32", detail=0.3, tile=32).upscale(image)
    assert np.abs(fast.upscale(image).astype(int) - reference.astype(int)).max() <= 1


def test_a_clone_without_shipped_graphs_writes_them_without_torch(tmp_path):
    """A clone's ``pip install .`` has no shipped graphs (they are generated): the first run writes the bundled
    model's graphs from its weights into the cache, with torch unimportable, and upscales."""
    pytest.importorskip("onnxruntime")
    code = (
        "import sys, pathlib; sys.modules['torch'] = None\n"
        "import kdsr.inference.graph_files as g; g.shipped_graphs_root = lambda: pathlib.Path(sys.argv[2])\n"
        "import kdsr; out = kdsr.upscale(sys.argv[1]); assert out.shape == (320, 480, 3), out.shape\n"
        "print(sorted(p.name for p in pathlib.Path(sys.argv[3]).rglob('*.onnx')))"
    )
    env = {**os.environ, "KDSR_CACHE": str(tmp_path / "cache")}
    args = [str(ASSETS / "sample.png"), str(tmp_path / "no-graphs"), str(tmp_path / "cache")]
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['features.onnx', 'generator.onnx', 'head.onnx']"


def test_the_torch_free_standardisation_equals_the_encoders():
    """fastpath.mean_and_scale (numpy, in bands, float64 sums) is the twin of the energy encoder's standardise
    (torch): the same mean and scale to 1e-5, so the torch-free path feeds the features graph what torch's encoder
    sees (no openvino needed)."""
    import torch

    from kdsr.inference.fastpath import mean_and_scale
    from kdsr.models.encoder import _mean_and_scale

    x = np.random.default_rng(0).random((1, 3, 150, 97), dtype=np.float32) * 0.3 + 0.2
    mean, scale = mean_and_scale(x, band=16)
    reference_mean, reference_scale = _mean_and_scale(torch.from_numpy(x))
    assert abs(mean - float(reference_mean)) < 1e-5 and abs(scale - float(reference_scale)) < 1e-5
