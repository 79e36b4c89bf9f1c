"""Data safety (issue 13): inputs are never written, outputs never silently replaced or lost, hostile files refused
early, and every failure is one line."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch

from kdsr import save_model
from kdsr.cli import main
from kdsr.errors import ImageError
from kdsr.image_io import has_output_mark, read_image, write_image
from tests.conftest import synthetic_image, tiny_model


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "tiny.safetensors"
    save_model(tiny_model(), path)
    return str(path)


def _upscale(*args: str) -> int:
    return main(["upscale", *args])


def test_folder_into_itself_never_replaces_or_reprocesses(tmp_path, model_file, capsys):
    d = tmp_path / "d"
    write_image(d / "x.png", synthetic_image(6, 6))
    assert _upscale("-i", str(d / "x.png"), "-o", str(d / "x_out.png"), "-n", model_file) == 0  # an earlier result
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    assert _upscale("-i", str(d), "-o", str(d), "-n", model_file) == 1
    err = capsys.readouterr().err
    assert "exist" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before  # nothing written, no x_out_out.png
    assert _upscale("-i", str(d), "-o", str(d), "-n", model_file, "--skip-existing") == 0
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before
    assert _upscale("-i", str(d), "-o", str(d), "-n", model_file, "--overwrite") == 0
    assert sorted(p.name for p in d.iterdir()) == ["x.png", "x_out.png"]
    assert read_image(d / "x_out.png").shape == (24, 24, 3)
    assert (d / "x.png").read_bytes() == before["x.png"]


@pytest.mark.parametrize("ext", ["png", "jpg", "webp"])
def test_a_users_own_file_named_like_an_output_is_an_input_never_replaced(tmp_path, model_file, capsys, ext):
    """x_out.png beside x.png that kdsr did not write (no kdsr mark in its EXIF) is the user's: never replaced, even
    under --overwrite; with --skip-existing it is upscaled like any input."""
    d = tmp_path / "d"
    write_image(d / f"x.{ext}", synthetic_image(6, 6))
    write_image(d / f"x_out.{ext}", synthetic_image(5, 5, seed=3))
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    for flags in ([], ["--overwrite"]):
        assert _upscale("-i", str(d), "-o", str(d), "-n", model_file, *flags) == 1
        err = capsys.readouterr().err
        assert f"x_out.{ext}: has the output name of x.{ext} but kdsr did not write it" in err
        assert len(err.strip().splitlines()) == 1
        assert {p.name: p.read_bytes() for p in d.iterdir()} == before
    assert _upscale("-i", str(d), "-o", str(d), "-n", model_file, "--skip-existing") == 0
    assert {p.name: p.read_bytes() for p in d.iterdir() if p.name in before} == before
    assert read_image(d / f"x_out_out.{ext}").shape == (20, 20, 3)
    assert has_output_mark(d / f"x_out_out.{ext}") and not has_output_mark(d / f"x_out.{ext}")


def test_skip_existing_continues_a_folder_run(tmp_path, model_file):
    src, out = tmp_path / "in", tmp_path / "out"
    for name in "abc":
        write_image(src / f"{name}.png", synthetic_image(5, 5))
    write_image(out / "a_out.png", synthetic_image(2, 2))
    assert _upscale("-i", str(src), "-o", str(out), "-n", model_file, "--skip-existing") == 0
    assert read_image(out / "a_out.png").shape == (2, 2, 3)  # kept
    assert read_image(out / "b_out.png").shape == (20, 20, 3)


@pytest.mark.parametrize("names", [("a.png", "a.jpg"), ("a.jpg", "a.JPG")])
def test_two_inputs_one_output_name_is_refused_before_any_work(tmp_path, model_file, capsys, names):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for name in names:
        write_image(src / "tmp.png", synthetic_image(4, 4))
        (src / "tmp.png").rename(src / name)
    if len(list(src.iterdir())) < 2:
        pytest.skip("case-insensitive file system")
    ext = ["--ext", "png"] if names[1] == "a.jpg" else []
    assert _upscale("-i", str(src), "-o", str(out), "-n", model_file, *ext) == 1
    err = capsys.readouterr().err
    assert "share an output name" in err and all(n in err for n in names)
    assert not out.exists() or not any(out.iterdir())


def test_stale_temporaries_of_a_killed_run_are_removed(tmp_path, model_file):
    src, out = tmp_path / "in", tmp_path / "out"
    write_image(src / "a.png", synthetic_image(4, 4))
    out.mkdir()
    (out / ".a_out.png.abc123.tmp").write_bytes(b"half")
    (out / ".unrelated.tmp").write_bytes(b"keep")
    assert _upscale("-i", str(src), "-o", str(out), "-n", model_file) == 0
    assert sorted(p.name for p in out.iterdir()) == [".unrelated.tmp", "a_out.png"]


def test_output_with_an_unknown_extension_is_refused(tmp_path, model_file, capsys):
    write_image(tmp_path / "a.png", synthetic_image(4, 4))
    assert _upscale("-i", str(tmp_path / "a.png"), "-o", str(tmp_path / "out.xyz"), "-n", model_file) == 1
    assert "not an image format" in capsys.readouterr().err
    assert not (tmp_path / "out.xyz").exists()


def _png_with_size(width: int, height: int) -> bytes:
    """A tiny valid PNG whose header declares ``width`` x ``height`` (the pixel data is a few bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def test_decompression_bombs_are_refused_from_the_header(tmp_path, model_file, capsys):
    src = tmp_path / "in"
    src.mkdir()
    (src / "bomb.png").write_bytes(_png_with_size(30000, 30000))
    (src / "huge.png").write_bytes(_png_with_size(60000, 60000))
    write_image(src / "ok.png", synthetic_image(4, 4))
    with pytest.raises(ImageError, match="over the limit"):
        read_image(src / "bomb.png")
    assert _upscale("-i", str(src), "-o", str(tmp_path / "out"), "-n", model_file) == 1
    err = capsys.readouterr().err
    assert "2 file(s) failed" in err and "over the limit" in err and "Traceback" not in err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["ok_out.png"]
    assert _upscale("-i", str(src / "ok.png"), "-o", str(tmp_path / "o2"), "-n", model_file, "--max-pixels", "10") == 1
    assert "over the limit of 10 pixels" in capsys.readouterr().err


def test_a_png_with_exif_after_its_pixels_is_sized_without_decoding_them(tmp_path, monkeypatch):
    """Pillow's getexif decodes a whole PNG to find an eXIf chunk after the pixel data (for a 30000x30000 one: 20 s
    and 2.7 GB before the size check); the header check must not load a single pixel."""
    import struct
    import zlib

    from PIL import ImageFile

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0))
    pixels = chunk(b"IDAT", zlib.compress(bytes(1 + 3 * 30000) * 4))
    exif = chunk(b"eXIf", b"MM\x00*\x00\x00\x00\x08\x00\x00")
    (tmp_path / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + header + pixels + exif + chunk(b"IEND", b""))

    def no_decoding(self):
        raise AssertionError("pixels decoded before the size check")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(ImageError, match="30000x30000 is over the limit"):
        read_image(tmp_path / "bomb.png")


