"""The torch-free inference path (kdsr.inference.fastpath): the same outputs as the torch backend, and no torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from kdsr.bundled import bundled_models
from kdsr.errors import CheckpointError
from kdsr.image_io import read_image, write_image
from kdsr.inference.upscaler import Upscaler
from tests.conftest import ASSETS, synthetic_image, tiny_model

pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A model cache of this module's own (the split graphs are exported into it on first use)."""
    return tmp_path_factory.mktemp("cache")


def _rgba(image: np.ndarray) -> np.ndarray:
    alpha = np.full(image.shape[:2] + (1,), 200, np.uint8)
    alpha[:6, :9] = 0
    return np.concatenate([image, alpha], axis=2)


@pytest.mark.parametrize("runtime", ["openvino", "onnx"])
@pytest.mark.parametrize("name", sorted(bundled_models()))
def test_fast_path_matches_the_torch_backend_on_every_bundled_model(name, runtime, cache, monkeypatch):
    pytest.importorskip("openvino" if runtime == "openvino" else "onnxruntime")
    from kdsr.inference.fastpath import open_fast_upscaler

    monkeypatch.setenv("KDSR_CACHE", str(cache))  # empty: the graphs shipped with the package are used
    image = read_image(ASSETS / "sample.png")
    grey = image.mean(axis=2).astype(np.uint8)
    settings = {"tile": 32, "tile_pad": 6, "tile_overlap": 4, "idr_view": 40}  # tiles and a bounded IDR view
    fast = open_fast_upscaler(name, runtime, "fp32", **settings)
    assert not (cache / "onnx-split").exists()
    torch_path = Upscaler(name, backend="torch", precision="fp32", **settings)
    for picture in (image, grey, _rgba(image)):
        ours, reference = fast.upscale(picture), torch_path.upscale(picture)
        assert ours.shape == reference.shape and ours.dtype == reference.dtype
        assert np.abs(ours.astype(int) - reference.astype(int)).max() <= 1
    d, _ = fast.estimate_idr(image)
    np.testing.assert_allclose(d, torch_path.estimate_idr(image).numpy(), atol=1e-4)
    from kdsr.insight.estimator import load_estimator

    reader, reference_reader = fast.degradation_reader(name), load_estimator(name)
    assert (reader is None) == (reference_reader is None)
    if reader is not None:  # a bundled estimator reads the same degradation off the graphs' IDR
        ours, theirs = reader(image), reference_reader(image)
        assert ours.keys() == theirs.keys()
        assert all(abs(ours[k] - theirs[k]) < 0.05 for k in ours if isinstance(ours[k], float))  # float rounding
    resized = fast.upscale(image, outscale=2)
    assert resized.shape == (160, 240, 3)


def test_split_onnx_folder_runs_torch_free_with_onnxruntime(tmp_path):
    pytest.importorskip("onnxruntime")
    from kdsr.export.onnx import export_onnx_split
    from kdsr.inference.fastpath import open_fast_upscaler

    model = tiny_model(encoder="energy")
    export_onnx_split(model, tmp_path / "split")
    image = synthetic_image(40, 52)
    settings = {"tile": 16, "tile_pad": 6, "tile_overlap": 4, "idr_view": 24}
    fast = open_fast_upscaler(str(tmp_path / "split"), "onnx", "fp32", **settings)
    reference = Upscaler(model, precision="fp32", device="cpu", **settings).upscale(image)
    assert np.abs(fast.upscale(image).astype(int) - reference.astype(int)).max() <= 1
    write_image(tmp_path / "photo.png", image)
    assert np.array_equal(fast.upscale(tmp_path / "photo.png"), fast.upscale(image))  # a path is read first
    assert open_fast_upscaler(str(tmp_path / "split"), "onnx", "fp16") is None  # fp16 is torch's
    (tmp_path / "split" / "head.onnx").write_bytes(b"damaged")
    with pytest.raises(CheckpointError, match="head.onnx: not a loadable ONNX model"):
        open_fast_upscaler(str(tmp_path / "split"), "onnx", "fp32")


def _cli(tmp_path, cache, *args: str) -> subprocess.CompletedProcess:
    """``kdsr upscale`` in a fresh interpreter that reports whether torch was imported."""
    code = (
        "import sys; from kdsr.cli import main; rc = main(sys.argv[1:]); "
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr); sys.exit(rc)"
    )
    env = {"KDSR_CACHE": str(cache), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    return subprocess.run([sys.executable, "-c", code, "upscale", *args], capture_output=True, text=True, env=env)


def test_cli_runs_bundled_models_torch_free_and_builds_other_models_graphs_once(tmp_path):
    pytest.importorskip("openvino")
    import torch

    from kdsr.checkpoint import read_checkpoint

    cache, source = tmp_path / "cache", tmp_path / "in.png"
    write_image(source, synthetic_image(24, 30))
    first = _cli(tmp_path, cache, "-i", str(source), "-o", str(tmp_path / "a.png"), "--backend", "auto", "-v")
    assert first.returncode == 0, first.stderr
    assert "backend openvino (torch-free path), cpu, fp32" in first.stderr and "NO-TORCH" in first.stderr  # shipped
    refused = _cli(tmp_path, cache, "-i", str(source), "-o", str(tmp_path / "a.png"))
    assert refused.returncode == 1 and "output file(s) exist" in refused.stderr and "NO-TORCH" in refused.stderr
    mine = tmp_path / "mine.safetensors"  # not a bundled file, but ours: its graphs are written, no torch
    mine.write_bytes(bundled_models()["kdsr-iso-x4"].read_bytes())
    written = _cli(tmp_path, cache, "-i", str(source), "-n", str(mine), "-o", str(tmp_path / "own0.png"), "-v")
    assert written.returncode == 0 and "torch-free path" in written.stderr and "NO-TORCH" in written.stderr
    checkpoint = tmp_path / "official.pth"  # another format: its graphs are exported once, with torch
    torch.save(read_checkpoint(mine)[1], checkpoint)
    own = ["-i", str(source), "-n", str(checkpoint)]
    built = _cli(tmp_path, cache, *own, "-o", str(tmp_path / "own1.png"), "-v")
    assert built.returncode == 0 and "TORCH" in built.stderr and "NO-TORCH" not in built.stderr, built.stderr
    verbose = _cli(tmp_path, cache, *own, "-o", str(tmp_path / "own2.png"), "-v")
    assert "torch-free path" in verbose.stderr and "NO-TORCH" in verbose.stderr
    a, b = read_image(tmp_path / "own1.png"), read_image(tmp_path / "own2.png")
    assert a.shape == (96, 120, 3) and np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert np.abs(a.astype(int) - read_image(tmp_path / "own0.png").astype(int)).max() <= 1
    assert "in.png: blur sigma (HR px)" in written.stderr  # the estimator reads the graphs' IDR
    forced = _cli(tmp_path, cache, "-i", str(source), "-o", str(tmp_path / "c.png"), "--backend", "torch", "-v")
    assert "backend torch, cpu" in forced.stderr and "TORCH" in forced.stderr
