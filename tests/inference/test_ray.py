"""Batch upscaling on a local Ray cluster (kdsr upscale --ray): the same outputs as one process, resumable, a bad
image or a killed worker costs nothing else."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from kdsr.checkpoint import save_model
from kdsr.cli import main
from kdsr.image_io import read_image, write_image
from tests.conftest import synthetic_image, tiny_model

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster with 2 CPUs for this module."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def tree(tmp_path):
    """A nested folder of small images (grey, RGB, RGBA) and a tiny model file."""
    source = tmp_path / "in"
    (source / "sub").mkdir(parents=True)
    for i in range(5):
        write_image(source / f"{i}.png", synthetic_image(20 + i, 24, seed=i))
    write_image(source / "sub" / "grey.png", synthetic_image(18, 22, 1, seed=7))
    write_image(source / "sub" / "alpha.png", synthetic_image(16, 20, 4, seed=8))
    save_model(tiny_model(), tmp_path / "m.safetensors")
    return source, tmp_path / "m.safetensors"


def _outputs(folder):
    return {p.relative_to(folder): read_image(p) for p in sorted(folder.rglob("*.png"))}


def _upscale(source, model, output, *extra):
    return main(["upscale", "-i", str(source), "-o", str(output), "-r", "-n", str(model), "--backend", "torch",
                 "--precision", "fp32", "-t", "0", *extra])  # fmt: skip


def test_ray_outputs_equal_the_single_process_outputs_bit_for_bit(cluster, tree, tmp_path, capsys):
    import torch

    source, model = tree
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the actors run one thread each: the same arithmetic
    try:
        assert _upscale(source, model, tmp_path / "one") == 0
    finally:
        torch.set_num_threads(threads)
    capsys.readouterr()
    copies = set(Path(tempfile.gettempdir()).glob("kdsr-ray-*"))
    assert _upscale(source, model, tmp_path / "ray", "--ray") == 0
    printed = capsys.readouterr()
    assert "7 written, 0 skipped, 0 failed" in printed.err
    assert set(Path(tempfile.gettempdir()).glob("kdsr-ray-*")) == copies  # the workers' model copies are removed
    ours, reference = _outputs(tmp_path / "ray"), _outputs(tmp_path / "one")
    assert list(ours) == list(reference) and len(ours) == 7
    assert all(np.array_equal(ours[name], reference[name]) for name in ours)
    assert printed.out.split() == sorted(printed.out.split(), key=lambda p: printed.out.split().index(p))
    assert _upscale(source, model, tmp_path / "ray", "--ray", "--skip-existing") == 0  # a re-run: nothing to do
    assert "0 written, 7 skipped, 0 failed" in capsys.readouterr().err


def test_a_bad_image_fails_alone_and_a_killed_worker_rewrites_nothing(cluster, tree, tmp_path, capsys):
    source, model = tree
    (source / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    for i in range(5, 15):
        write_image(source / f"{i}.png", synthetic_image(40, 48, seed=i))
    output = tmp_path / "out"
    done_before_kill: dict = {}

    def kill_one_worker() -> None:
        """Once outputs start to appear, note them (and their inodes) and SIGKILL one busy worker process."""
        deadline = time.time() + 120
        while time.time() < deadline and len(list(output.rglob("*.png"))) < 3:
            time.sleep(0.05)
        done_before_kill.update({p: p.stat().st_ino for p in output.rglob("*.png")})
        pids = subprocess.run(["pgrep", "-f", "ray::UpscaleWorker"], capture_output=True, text=True).stdout.split()
        if pids:
            os.kill(int(pids[0]), signal.SIGKILL)
            done_before_kill["killed"] = int(pids[0])

    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    status = _upscale(source, model, output, "--ray")
    killer.join()
    err = capsys.readouterr().err
    assert status == 1 and "17 written, 0 skipped, 1 failed" in err and "broken.png" in err
    assert "killed" in done_before_kill  # a worker did die mid-run, and Ray restarted it
    for path, inode in done_before_kill.items():
        if path != "killed":
            assert path.stat().st_ino == inode  # written before the kill: never written again
    assert len(list(output.rglob("*.png"))) == 17  # every readable image, once
    assert not [p for p in output.rglob("*") if p.name.startswith(".")]  # no temporary left behind


def _ray_processes() -> set[int]:
    found = subprocess.run(["pgrep", "-f", "raylet|gcs_server|ray::"], capture_output=True, text=True).stdout
    return {int(pid) for pid in found.split()}


def _left_behind(before: set[int], wait: float = 15.0) -> set[int]:
    """The Ray processes that appeared since ``before`` and are still alive after up to ``wait`` seconds."""
    deadline = time.time() + wait
    while (new := _ray_processes() - before) and time.time() < deadline:
        time.sleep(0.5)
    return new


@pytest.mark.parametrize("how", ["success", "sigterm"])
def test_a_local_cluster_started_for_the_run_ends_with_it(tree, tmp_path, how):
    """``--ray local`` starts a cluster of its own: it is shut down, quietly, when the run ends or is terminated."""
    source, model = tree
    if how == "sigterm":  # enough work that the run is still going when the signal comes
        for i in range(40):
            write_image(source / "more" / f"{i}.png", synthetic_image(20, 24, seed=i))
    before = _ray_processes()
    command = [sys.executable, "-m", "kdsr", "upscale", "-i", str(source), "-o", str(tmp_path / "out"), "-r", "-n",
               str(model), "--backend", "torch", "-t", "0", "--ray", "local", "--ray-actors", "1"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if how == "sigterm":
        # after the first output: the run is under way and past ray.init, during which a SIGTERM can land inside
        # Ray's own handler where Python ignores the exit it raises (seen once under load)
        deadline = time.time() + 120
        while not any((tmp_path / "out").rglob("*.png")) and time.time() < deadline and process.poll() is None:
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=180)
    if how == "success":
        assert process.returncode == 0 and "7 written" in err and len(out.split()) == 7
        assert "ERROR" not in err and "Traceback" not in err, err
    else:
        assert process.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
    assert not _left_behind(before)