def test_animated_images_warn_that_only_the_first_frame_is_used(tmp_path):
    from PIL import Image

    frames = [Image.fromarray(synthetic_image(8, 8, seed=s)) for s in range(3)]
    frames[0].save(tmp_path / "anim.webp", save_all=True, append_images=frames[1:])
    with pytest.warns(UserWarning, match="only the first"):
        assert read_image(tmp_path / "anim.webp").shape == (8, 8, 3)


def test_a_folder_run_reads_a_gif_as_a_single_file_run_does(tmp_path, model_file):
    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    frames = [Image.fromarray(synthetic_image(8, 8, seed=s)) for s in range(3)]
    frames[0].save(src / "anim.gif", save_all=True, append_images=frames[1:])
    write_image(src / "b.png", synthetic_image(8, 8))
    assert _upscale("-i", str(src), "-o", str(tmp_path / "out"), "-n", model_file, "-q") == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["anim_out.png", "b_out.png"]


def test_blocked_output_folder_and_full_disk_are_one_line(tmp_path, model_file, capsys, monkeypatch):
    write_image(tmp_path / "a.png", synthetic_image(4, 4))
    write_image(tmp_path / "b.png", synthetic_image(4, 4))
    (tmp_path / "file").write_bytes(b"x")
    assert _upscale("-i", str(tmp_path / "a.png"), "-o", str(tmp_path / "file" / "sub"), "-n", model_file) == 1
    err = capsys.readouterr().err
    assert "cannot write" in err and "Traceback" not in err

    import kdsr.image_io

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(kdsr.image_io.png_stream, "_write_chunk", full_disk)
    src = tmp_path / "src"
    src.mkdir()
    (tmp_path / "a.png").rename(src / "a.png")
    assert _upscale("-i", str(src), "-o", str(tmp_path / "out"), "-n", model_file) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not any((tmp_path / "out").iterdir())  # the half-written file went with the error


