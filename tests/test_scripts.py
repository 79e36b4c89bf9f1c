"""The repo's scripts run end to end on small inputs (the GPU lease recipe on the CPU)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kdsr import load_model
from kdsr.image_io import write_image
from tests.conftest import REPO, synthetic_image


@pytest.mark.slow
def test_gpu_lease_trains_both_stages_within_its_budget_and_reports(tmp_path):
    payload = tmp_path / "data"
    for i, name in enumerate(("T91", "BSD200", "Set5")):
        (payload / name).mkdir(parents=True)
        write_image(payload / name / f"{i}.png", synthetic_image(48, 40, seed=i))
    out = tmp_path / "out"
    command = [sys.executable, str(REPO / "scripts" / "gpu_lease.py"), "run", "--payload", str(payload)]
    command += ["--budget", "8", "--preset", "kdsr-s", "--batch", "2", "--patch", "8", "--workers", "0"]
    command += ["--eval", "Set5", "--out", str(out), "--work", str(tmp_path / "work")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]

    report = json.loads((out / "lease.json").read_text())
    assert report["probe"]["teacher_steps"] >= 1 and report["probe"]["student_steps"] >= 1
    from kdsr.evaluation import run_benchmark

    for role in ("teacher", "student"):
        trained = load_model(tmp_path / "work" / role / "last.safetensors").eval()
        teacher = role == "teacher"
        measured = run_benchmark(  # the paper's protocol on the trained weights, computed here independently
            lambda lr, hr, m=trained, t=teacher: m(lr, hr) if t else m(lr), [payload / "Set5"], "gaussian8", 4
        )["results"]["Set5"]
        assert report[f"{role}_results"]["Set5"]["psnr"] == pytest.approx(measured["psnr"], abs=1e-6)
        assert report[f"{role}_results"]["Set5"]["ssim"] == pytest.approx(measured["ssim"], abs=1e-6)
        logged = [json.loads(line) for line in (out / f"lease-{role}.log.jsonl").read_text().splitlines()]
        assert logged[-1]["step"] == report["probe"][f"{role}_steps"]
    student = load_model(out / "lease-student.safetensors")
    assert not student.config.teacher
