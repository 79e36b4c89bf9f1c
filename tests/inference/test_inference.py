"""Tiled inference and the numpy-image upscaler: IDR once per image, seamless tiles, any size and layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kdsr.errors import ImageError, KDSRError
from kdsr.image_io import write_image
from kdsr.image_tensor import image_to_tensor, tensor_to_image
from kdsr.inference import Upscaler, estimate_idr, tiled_super_resolve
from kdsr.inference.alpha import fill_transparent
from kdsr.inference.tile_plan import axis_tiles, tiles, view_regions
from tests.conftest import synthetic_image, tiny_model


@pytest.mark.parametrize(
    "length, tile, overlap",
    [(10, 4, 1), (100, 32, 8), (7, 7, 2), (5, 8, 2), (33, 16, 0), (720, 512, 8), (1280, 512, 8)],
)
def test_tiles_cover_with_overlap_and_little_waste(length, tile, overlap):
    spans = axis_tiles(length, tile, overlap)
    covered = np.zeros(length, int)
    for start, end in spans:
        assert end - start <= tile and 0 <= start < end <= length
        covered[start:end] += 1
    assert covered.min() >= 1 and spans[0][0] == 0 and spans[-1][1] == length
    for (_, end), (start, _) in zip(spans[:-1], spans[1:], strict=True):
        assert end - start >= min(overlap, tile - 1)
    assert covered.sum() - length <= len(spans) * (overlap + 1)  # nothing repeated beyond the overlaps
    count = len(list(tiles(length, length + 3, tile, overlap)))
    assert count == len(spans) * len(axis_tiles(length + 3, tile, overlap))


def test_tiled_encoder_equals_whole_image_encoder():
    model = tiny_model(n_resblocks=2)
    lr = torch.rand(2, 3, 37, 29, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        whole = model.encode(lr)
    for tile in (5, 8, 16):
        tiled = estimate_idr(model, lr, tile)
        torch.testing.assert_close(tiled.d_prime, whole.d_prime, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(tiled.d, whole.d, rtol=1e-5, atol=1e-6)


def test_tiled_generator_with_full_context_is_exact():
    model = tiny_model(n_blocks=2)
    lr = torch.rand(1, 3, 23, 31, generator=torch.Generator().manual_seed(1))
    d = model.encode(lr).d
    with torch.no_grad():
        whole = model.super_resolve(lr, d)
    pad = model.G.receptive_radius
    tiled = tiled_super_resolve(model, lr, d, 8, pad, 3, torch.device("cpu"), torch.float32)
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-5)


def test_tiled_output_within_one_level_of_untiled_on_8bit():
    model = tiny_model(n_blocks=4)
    image = synthetic_image(45, 38)
    whole = Upscaler(model, device="cpu", tile=0).upscale(image)
    tiled = Upscaler(model, device="cpu", tile=16, tile_pad=12, tile_overlap=4).upscale(image)
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 1


def test_short_context_still_blends_without_seams():
    """With less context than the receptive field tiles differ a little from the whole image; the blended overlap
    spreads the difference, so no column or row of the output jumps at a seam as a hard cut between tiles does
    (blending measured at 0.15 of the hard cut's largest jump; flat averaging over the overlap at 0.9)."""
    model = tiny_model(n_blocks=6)
    lr = torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(2))
    d = model.encode(lr).d
    with torch.no_grad():
        whole = model.super_resolve(lr, d)

    def largest_jump(overlap: int) -> float:
        diff = tiled_super_resolve(model, lr, d, 16, 2, overlap, torch.device("cpu"), torch.float32) - whole
        across_columns = (diff[..., 1:] - diff[..., :-1]).abs().mean(dim=(0, 1, 2))
        across_rows = (diff[..., 1:, :] - diff[..., :-1, :]).abs().mean(dim=(0, 1, 3))
        return float(torch.cat([across_columns, across_rows]).max())

    blended, hard_cut = largest_jump(4), largest_jump(0)
    assert blended < 0.3 * hard_cut, (blended, hard_cut)