def test_models_into_a_closed_pipe_is_quiet():
    import subprocess
    import sys

    proc = subprocess.run(
        f"{sys.executable} -m kdsr models kdsr-iso-x4 | head -1", shell=True, capture_output=True, text=True
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr


def test_python_api_accepts_paths(tmp_path):
    import kdsr

    write_image(tmp_path / "a.png", synthetic_image(4, 4))
    assert kdsr.upscale(tmp_path / "a.png", tiny_model()).shape == (16, 16, 3)
    assert kdsr.Upscaler(tiny_model(), device="cpu").upscale(tmp_path / "a.png").shape == (16, 16, 3)


def _retag(source, target, **changes):
    """Copy a safetensors model with its kdsr_config metadata changed (the tensors untouched)."""
    import json as _json

    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(source), framework="pt") as f:
        metadata = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    config = _json.loads(metadata["kdsr_config"])
    config.update(changes)
    metadata["kdsr_config"] = _json.dumps(config)
    save_file(tensors, str(target), metadata=metadata)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"n_blocks": 20000}, "n_blocks=20000 is beyond"),
        ({"n_blocks": 100000}, "n_blocks=100000 is beyond"),
        ({"n_feats": 100000}, "n_feats=100000 is beyond"),
        ({"n_feats": True}, "n_feats must be a positive integer"),
        ({"n_blocks": 3}, "does not match its tensors"),
        ({"teacher": "yes"}, "teacher must be"),
    ],
)
def test_tampered_checkpoint_configs_are_refused_at_once(tmp_path, model_file, capsys, changes, message):
    import time

    from kdsr.checkpoint import load_model
    from kdsr.errors import CheckpointError

    bad = tmp_path / "bad.safetensors"
    _retag(model_file, bad, **changes)
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=message):
        load_model(bad)
    assert time.perf_counter() - start < 2  # refused before building anything (was 11 s and 2.2 GB for 20000)


