"""The trials of issue 36 that a fresh clone failed: hostile or damaged files refused in one line before torch loads,
EXIF wherever a PNG keeps it, a damaged graph cache rebuilt, one-line errors for a single bad input."""

from __future__ import annotations

import io
import json
import pickle
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from kdsr.checkpoint import save_model
from kdsr.cli import main
from kdsr.image_io import read_image, write_image
from tests.conftest import synthetic_image, tiny_model


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, ("echo owned",))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


def _hostile_files(folder: Path) -> dict[str, Path]:
    """One file per way a model file was seen to fail (issue 36's sweep)."""
    files = {}
    rng = np.random.default_rng(0)
    for suffix in (".pth", ".pt", ".safetensors"):
        files[f"random{suffix}"] = folder / f"random{suffix}"
        files[f"random{suffix}"].write_bytes(rng.bytes(4096))
    buffer = io.BytesIO()
    torch.save({"G.head.0.weight": torch.zeros(2)}, buffer)
    with zipfile.ZipFile(buffer) as plain, zipfile.ZipFile(folder / "bomb.pt", "w") as bomb:
        for entry in plain.infolist():
            bomb.writestr(entry, plain.read(entry.filename))
        bomb.writestr("archive/data/9", bytes(64 * 2**20), compress_type=zipfile.ZIP_DEFLATED)
    files["bomb.pt"] = folder / "bomb.pt"
    with zipfile.ZipFile(folder / "code.pt", "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"x": _Payload()}, protocol=2))
        archive.writestr("archive/version", "3\n")
    files["code.pt"] = folder / "code.pt"
    legacy = folder / "code-legacy.pth"
    legacy.write_bytes(pickle.dumps({"x": _Payload()}, protocol=4))
    files["code-legacy.pth"] = legacy
    good = folder / "good.safetensors"
    save_model(tiny_model(), good)
    data = bytearray(good.read_bytes())
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    name = next(k for k in header if k != "__metadata__")
    header[name]["data_offsets"][1] += 10**9  # a tensor reaching far beyond the file
    text = json.dumps(header).encode()
    (folder / "tampered.safetensors").write_bytes(len(text).to_bytes(8, "little") + text + data[8 + length :])
    files["tampered.safetensors"] = folder / "tampered.safetensors"
    (folder / "huge-header.safetensors").write_bytes((2**40).to_bytes(8, "little") + b"{}")
    files["huge-header.safetensors"] = folder / "huge-header.safetensors"
    return files


def test_hostile_model_files_are_refused_in_one_line_before_torch_loads(tmp_path):
    files = _hostile_files(tmp_path)
    write_image(tmp_path / "in.png", synthetic_image(8, 8))
    commands = {
        "upscale": lambda model: [
            "upscale",
            "-i",
            str(tmp_path / "in.png"),
            "-o",
            str(tmp_path / "o.png"),
            "-n",
            model,
        ],
        "convert": lambda model: ["convert", model, str(tmp_path / "c.safetensors")],
        "export": lambda model: ["export", "-n", model, "-o", str(tmp_path / "e.onnx")],
        "estimate": lambda model: ["estimate", "-n", model, "-i", str(tmp_path / "in.png")],
    }
    runs = {f"{command} {name}": make(str(path)) for name, path in files.items() for command, make in commands.items()}
    script = (
        "import contextlib, io, json, sys\n"
        "from kdsr.cli import main\n"
        "results = {}\n"
        "for key, argv in json.loads(sys.argv[1]).items():\n"
        "    err = io.StringIO()\n"
        "    with contextlib.redirect_stderr(err):\n"
        "        rc = main(argv)\n"
        "    results[key] = [rc, err.getvalue(), 'torch' in sys.modules]\n"
        "print(json.dumps(results))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, json.dumps(runs)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for key, (rc, err, torch_loaded) in json.loads(done.stdout).items():
        assert rc == 1 and len(err.strip().splitlines()) == 1 and err.startswith("kdsr: error:"), (key, err)
        assert not torch_loaded, f"{key}: torch was imported before the file was refused"
        assert "owned" not in err and "no degradation estimator" not in err, (key, err)
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "c.safetensors").exists()


def test_estimate_refuses_an_oversized_image_before_the_model_loads(tmp_path):
    ok, encoded = cv2.imencode(".png", synthetic_image(8, 8))
    data = bytearray(encoded.tobytes())
    ihdr = bytearray(data[16:29])
    ihdr[0:4], ihdr[4:8] = (30000).to_bytes(4, "big"), (30000).to_bytes(4, "big")
    data[8:33] = _png_chunk(b"IHDR", bytes(ihdr))
    (tmp_path / "bomb.png").write_bytes(bytes(data))
    script = (
        "import sys\nfrom kdsr.cli import main\n"
        f"rc = main(['estimate', '-i', {str(tmp_path / 'bomb.png')!r}])\n"
        "print(rc, 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["1", "False"]
    assert "over the limit" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_exif_after_the_pixels_of_a_png_turns_the_image(tmp_path):
    image = synthetic_image(6, 10)
    ok, encoded = cv2.imencode(".png", image[:, :, ::-1])
    data = encoded.tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6  # turn 90 degrees clockwise to view
    chunk = _png_chunk(b"eXIf", exif.tobytes().removeprefix(b"Exif\x00\x00"))
    end = data.rindex(b"IEND") - 4
    (tmp_path / "late.png").write_bytes(data[:end] + chunk + data[end:])
    assert read_image(tmp_path / "late.png").shape == (10, 6, 3)  # turned as a viewer shows it
    model = tmp_path / "tiny.safetensors"
    save_model(tiny_model(), model)
    out = tmp_path / "late_out.png"
    assert main(["upscale", "-i", str(tmp_path / "late.png"), "-o", str(out), "-n", str(model)]) == 0
    assert read_image(out).shape == (40, 24, 3)
    with Image.open(out) as written:
        assert written.getexif().get(0x0112, 1) == 1  # stored turned, so no viewer turns it again


def test_a_truncated_jpeg_as_the_only_input_is_one_line(tmp_path, capsys):
    ok, encoded = cv2.imencode(".jpg", synthetic_image(64, 64))
    (tmp_path / "cut.jpg").write_bytes(encoded.tobytes()[: len(encoded) // 2])
    model = tmp_path / "tiny.safetensors"
    save_model(tiny_model(), model)
    assert main(["upscale", "-i", str(tmp_path / "cut.jpg"), "-o", str(tmp_path / "o.png"), "-n", str(model)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "cut.jpg" in err and "Traceback" not in err


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_a_damaged_graph_cache_is_rebuilt_with_a_notice(tmp_path, capsys, monkeypatch, suffix):
    """Our model files' graphs are written in milliseconds, silently; another checkpoint's torch export is announced
    on a terminal. A damaged cache is rebuilt either way, said in one line."""
    pytest.importorskip("openvino")
    pytest.importorskip("onnx")
    monkeypatch.setenv("KDSR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # as on a terminal, where the first build is announced
    model = tmp_path / f"tiny{suffix}"
    if suffix == ".pth":
        torch.save(tiny_model().state_dict(), model)
    else:
        save_model(tiny_model(), model)
    write_image(tmp_path / "in.png", synthetic_image(12, 12))
    run = ["upscale", "-i", str(tmp_path / "in.png"), "-o", str(tmp_path / "o.png"), "-n", str(model), "--overwrite",
           "--backend", "openvino"]  # fmt: skip
    assert main(run) == 0
    first = capsys.readouterr().err
    announced = f"preparing tiny{suffix} for its runtime (once;" in first and "prepared in" in first
    assert announced == (suffix == ".pth"), first
    assert main(run) == 0 and "preparing" not in capsys.readouterr().err
    reference = read_image(tmp_path / "o.png")
    (generator,) = (tmp_path / "cache").rglob("generator.onnx")
    generator.write_bytes(generator.read_bytes()[:200])  # truncated
    assert main(run) == 0
    err = capsys.readouterr().err
    assert "a damaged cache, rebuilt" in err and "Traceback" not in err
    np.testing.assert_array_equal(read_image(tmp_path / "o.png"), reference)
    assert main(run) == 0 and "damaged" not in capsys.readouterr().err


def test_an_upscale_that_cannot_fit_memory_is_refused_up_front_with_the_size(tmp_path, monkeypatch, capsys):
    import kdsr.heap

    monkeypatch.setattr(kdsr.heap, "available_memory", lambda: 300 * 2**20)
    model = tmp_path / "tiny.safetensors"
    save_model(tiny_model(), model)
    write_image(tmp_path / "in.png", synthetic_image(40, 40))
    assert main(["upscale", "-i", str(tmp_path / "in.png"), "-o", str(tmp_path / "o.png"), "-n", str(model)]) == 1
    err = capsys.readouterr().err
    assert "needs about 0.6 GB of memory; 0.3 GB is available" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.png").exists()
