"""One GPU lease, one command: train a larger isotropic model (teacher, then student) inside a time budget.

The `device` tool lends a GPU to some sessions for 15 minutes in all, one command of at most 10 minutes, and
../shared does not travel. So: copy the data into the git-ignored device_payload/ here, then run this script
there as a single command that measures its own speed, sizes both stages to the budget and writes everything
under $OUT (weights as float16, which load as float32):

    python scripts/gpu_lease.py prepare                    # here: T91, BSD200, Set5, Set14 -> device_payload/data
    # device run: carry=["device_payload"], timeout_s=600
    PYTHONPATH=src python3 scripts/gpu_lease.py run --budget 480 --out "$OUT"

Steps: a 40-step probe of the teacher (speed), the teacher and the student (G from the teacher, KL on D') each for
the share of the budget the probe allows, then `kdsr benchmark`'s Gaussian8 protocol on Set5 and Set14 for both.
A CPU smoke run of the whole path: ``run --budget 60 --preset kdsr-s --batch 2 --patch 16 --eval Set5``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAYLOAD = REPO / "device_payload" / "data"
TRAIN_SETS = ("T91", "BSD200")
EVAL_SETS = ("Set5", "Set14")
PROBE_STEPS = 40
# Shares of the budget: teacher, student; the rest pays for start-up, the probe and the benchmark.
TEACHER_SHARE, STUDENT_SHARE = 0.38, 0.42


def prepare(shared: Path) -> None:
    """Copy the training and evaluation sets next to the repo, where a device run can carry them."""
    for name in TRAIN_SETS + EVAL_SETS:
        source = shared / name
        if not source.is_dir():
            raise SystemExit(f"{source}: not found (pass --shared DIR)")
        shutil.copytree(source, PAYLOAD / name, dirs_exist_ok=True)
    size = sum(f.stat().st_size for f in PAYLOAD.rglob("*") if f.is_file())
    print(f"{PAYLOAD.relative_to(REPO)}: {size / 2**20:.1f} MiB (carry limit 64 MiB)")


def _config(stage: str, args: argparse.Namespace, steps: int, **distill: str):
    from kdsr.train.config import load_config

    overrides = [
        f"stage={stage}",
        f"model.preset={args.preset}",
        f"data.train=[{', '.join(str(args.payload / n) for n in TRAIN_SETS)}]",
        f"data.batch_size={args.batch}",
        f"data.patch_size={args.patch}",
        f"data.workers={args.workers}",
        "degradation.classic.mode=iso",
        "degradation.classic.noise_max=0",
        f"precision={args.precision}",
        f"optim.steps={steps}",
        f"optim.lr={args.lr}",
        f"optim.lr_decay_steps={max(steps // 3, 1)}",
        f"log_every={PROBE_STEPS // 2}",
        f"checkpoint_every={max(steps // 4, 1)}",
        f"seed={args.seed}",
    ]
    overrides += [f"distill.{key}={value}" for key, value in distill.items()]
    return load_config(None, overrides)


def _timed_train(config, run_dir: Path) -> float:
    from kdsr.train import train

    start = time.perf_counter()
    train(config, run_dir)
    return time.perf_counter() - start


def run(args: argparse.Namespace) -> None:
    import torch

    from kdsr.checkpoint import load_model, save_model
    from kdsr.cli import main as kdsr_main
    from kdsr.train.runlog import RunLog

    began = time.perf_counter()
    out = Path(args.out)
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", "args": vars(args)}

    def save_report() -> None:
        (out / "lease.json").write_text(json.dumps(report, indent=2, default=str) + "\n")

    # Probe: the first steps pay for start-up and kernel selection, so time the second half from the log.
    _timed_train(_config("teacher", args, PROBE_STEPS), work / "probe")
    logged = RunLog(work / "probe").records()
    first, last = logged[0], logged[-1]
    seconds_per_step = (last["elapsed_s"] - first["elapsed_s"]) / (last["step"] - first["step"])
    remaining = args.budget - (time.perf_counter() - began)
    teacher_steps = max(int(remaining * TEACHER_SHARE / seconds_per_step), 1)
    # A student step also runs the frozen teacher encoder: about 10% dearer.
    student_steps = max(int(remaining * STUDENT_SHARE / (1.1 * seconds_per_step)), 1)
    report["probe"] = {
        "seconds_per_step": seconds_per_step,
        "teacher_steps": teacher_steps,
        "student_steps": student_steps,
    }
    save_report()
    print(f"probe: {1 / seconds_per_step:.1f} steps/s -> teacher {teacher_steps}, student {student_steps} steps")

    teacher_dir, student_dir = work / "teacher", work / "student"
    report["teacher_s"] = _timed_train(_config("teacher", args, teacher_steps), teacher_dir)
    save_report()
    teacher_file = str(teacher_dir / "last.safetensors")
    report["student_s"] = _timed_train(_config("student", args, student_steps, teacher=teacher_file), student_dir)
    save_report()

    for role, run_dir in (("teacher", teacher_dir), ("student", student_dir)):
        weights, results = run_dir / "last.safetensors", run_dir / "benchmark.json"
        bench = ["benchmark", "-n", str(weights), "--protocol", "gaussian8", "--json", str(results), "-q"]
        if kdsr_main([*bench, "--data", *(str(args.payload / n) for n in args.eval)]) != 0:
            raise SystemExit(f"kdsr benchmark failed on the {role}")
        measured = json.loads(results.read_text())["results"]
        report[f"{role}_results"] = {name: {k: r[k] for k in ("psnr", "ssim")} for name, r in measured.items()}
        save_report()
        save_model(load_model(weights).half(), out / f"lease-{role}.safetensors", metadata={"source": str(weights)})
        shutil.copy(run_dir / "log.jsonl", out / f"lease-{role}.log.jsonl")
    report["total_s"] = time.perf_counter() - began
    save_report()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="copy the data sets into device_payload/data")
    p.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    r = sub.add_parser("run", help="probe, teacher, student, benchmark (on the device)")
    r.add_argument("--payload", type=Path, default=PAYLOAD, help="folder holding the data sets")
    r.add_argument("--budget", type=float, default=480, help="seconds for the whole run")
    r.add_argument("--out", default="lease-out", help="folder for the results ($OUT on the device)")
    r.add_argument("--work", default="/tmp/kdsr-lease", help="folder for the run directories")
    r.add_argument("--preset", default="kdsr-m")
    r.add_argument("--batch", type=int, default=32)
    r.add_argument("--patch", type=int, default=48, help="LR patch size")
    r.add_argument("--workers", type=int, default=6)
    r.add_argument("--lr", type=float, default=2e-4)
    r.add_argument("--precision", default="bf16")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--eval", nargs="+", default=list(EVAL_SETS), choices=EVAL_SETS, help="benchmark sets")
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.shared)
    else:
        if not args.payload.is_dir():
            raise SystemExit(f"{args.payload}: missing; run `scripts/gpu_lease.py prepare` first, carry device_payload")
        sys.path.insert(0, str(REPO / "src"))
        run(args)


if __name__ == "__main__":
    main()