@pytest.mark.parametrize("size", [(1, 1), (1, 7), (5, 3), (17, 10)])
def test_any_size(size):
    """Any size, even 1x1, upscales; 4-px tiles give the whole-image result (tiling is exact up to rounding)."""
    image = synthetic_image(*size)
    out = Upscaler(tiny_model(), device="cpu", tile=4).upscale(image)
    whole = Upscaler(tiny_model(), device="cpu", tile=0).upscale(image)
    assert out.shape == (size[0] * 4, size[1] * 4, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - whole.astype(int)).max() <= 1


def test_grey_stays_grey_and_16bit_stays_16bit():
    up = Upscaler(tiny_model(), device="cpu")
    grey = up.upscale(synthetic_image(6, 5, 1, np.uint16))
    assert grey.shape == (24, 20, 1) and grey.dtype == np.uint16
    assert up.upscale(synthetic_image(6, 5)[:, :, 0]).shape == (24, 20, 1)


def test_16bit_output_uses_the_full_depth():
    out = Upscaler(tiny_model(), device="cpu").upscale(synthetic_image(8, 8, 3, np.uint16))
    assert out.dtype == np.uint16 and (out % 257 != 0).any()


@pytest.mark.parametrize("alpha_upsampler", ["kdsr", "bicubic"])
def test_rgba_keeps_alpha_and_transparent_colour(alpha_upsampler):
    image = synthetic_image(12, 12, 4)
    image[..., :3] = (200, 120, 40)
    image[..., 3] = 255
    image[:, 6:, 3] = 0
    image[:, 6:, :3] = 0  # black stored under full transparency, as many files do
    out = Upscaler(tiny_model(), device="cpu", alpha_upsampler=alpha_upsampler).upscale(image)
    assert out.shape == (48, 48, 4)
    if alpha_upsampler == "bicubic":
        assert out[:, :20, 3].min() >= 250 and out[:, 28:, 3].max() <= 5
    filled = fill_transparent(image[..., :3] / 255.0, image[..., 3] / 255.0)
    np.testing.assert_allclose(filled[:, 6:], np.broadcast_to([200 / 255, 120 / 255, 40 / 255], (12, 6, 3)), atol=1e-5)


def test_outscale():
    up = Upscaler(tiny_model(), device="cpu")
    assert up.upscale(synthetic_image(10, 8), outscale=2).shape == (20, 16, 3)
    assert up.upscale(synthetic_image(10, 8), outscale=6).shape == (60, 48, 3)
    for bad in (0, -2, float("nan")):
        with pytest.raises(ImageError, match="outscale must be > 0"):
            up.upscale(synthetic_image(10, 8), outscale=bad)