def test_official_checkpoint_with_absurd_block_count_is_refused(tmp_path):
    import torch

    from kdsr.checkpoint import load_model
    from kdsr.errors import CheckpointError

    state = {f"G.{k}": v for k, v in tiny_model().G.state_dict().items()}
    state.update({f"E_st.{k}": v for k, v in tiny_model().encoder.state_dict().items()})
    for i in range(2, 2000):  # indices only, one tiny tensor each
        state[f"G.body.0.body.{i}.conv1.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="n_blocks=2000 is beyond"):
        load_model(tmp_path / "evil.pt")


def test_non_checkpoint_file_says_what_it_is_not(tmp_path, capsys):
    import pickle

    (tmp_path / "obj.pt").write_bytes(pickle.dumps({"x": ImageError("a Python object")}))
    write_image(tmp_path / "a.png", synthetic_image(4, 4))
    assert _upscale("-i", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "-n", str(tmp_path / "obj.pt")) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "never unpickles" in err and "Weights only load failed" not in err
    (tmp_path / "random.pth").write_bytes(np.random.default_rng(0).bytes(3000))
    assert _upscale("-i", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "-n", str(tmp_path / "random.pth")) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "neither a safetensors file nor a PyTorch checkpoint" in err


def _paired_set(root, lr_sizes, hr_size=(32, 32), names=("a", "b")):
    for name, size in zip(names, lr_sizes, strict=True):
        write_image(root / "HR" / f"{name}.png", synthetic_image(*hr_size))
        if size:
            write_image(root / "LR" / f"{name}_x4.png", synthetic_image(*size))


@pytest.mark.parametrize(
    "lr_sizes, message",
    [
        ([(16, 16), (8, 8)], "is not its HR"),  # an x2 LR
        ([(32, 32), (8, 8)], "is not its HR"),  # LR == HR
        ([(8, 8), None], "without a partner: b.png"),  # an HR without its LR is not silently dropped
    ],
)
def test_paired_benchmark_refuses_wrong_sizes_and_unmatched_files(tmp_path, lr_sizes, message, capsys):
    _paired_set(tmp_path / "set", lr_sizes)
    assert main(["benchmark", "-n", "bicubic", "--data", str(tmp_path / "set"), "--protocol", "paired", "-q"]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_paired_benchmark_pairs_x4_names_and_scores(tmp_path, capsys):
    _paired_set(tmp_path / "set", [(8, 8), (8, 8)])
    assert main(["benchmark", "-n", "bicubic", "--data", str(tmp_path / "set"), "--protocol", "paired", "-q"]) == 0


def test_ssim_on_a_tiny_image_is_a_one_line_error(tmp_path, capsys):
    _paired_set(tmp_path / "set", [(1, 1)], hr_size=(4, 4), names=("a",))
    assert main(["benchmark", "-n", "bicubic", "--data", str(tmp_path / "set"), "--protocol", "paired", "-q"]) == 1
    assert "SSIM needs at least 11x11" in capsys.readouterr().err


def test_degrade_goes_on_past_a_corrupt_file(tmp_path, capsys):
    import json as _json

    src = tmp_path / "hr"
    write_image(src / "a.png", synthetic_image(16, 16))
    (src / "b.png").write_bytes(b"\x89PNG\r\n\x1a\ncorrupt")
    write_image(src / "c.png", synthetic_image(16, 16))
    assert main(["degrade", "-i", str(src), "-o", str(tmp_path / "lr"), "--blur", "iso", "--sigma", "1.0"]) == 1
    assert sorted(p.name for p in (tmp_path / "lr").glob("*.png")) == ["a.png", "c.png"]
    manifest = _json.loads((tmp_path / "lr" / "manifest.json").read_text())
    assert sorted(manifest["images"]) == ["a.png", "c.png"] and "b.png" in manifest["failed"][0]
    assert "1 file(s) failed" in capsys.readouterr().err


def test_export_and_profiling_leave_the_callers_model_alone(tmp_path):
    import torch

    pytest.importorskip("onnx")
    from kdsr.export.onnx import export_onnx
    from kdsr.profiling import measure_latency

    model = tiny_model().train().to(torch.float64)
    export_onnx(model, tmp_path / "m.onnx")
    measure_latency(model, 8, 8, torch.device("cpu"), torch.bfloat16, runs=1, warmup=0)
    assert model.training and next(model.parameters()).dtype == torch.float64


def test_recursive_run_mirrors_the_tree_and_never_reads_its_own_outputs(tmp_path, model_file, capsys):
    from kdsr.cli import main
    from kdsr.image_io import write_image
    from tests.conftest import synthetic_image

    src = tmp_path / "in"
    for rel in ("a.png", "sub/b.png", "sub/deeper/c.jpg", ".hidden/d.png", "sub/.e.png"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        write_image(src / rel, synthetic_image(6, 6))
    (src / "sub" / "readme.txt").write_text("x")
    out = src / "results"  # inside the input tree
    argv = ["upscale", "-i", str(src), "-o", str(out), "-n", model_file, "-r", "-q"]
    assert main(argv) == 0
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["a_out.png", "sub/b_out.png", "sub/deeper/c_out.jpg"]
    assert "1 skipped" in capsys.readouterr().err  # readme.txt
    assert main([*argv, "--skip-existing"]) == 0  # a second run: outputs are not inputs, existing ones are kept
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == written
    assert main(["upscale", "-i", str(src), "-o", str(tmp_path / "flat"), "-n", model_file, "-q"]) == 0
    assert sorted(p.name for p in (tmp_path / "flat").iterdir()) == ["a_out.png"]  # without -r: the top folder only
    capsys.readouterr()
    into_sub = ["upscale", "-i", str(src), "-o", str(src / "sub"), "-n", model_file, "-r", "-v", "--overwrite"]
    assert main(into_sub) == 0  # the inputs inside the output folder are said to be skipped, not dropped silently
    err = capsys.readouterr().err
    assert f"{src / 'sub' / 'b.png'}: inside the output folder" in err


def test_a_file_in_a_newer_format_is_refused(tmp_path, model_file):
    from safetensors import safe_open
    from safetensors.torch import save_file

    from kdsr.checkpoint import load_model
    from kdsr.errors import CheckpointError

    with safe_open(model_file, framework="pt") as f:
        metadata = {**f.metadata(), "kdsr_format": "2"}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    save_file(tensors, str(tmp_path / "new.safetensors"), metadata=metadata)
    with pytest.raises(CheckpointError, match="format '2'.*upgrade kdsr"):
        load_model(tmp_path / "new.safetensors")


def test_atomic_folder_appears_whole_or_not_at_all(tmp_path):
    from kdsr.atomic import atomic_folder

    target = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_folder(target) as building:
        (building / "a").write_text("half")
        raise RuntimeError("interrupted")
    assert not target.exists() and list(tmp_path.iterdir()) == []  # nothing left, not even the temp folder
    target.mkdir()
    (target / "old").write_text("old")
    with atomic_folder(target) as building:
        (building / "new").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new"] and len(list(tmp_path.iterdir())) == 1
    with pytest.raises(OSError), atomic_folder(target, replace=False) as building:  # a full folder is never replaced
        (building / "other").write_text("other")
    assert [p.name for p in target.iterdir()] == ["new"] and len(list(tmp_path.iterdir())) == 1


def test_pytorch_zip_bombs_are_refused_before_torch_load(tmp_path, monkeypatch):
    import zipfile

    import kdsr.checkpoint as checkpoint
    from kdsr.errors import CheckpointError

    state = tiny_model().state_dict()
    torch.save(state, tmp_path / "plain.pt")
    with zipfile.ZipFile(tmp_path / "plain.pt") as source, zipfile.ZipFile(tmp_path / "bomb.pt", "w") as bomb:
        for entry in source.infolist():
            bomb.writestr(entry, source.read(entry.filename))
        bomb.writestr("plain/data/999", bytes(4 * 2**20), compress_type=zipfile.ZIP_DEFLATED)

    def no_loading(*args, **kwargs):
        raise AssertionError("torch.load reached")

    monkeypatch.setattr(checkpoint.torch, "load", no_loading)
    with pytest.raises(CheckpointError, match="compressed tensor data"):
        checkpoint.read_checkpoint(tmp_path / "bomb.pt")
    import kdsr.model_check

    monkeypatch.setattr(kdsr.model_check, "MAX_CHECKPOINT_BYTES", 1000)
    with pytest.raises(CheckpointError, match="more than any KDSR network"):
        checkpoint.read_checkpoint(tmp_path / "plain.pt")


def test_a_folder_run_without_r_names_the_sub_folders_it_leaves_out(tmp_path, model_file, capsys):
    d = tmp_path / "d"
    write_image(d / "a.png", synthetic_image(4, 4))
    write_image(d / "sub" / "b.png", synthetic_image(4, 4))
    assert _upscale("-i", str(d), "-o", str(d / "out"), "-n", model_file) == 0
    err = capsys.readouterr().err
    assert f"skipped {d / 'sub'}: a sub-folder, left out (-r takes sub-folders)" in err
    assert "1 written, 1 skipped" in err
    assert _upscale("-i", str(d / "sub"), "-o", str(tmp_path / "o2"), "-n", model_file, "-r") == 0
    empty = tmp_path / "only-subs"
    write_image(empty / "s" / "c.png", synthetic_image(4, 4))
    assert _upscale("-i", str(empty), "-o", str(tmp_path / "o3"), "-n", model_file) == 1
    assert "folder has no files (only sub-folders: -r takes them)" in capsys.readouterr().err
