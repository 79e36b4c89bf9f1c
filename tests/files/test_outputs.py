"""The writing rule of every command that writes (kdsr.outputs): an output is never an input, an existing file is
replaced only with --overwrite, and a refusal is one line with a non-zero exit that leaves every file as it was."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from kdsr.checkpoint import save_model
from kdsr.cli import main
from kdsr.image_io import write_image
from kdsr.outputs import check_output
from tests.conftest import synthetic_image, tiny_model


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "tiny.safetensors"
    save_model(tiny_model(), path)
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _refused(argv: list[str], capsys, unchanged: list[Path], message: str) -> None:
    before = {p: _digest(p) for p in unchanged}
    assert main(argv) != 0
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert {p: _digest(p) for p in unchanged} == before


def test_check_output_refuses_inputs_links_and_existing_files(tmp_path):
    source = tmp_path / "a.png"
    source.write_bytes(b"x")
    with pytest.raises(Exception, match="is the input"):
        check_output(tmp_path / "." / "a.png", [source], overwrite=True)
    os.link(source, tmp_path / "hard.png")
    with pytest.raises(Exception, match="is the input"):
        check_output(tmp_path / "hard.png", [source], overwrite=True)
    (tmp_path / "sym.png").symlink_to(source)
    with pytest.raises(Exception, match="is the input"):
        check_output(tmp_path / "sym.png", [source], overwrite=True)
    with pytest.raises(Exception, match="would mix"):
        check_output(tmp_path, [source], overwrite=True, folder=True)
    with pytest.raises(Exception, match="use --overwrite"):
        check_output(tmp_path / "hard.png", [], overwrite=False)
    assert check_output(tmp_path / "new.png", [source]) == tmp_path / "new.png"


def test_export_never_replaces_its_model_or_an_existing_file(tmp_path, model_file, capsys):
    pytest.importorskip("onnx")
    _refused(["export", "-n", str(model_file), "-o", str(model_file)], capsys, [model_file], "is the input")
    other = tmp_path / "old.onnx"
    other.write_bytes(b"keep me")
    _refused(["export", "-n", str(model_file), "-o", str(other)], capsys, [other], "use --overwrite")
    assert main(["export", "-n", str(model_file), "-o", str(other), "--overwrite"]) == 0
    assert other.read_bytes() != b"keep me"


def test_convert_never_rewrites_its_input_or_an_unrelated_file(tmp_path, model_file, capsys):
    _refused(["convert", str(model_file), str(model_file)], capsys, [model_file], "is the input")
    other = tmp_path / "other.safetensors"
    other.write_bytes(b"unrelated")
    _refused(["convert", str(model_file), str(other)], capsys, [other], "use --overwrite")
    assert main(["convert", str(model_file), str(other), "--overwrite"]) == 0


def test_degrade_never_writes_into_its_input_or_over_an_earlier_set(tmp_path, capsys):
    hr = tmp_path / "hr"
    write_image(hr / "a.png", synthetic_image(16, 16))
    photo = hr / "a.png"
    base = ["degrade", "-i", str(hr), "--blur", "iso", "--sigma", "1"]
    _refused([*base, "-o", str(hr)], capsys, [photo], "is the input")
    _refused([*base, "-o", str(hr / "sub")], capsys, [photo], "would mix")
    assert main([*base, "-o", str(tmp_path / "set"), "--paired"]) == 0
    written = [tmp_path / "set" / "LR" / "a.png", tmp_path / "set" / "manifest.json"]
    _refused([*base, "-o", str(tmp_path / "set"), "--paired", "--noise", "5"], capsys, written, "use --overwrite")
    assert main([*base, "-o", str(tmp_path / "set"), "--paired", "--overwrite"]) == 0


def test_json_and_figure_outputs_are_not_replaced(tmp_path, model_file, capsys):
    hr = tmp_path / "hr"
    for i in range(2):
        write_image(hr / f"{i}.png", synthetic_image(16, 16, seed=i))
    report = tmp_path / "report.json"
    report.write_text("{}")
    bench = ["benchmark", "-n", str(model_file), "--data", str(hr), "--protocol", "gaussian8", "--json", str(report)]
    _refused(bench, capsys, [report], "use --overwrite")
    idr = ["idr", "-n", str(model_file), "--data", str(hr), "--sigmas", "1", "2", "--json", str(report)]
    _refused(idr, capsys, [report], "use --overwrite")
    estimate = ["estimate", "--fit", str(hr), "-n", str(model_file), "-o", str(model_file)]
    _refused(estimate, capsys, [model_file], "is the input")


def test_one_writer_per_run_folder_and_messages_that_work(tmp_path):
    import subprocess
    import sys

    from kdsr.errors import KDSRError
    from kdsr.train.runstate import LOCK_FILE, prepare_run_dir, read_state, run_lock

    run = tmp_path / "run"
    with run_lock(run):
        with pytest.raises(KDSRError, match=f"another kdsr train \\(pid {os.getpid()}\\)"):
            with run_lock(run):
                pass
    assert not (run / LOCK_FILE).exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (run / LOCK_FILE).write_text(dead.stdout.strip())  # a killed run's lock: taken over
    with run_lock(run):
        assert (run / LOCK_FILE).read_text() == str(os.getpid())
    (run / "config.json").write_text("{}")  # killed before its first checkpoint
    with pytest.raises(KDSRError) as refused:
        prepare_run_dir(run, resume=False, overwrite=False)
    assert "--resume" not in str(refused.value) and "--overwrite" in str(refused.value)
    with pytest.raises(KDSRError, match="start afresh with --overwrite"):
        read_state(run / "state.pt", __import__("torch").device("cpu"))
