"""Training never destroys a run (issue 13): fresh runs refuse a used folder, --resume checks the config, interrupts
save a checkpoint, logs survive crashes, damaged states are one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import pytest
import torch

from kdsr.cli import main
from kdsr.errors import KDSRError
from kdsr.train import load_config, train
from kdsr.train.runlog import RunLog
from kdsr.train.runstate import STATE_FILE, read_state
from tests.train.test_train import TINY, _config


def _run(data_dir, run_dir, *overrides, **kwargs):
    return train(_config(data_dir, "optim.steps=2", *overrides), run_dir, **kwargs)


def test_fresh_run_into_a_used_folder_is_refused(data_dir, tmp_path):
    run = tmp_path / "run"
    _run(data_dir, run)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    with pytest.raises(KDSRError, match="not empty.*--resume.*--overwrite"):
        _run(data_dir, run)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    (run / "notes.txt").write_text("mine")
    _run(data_dir, run, "seed=3", overwrite=True)
    assert (run / "notes.txt").read_text() == "mine"  # only the run's own files are replaced
    assert [r["step"] for r in RunLog(run).records() if "loss" in r] == [1, 2]


@pytest.mark.parametrize(
    "override, key",
    [
        ("optim.lr=5e-4", "optim.lr"),
        ("seed=9", "seed"),
        ("data.batch_size=2", "data.batch_size"),
        ("degradation.kind=realworld", "degradation.kind"),
        ("model.n_feats=16", "model.n_feats"),
    ],
)
def test_resume_refuses_a_different_config(data_dir, tmp_path, override, key):
    run = tmp_path / "run"
    _run(data_dir, run)
    with pytest.raises(KDSRError, match=key.replace(".", r"\.")):
        _run(data_dir, run, "optim.steps=4", override, resume=True)


def test_resume_allows_more_steps_and_other_logging_but_not_fewer_steps(data_dir, tmp_path):
    run = tmp_path / "run"
    _run(data_dir, run, "optim.steps=3")
    _run(data_dir, run, "optim.steps=4", "log_every=2", "checkpoint_every=5", resume=True)
    with pytest.raises(KDSRError, match="below the step"):
        _run(data_dir, run, "optim.steps=2", resume=True)
    steps = [r["step"] for r in RunLog(run).records() if "loss" in r]
    assert steps == [1, 2, 3, 4]


def test_resume_reads_the_runs_own_config_when_none_is_named(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    tiny = [f"data.train=[{data_dir}]", *TINY]
    assert main(["train", "--resume", str(run), "optim.steps=4"]) == 1  # nothing there yet: one line
    assert "config.json: missing" in capsys.readouterr().err
    run.mkdir()
    train(load_config(None, [*tiny, "optim.steps=2"]), run)
    assert main(["train", "--resume", str(run), "optim.steps=4", "log_every=2"]) == 0  # no YAML, no repeated overrides
    assert [r["step"] for r in RunLog(run).records() if "loss" in r] == [1, 2, 4]
    assert main(["train", "--resume", str(run), "optim.steps=5", "seed=3"]) == 1  # still checked against the run's
    assert "seed" in capsys.readouterr().err
    assert main(["train", "optim.steps=4"]) == 1 and "name a YAML config" in capsys.readouterr().err


def test_resume_cuts_records_after_the_checkpoint(data_dir, tmp_path):
    run = tmp_path / "run"
    train(_config(data_dir, "optim.steps=6", "checkpoint_every=2"), run, stop_after=3)  # checkpoint at 2, log to 3
    assert [r["step"] for r in RunLog(run).records()] == [1, 2, 3]
    train(_config(data_dir, "optim.steps=6", "checkpoint_every=2"), run, resume=True)
    assert [r["step"] for r in RunLog(run).records()] == [1, 2, 3, 4, 5, 6]


def test_half_written_log_line_does_not_break_plot_or_resume(data_dir, tmp_path):
    run = tmp_path / "run"
    _run(data_dir, run, "optim.steps=2")
    with open(run / "log.jsonl", "a") as f:
        f.write('{"step": 3, "lo')  # a crash in the middle of a write
    with pytest.warns(UserWarning, match="unreadable"):
        assert [r["step"] for r in RunLog(run).records()] == [1, 2]
    _run(data_dir, run, "optim.steps=3", resume=True)
    assert [r["step"] for r in RunLog(run).records()] == [1, 2, 3]  # the half line is gone
    RunLog(run).append({"step": 4})
    assert RunLog(run).records()[-1] == {"step": 4}


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage", "bitflip"])
def test_damaged_state_is_a_one_line_error(data_dir, tmp_path, damage, capsys):
    run = tmp_path / "run"
    _run(data_dir, run)
    path = run / STATE_FILE
    data = path.read_bytes()
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(os.urandom(1000))
    else:
        flipped = bytearray(data)
        flipped[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(flipped))
    with pytest.raises(KDSRError, match=STATE_FILE) as info:
        _run(data_dir, run, "optim.steps=4", resume=True)
    assert "\n" not in str(info.value)
    if damage == "bitflip":
        assert "checksum" in str(info.value)


def test_stale_temporaries_are_removed_on_start(data_dir, tmp_path):
    run = tmp_path / "run"
    _run(data_dir, run)
    (run / ".state.pt.x1y2.tmp").write_bytes(b"half")
    (run / ".last.safetensors.abc.tmp").write_bytes(b"half")
    _run(data_dir, run, "optim.steps=3", resume=True)
    assert not list(run.glob(".*.tmp"))


def test_sigterm_saves_a_resumable_checkpoint(data_dir, tmp_path):
    """SIGTERM during training saves a checkpoint that --resume continues. The run is a fresh interpreter: a signal
    sent to a pytest process that still holds another test's runtime threads (the web page's OpenVINO upscalers)
    crashed it."""
    run = tmp_path / "run"
    overrides = [f"data.train=[{data_dir}]", *TINY, "optim.steps=100000", "checkpoint_every=100000"]
    code = (
        "import sys; from kdsr.train import load_config, train; from kdsr.train.loop import TrainingInterrupted\n"
        "try:\n    train(load_config(None, sys.argv[2:]), sys.argv[1])\n"
        "except TrainingInterrupted as e:\n    print(e); sys.exit(3)\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", code, str(run), *overrides]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    for _ in range(600):  # until the first step is logged
        if (run / "log.jsonl").is_file() and (run / "log.jsonl").stat().st_size:
            break
        threading.Event().wait(0.1)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 3 and "--resume" in out, err
    state = read_state(run / STATE_FILE, torch.device("cpu"))
    assert state["step"] >= 1 and [r["step"] for r in RunLog(run).records() if "loss" in r][-1] == state["step"]


def test_cli_overrides_after_the_options_and_exclusive_flags(data_dir, tmp_path, capsys):
    cfg = tmp_path / "t.yaml"
    cfg.write_text(f"data: {{train: [{data_dir}]}}\noptim: {{steps: 1}}\n")
    assert main(["train", str(cfg), "-o", str(tmp_path / "run"), *TINY]) == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model"]["n_feats"] == 8
    assert main(["train", str(cfg), "-o", str(tmp_path / "run"), *TINY]) == 1
    assert "not empty" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["upscale", "-i", "x", "stray=1"])


@pytest.mark.slow
def test_cli_interrupt_exits_130_with_a_checkpoint(data_dir, tmp_path):
    cfg = tmp_path / "t.yaml"
    cfg.write_text(f"data: {{train: [{data_dir}]}}\noptim: {{steps: 100000}}\ncheckpoint_every: 100000\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kdsr", "train", str(cfg), "-o", str(tmp_path / "run"), *TINY],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    log = tmp_path / "run" / "log.jsonl"
    for _ in range(600):
        if log.is_file() and log.stat().st_size:
            break
        threading.Event().wait(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "checkpoint saved" in err and "Traceback" not in err
    assert (tmp_path / "run" / STATE_FILE).is_file()
    config = load_config(cfg, TINY)
    train(config, tmp_path / "run", resume=True, stop_after=1)


def test_full_disk_during_a_checkpoint_is_one_line_and_keeps_the_last_one(data_dir, tmp_path, capsys, monkeypatch):
    import kdsr.train.runstate as runstate
    from kdsr.checkpoint import read_metadata

    cfg = tmp_path / "t.yaml"
    cfg.write_text(f"data: {{train: [{data_dir}]}}\noptim: {{steps: 2}}\ncheckpoint_every: 1\n")
    writes = []

    def full_after_the_first(path, state, atomic=True):
        if writes:
            raise OSError(28, "No space left on device")
        writes.append(path)
        return write(path, state, atomic)

    write = runstate.write_state
    monkeypatch.setattr(runstate, "write_state", full_after_the_first)
    assert main(["train", str(cfg), "-o", str(tmp_path / "run"), *TINY, "checkpoint_every=1"]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "--resume" in err and "Traceback" not in err
    run = tmp_path / "run"  # the weights of step 2 were written, but not renamed: the pair is still step 1's
    assert read_metadata(run / "last.safetensors")["training_step"] == "1"
    assert runstate.read_state(run / runstate.STATE_FILE, torch.device("cpu"))["step"] == 1
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    writes.append("full from the start")
    assert main(["train", str(cfg), "-o", str(tmp_path / "new"), *TINY, "checkpoint_every=1"]) == 1
    err = capsys.readouterr().err
    assert "no checkpoint was completed" in err and "--overwrite" in err and "--resume" not in err


def test_resume_of_a_run_from_before_a_config_key_existed(data_dir, tmp_path):
    run = tmp_path / "run"
    _run(data_dir, run)
    saved = json.loads((run / "config.json").read_text())
    del saved["degradation"]["group"]  # written by a kdsr that had no such key: the run used its default
    (run / "config.json").write_text(json.dumps(saved))
    _run(data_dir, run, "optim.steps=3", resume=True)
    with pytest.raises(KDSRError, match=r"degradation\.group \(1 -> 2\)"):
        _run(data_dir, run, "optim.steps=4", "degradation.group=2", resume=True)