def test_bad_arguments():
    model = tiny_model()
    with pytest.raises(ImageError, match="too large"):
        Upscaler(model, device="cpu").upscale(np.zeros((20000, 20000, 3), np.uint8)[:, :, :])
    with pytest.raises(ImageError, match="expected"):
        Upscaler(model, device="cpu").upscale(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(KDSRError, match=">= 0"):
        Upscaler(model, device="cpu", tile=-1)
    with pytest.raises(KDSRError, match="unknown device"):
        Upscaler(model, device="gpu7")
    with pytest.raises(KDSRError, match="teacher"):
        Upscaler(tiny_model(teacher=True), device="cpu")


def test_bf16_on_cpu_is_close_to_fp32():
    model = tiny_model()
    image = synthetic_image(16, 16)
    fp32 = Upscaler(model, device="cpu", precision="fp32").upscale(image).astype(int)
    bf16 = Upscaler(tiny_model(), device="cpu", precision="bf16").upscale(image).astype(int)
    assert np.abs(fp32 - bf16).mean() < 3


@pytest.mark.parametrize("height, width, view", [(30, 500, 64), (1000, 3000, 256), (720, 1280, 256), (97, 101, 40)])
def test_view_regions_take_one_grid_cell_per_row_and_column(height, width, view):
    regions = view_regions(height, width, view)
    rows = sorted((y0, y1) for y0, y1, _, _ in regions)
    cols = sorted((x0, x1) for _, _, x0, x1 in regions)
    for spans, length in ((rows, height), (cols, width)):  # each axis partitioned exactly once
        assert spans[0][0] == 0 and spans[-1][1] == length
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert sum((y1 - y0) * (x1 - x0) for y0, y1, x0, x1 in regions) <= view * view
    assert len(regions) > 1


def test_small_images_and_view_zero_use_the_whole_image():
    assert view_regions(30, 50, 0) == [(0, 30, 0, 50)]
    assert view_regions(60, 60, 60) == [(0, 60, 0, 60)]


@pytest.mark.parametrize("tile", [0, 7])
def test_view_idr_pools_the_whole_image_features_over_the_regions(tile):
    """The view's regions see real context, so their pooled features are the whole image's features there."""
    model = tiny_model(n_resblocks=2)
    lr = torch.rand(1, 3, 40, 60, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        features = model.encoder.feature_map(lr)
        regions = view_regions(40, 60, 20)
        pooled = sum(features[:, :, y0:y1, x0:x1].sum((2, 3)) for y0, y1, x0, x1 in regions)
        expected = model.encoder.from_pooled(pooled / sum((y1 - y0) * (x1 - x0) for y0, y1, x0, x1 in regions))
    viewed = estimate_idr(model, lr, tile, view=20)
    torch.testing.assert_close(viewed.d, expected.d, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(viewed.d, model.encode(lr).d)


def test_upscaler_idr_view_changes_only_the_idr():
    model = tiny_model()
    image = synthetic_image(30, 50)
    lr = image_to_tensor(image)
    viewed = Upscaler(model, device="cpu", tile=0, idr_view=20, border_pad=0, fix_color=False).upscale(image)
    with torch.no_grad():
        expected = model.super_resolve(lr, estimate_idr(model, lr, view=20).d)
    expected = tensor_to_image(expected)
    assert np.abs(viewed.astype(int) - expected.astype(int)).max() <= 1


def test_output_size_options_and_metadata_are_kept(tmp_path):
    from PIL import Image, ImageCms

    from kdsr.checkpoint import save_model
    from kdsr.cli import main
    from kdsr.image_io import read_image

    model = tmp_path / "tiny.safetensors"
    save_model(tiny_model(), model)
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    picture = Image.fromarray(synthetic_image(10, 16))
    exif = picture.getexif()
    exif[0x0112], exif[0x010F] = 6, "Camera maker"  # stored rotated: a viewer turns it 90 degrees
    exif.get_ifd(0x8769)[0xA002], exif.get_ifd(0x8769)[0xA003] = 16, 10
    picture.save(tmp_path / "photo.jpg", icc_profile=profile, exif=exif.tobytes(), quality=95)
    for ext in ("png", "jpg", "webp"):
        out = tmp_path / f"out.{ext}"
        assert main(["upscale", "-i", str(tmp_path / "photo.jpg"), "-o", str(out), "-n", str(model), "-q"]) == 0
        assert read_image(out).shape[:2] == (64, 40)  # turned upright (10x16 stored, orientation 6), x4
        with Image.open(out) as result:
            kept = result.getexif()
            assert result.info["icc_profile"] == profile
            assert kept[0x0112] == 1 and kept[0x010F] == "Camera maker"
            assert dict(kept.get_ifd(0x8769)) == {0xA002: 40, 0xA003: 64}
    args = ["upscale", "-i", str(tmp_path / "photo.jpg"), "-n", str(model), "-q", "--overwrite"]
    assert main([*args, "-o", str(tmp_path / "w.png"), "--width", "100"]) == 0
    assert read_image(tmp_path / "w.png").shape[:2] == (160, 100)  # the height follows the aspect ratio
    assert main([*args, "-o", str(tmp_path / "h.png"), "--height", "20"]) == 0
    assert read_image(tmp_path / "h.png").shape[:2] == (20, 12)
    assert main([*args, "-o", str(tmp_path / "wh.png"), "--width", "30", "--height", "50"]) == 0
    assert read_image(tmp_path / "wh.png").shape[:2] == (50, 30)
    assert main([*args, "-o", str(tmp_path / "q.jpg"), "--quality", "30"]) == 0
    assert (tmp_path / "q.jpg").stat().st_size < (tmp_path / "out.jpg").stat().st_size
    for bad in (["--quality", "0"], ["--width", "0"], ["-s", "2", "--width", "9"]):
        assert main([*args, "-o", str(tmp_path / "bad.png"), *bad]) == 1
    assert not (tmp_path / "bad.png").exists()


@pytest.mark.parametrize("encoder", ["official", "energy"])
def test_split_onnx_graphs_run_the_same_tiling_path_as_torch(tmp_path, encoder):
    pytest.importorskip("onnxruntime")
    from kdsr.cli import main
    from kdsr.export import export_onnx_split
    from kdsr.image_io import read_image
    from kdsr.inference.onnx_runtime import OnnxGraphs

    model = tiny_model(encoder=encoder)
    export_onnx_split(model, tmp_path / "split")
    graphs = OnnxGraphs(tmp_path / "split")
    lr = torch.rand(2, 3, 20, 28)
    with torch.no_grad():
        idr = model.encode(lr)
        torch.testing.assert_close(graphs.encoder(lr).d, idr.d, rtol=0, atol=1e-5)
        torch.testing.assert_close(graphs.super_resolve(lr, idr.d), model.super_resolve(lr, idr.d), rtol=0, atol=1e-4)
    image = synthetic_image(40, 52)
    settings = {"tile": 16, "tile_pad": 6, "tile_overlap": 4, "idr_view": 24, "precision": "fp32", "device": "cpu"}
    ours = Upscaler(model, **settings).upscale(image)
    onnx = Upscaler(str(tmp_path / "split"), backend="onnx", **settings).upscale(image)
    assert np.abs(ours.astype(int) - onnx.astype(int)).max() <= 1  # same tiles, same one IDR: within rounding
    write_image(tmp_path / "in.png", image)
    argv = ["upscale", "-i", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"), "-q"]
    assert main([*argv, "-n", str(tmp_path / "split"), "--backend", "onnx", "-t", "16"]) == 0
    assert read_image(tmp_path / "out.png").shape == (160, 208, 3)
    (tmp_path / "split" / "head.onnx").unlink()
    with pytest.raises(KDSRError, match="missing head.onnx"):
        OnnxGraphs(tmp_path / "split")


@pytest.mark.parametrize("encoder", ["official", "energy"])
def test_openvino_backend_runs_the_same_tiling_path(tmp_path, monkeypatch, encoder):
    pytest.importorskip("openvino")
    pytest.importorskip("onnx")
    from kdsr.checkpoint import save_model

    monkeypatch.setenv("KDSR_CACHE", str(tmp_path / "cache"))
    model = tiny_model(encoder=encoder)
    save_model(model, tmp_path / "m.safetensors")
    image = synthetic_image(40, 52)
    settings = {"tile": 16, "tile_pad": 6, "tile_overlap": 4, "idr_view": 24}
    ours = Upscaler(model, precision="fp32", device="cpu", **settings).upscale(image)
    vino = Upscaler(str(tmp_path / "m.safetensors"), backend="openvino", precision="fp32", **settings)
    assert np.abs(ours.astype(int) - vino.upscale(image).astype(int)).max() <= 1
    assert len(list((tmp_path / "cache" / "onnx-split").iterdir())) == 1  # exported once, cached by content
    bf16 = Upscaler(str(tmp_path / "m.safetensors"), backend="openvino", precision="bf16", **settings).upscale(image)
    assert np.abs(ours.astype(int) - bf16.astype(int)).mean() < 2
    with pytest.raises(KDSRError, match="fp32, bf16, int8"):
        Upscaler(str(tmp_path / "m.safetensors"), backend="openvino", precision="fp16")


def test_openvino_generator_runs_its_tail_in_bands_with_the_same_result(tmp_path, monkeypatch):
    ov = pytest.importorskip("openvino")
    pytest.importorskip("onnx")
    from kdsr.checkpoint import save_model
    from kdsr.constants import TAIL_BAND
    from kdsr.inference import openvino_runtime
    from kdsr.inference.graph_cache import graph_files
    from kdsr.inference.openvino_core import as_infer, compile_graph
    from kdsr.inference.openvino_runtime import banded_generator, split_generator

    monkeypatch.setenv("KDSR_CACHE", str(tmp_path / "cache"))
    save_model(tiny_model(), tmp_path / "m.safetensors")
    core = ov.Core()
    generator = str(graph_files(tmp_path / "m.safetensors").files[2])
    whole = as_infer(compile_graph(core, core.read_model(generator), "fp32"))
    parts = split_generator(ov, core.read_model(generator))
    body, tail = (as_infer(compile_graph(core, part, "fp32")) for part in parts)
    heights = []
    counted = lambda feeds: heights.append(feeds[0].shape[2]) or tail(feeds)  # noqa: E731
    banded = banded_generator(body, counted, 4)
    g = np.random.default_rng(0)
    for height in (9, TAIL_BAND * 2 + 7):
        feeds = {"lr": g.random((1, 3, height, 23), dtype=np.float32), "d": g.random((1, 8), dtype=np.float32)}
        np.testing.assert_allclose(banded(feeds)[0], whole(feeds)[0], atol=1e-5)
    assert heights[0] == 9 and max(heights[1:]) <= TAIL_BAND + 4 and len(heights) == 4  # small: whole; tall: 3 bands
    compiled = openvino_runtime.compile_split(tmp_path / "m.safetensors")
    feeds = {"lr": g.random((1, 3, 80, 20), dtype=np.float32), "d": g.random((1, 8), dtype=np.float32)}
    np.testing.assert_allclose(compiled.infers[2](feeds)[0], whole(feeds)[0], atol=1e-5)


def _int8_checks(tmp: str) -> None:
    """The INT8 test's body, run in a child process (see below)."""
    import os

    tmp_path = Path(tmp)
    from kdsr.checkpoint import save_model
    from kdsr.export import int8 as openvino

    os.environ["KDSR_CACHE"] = str(tmp_path / "cache")
    model = tiny_model()
    save_model(model, tmp_path / "m.safetensors")
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    for i in range(2):
        write_image(calibration / f"{i}.png", synthetic_image(64, 72, seed=i))
    image = synthetic_image(40, 52)
    settings = {"tile": 16, "tile_pad": 6, "tile_overlap": 4, "idr_view": 24}
    ours = Upscaler(model, precision="fp32", device="cpu", **settings).upscale(image)
    path = str(tmp_path / "m.safetensors")
    int8 = Upscaler(path, backend="openvino", precision="int8", calibration=calibration, **settings)
    assert int8.precision == "int8"
    assert np.abs(ours.astype(int) - int8.upscale(image).astype(int)).mean() < 3
    assert len(list((tmp_path / "cache" / "openvino-int8").iterdir())) == 1
    import openvino as ov

    from kdsr.inference.openvino_runtime import split_generator

    quantised = next((tmp_path / "cache" / "openvino-int8").glob("*/generator.xml"))
    body, tail = split_generator(ov, ov.Core().read_model(str(quantised)))  # its tail runs banded too
    assert any(op.get_type_name() == "FakeQuantize" for op in tail.get_ordered_ops())

    def no_rebuild(*args, **kwargs):
        raise AssertionError("quantised again")

    openvino.quantize_generator = no_rebuild
    Upscaler(path, backend="openvino", precision="int8", calibration=calibration, **settings)  # from the cache
    # kdsr export --format openvino --int8: the same cached generator, in a folder that runs as INT8 as it is
    from kdsr.cli import main

    exported = tmp_path / "ir8"
    argv = ["export", "-n", path, "-o", str(exported), "--format", "openvino", "--int8", "--calibration"]
    assert main([*argv, str(calibration)]) == 0
    assert json.loads((exported / "openvino.json").read_text()) == {"int8": True}
    from_folder = Upscaler(str(exported), backend="openvino", precision="bf16", **settings)
    assert from_folder.precision == "int8"
    assert np.abs(from_folder.upscale(image).astype(int) - int8.upscale(image).astype(int)).mean() < 1
    assert main([*argv, str(calibration)]) == 1  # the folder exists: refused, left alone
    float_ir = tmp_path / "ir"
    assert main(["export", "-n", path, "-o", str(float_ir), "--format", "openvino", "--check"]) == 0
    vino = Upscaler(str(float_ir), backend="openvino", precision="fp32", **settings)
    assert vino.precision == "fp32" and np.abs(ours.astype(int) - vino.upscale(image).astype(int)).max() <= 1
    (float_ir / "head.xml").unlink()
    with pytest.raises(KDSRError, match="missing head.xml"):
        Upscaler(str(float_ir), backend="openvino")
    assert main(["export", "-n", path, "-o", str(tmp_path / "x.onnx"), "--int8"]) == 1
    write_image(calibration / "2.png", synthetic_image(64, 64, seed=2))
    with pytest.raises(AssertionError, match="quantised again"):  # other calibration images: built anew
        Upscaler(path, backend="openvino", precision="int8", calibration=calibration, **settings)
    write_image(calibration / "small.png", synthetic_image(40, 40))
    with pytest.raises(KDSRError, match="too small to calibrate"):
        Upscaler(path, backend="openvino", precision="int8", calibration=calibration, **settings)
    with pytest.raises(KDSRError, match="add --backend openvino"):
        Upscaler(path, precision="int8")


def test_openvino_int8_is_calibrated_checked_and_cached(tmp_path):
    """In a child process: with NNCF loaded, a SIGTERM that a later test sends to its own process (the training
    interruption test) crashed the interpreter (segmentation fault)."""
    pytest.importorskip("openvino")
    pytest.importorskip("onnx")
    pytest.importorskip("nncf")
    import multiprocessing

    child = multiprocessing.get_context("spawn").Process(target=_int8_checks, args=(str(tmp_path),))
    child.start()
    child.join(600)
    assert child.exitcode == 0, "the INT8 checks failed in the child process (its traceback is above)"


def test_default_calibration_pairs_are_everyday_inputs():
    from kdsr.export.int8 import CALIBRATION_CASES, calibration_pairs, default_calibration_folder

    model = tiny_model()
    with torch.no_grad():
        pairs = calibration_pairs(None, model.encode, 4)
    images = list(default_calibration_folder().glob("*.png"))
    assert len(images) == 6 and len(pairs) == 6 * len(CALIBRATION_CASES)
    feeds, hr, case = pairs[0]
    assert feeds["lr"].shape == (1, 3, 48, 48) and feeds["d"].shape == (1, model.config.n_feats)
    assert hr.shape == (192, 192, 3) and hr.dtype == np.uint8 and case == CALIBRATION_CASES[0]
    assert not np.array_equal(pairs[0].feeds["lr"], pairs[1].feeds["lr"])  # clean, then JPEG: different inputs


def test_auto_backend_choice(monkeypatch):
    import importlib.util

    from kdsr.inference.upscaler import auto_backend

    has_openvino = importlib.util.find_spec("openvino") is not None and importlib.util.find_spec("onnx") is not None
    import platform

    x86 = platform.machine().lower() in ("x86_64", "amd64", "i686")
    assert auto_backend("kdsr-real-x4", "cpu", "fp32") == ("openvino" if has_openvino and x86 else "torch")
    assert auto_backend(tiny_model(), "cpu", "fp32") == "torch"  # a module in memory stays with torch
    assert auto_backend("kdsr-real-x4", "cpu", "fp16") == "torch"  # OpenVINO runs fp32 or bf16 here
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert auto_backend("kdsr-real-x4", "cpu", "fp32") == "torch"
