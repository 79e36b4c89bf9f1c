"""How fast can an encoder learn to read the degradation from LR patches? (issue: the IDR must estimate.)

Trains a KD-IDE variant (the kdsr-s encoder: C=32, R=2) plus the project's degradation head
(:class:`kdsr.train.losses.DegradationHead`, a linear read-out of the standardised D) on the head's loss alone, and
prints held-out read-out quality against steps, next to a hand-made-statistics baseline. At each evaluation the
read-out is a ridge regression (classification: logistic regression) fitted on the D of 1024 training patches, as
``kdsr estimate --fit`` reads a model's IDR: it measures what D carries, not the state of the trained head (whose
own read-out, noisier, is printed beside it as ``head_*``):

- ``sigma``: kdsr's classic degradation, isotropic Gaussian blur sigma ~ U[0.2, 4] per image, no noise; R^2 and MAE
  of the read-out sigma.
- ``everyday``: the everyday mixture (:mod:`kdsr.degradations.mixture`: clean, JPEG, blur + noise, camera,
  real-world); accuracy of the case, MAE of the noise level (where known) and of the JPEG quality (JPEG cases).

Training patches come from T91 + BSD200, held-out patches (fixed seed) from Urban100 and BSDS500-test, 48x48 LR.
The hand-made baseline: per-patch statistics of the grey LR (log energies of the gradient, the Laplacian and of the
8x8 block boundaries, their differences, the std) with least squares (sigma) or logistic regression (case).

    python benchmarks/idr_learnability.py --task sigma --variants student-official student-energy --steps 1000
    python benchmarks/idr_learnability.py --task everyday --variants student-energy --steps 2000

Minutes per variant on one CPU core (fp32; ``--bf16`` where the CPU has native bf16 units). Needs ../shared/data
and scikit-learn.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from kdsr.data.patches import HRPatches, load_rgb_folder
from kdsr.degradations import classic, mixture
from kdsr.models import create_model
from kdsr.train.losses import DegradationHead, degradation_head_loss

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
VARIANTS = ("student-official", "student-energy", "teacher-official", "teacher-energy")
SCALE, LR_PATCH = 4, 48


def degrade(task: str, hr: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(LR, labels) in :func:`kdsr.degradations.mixture.degrade_with_labels`'s format."""
    if task == "sigma":
        sampling = classic.ClassicSampling(mode="iso", sig_min=0.2, sig_max=4.0, per_image=True)
        return classic.random_degrade_with_labels(hr, sampling, SCALE, generator)
    return mixture.degrade_with_labels(hr, mixture.MixtureConfig(), SCALE, generator)


def held_out(task: str, count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fixed held-out (HR, LR, labels) patches from images no variant trains on."""
    images = load_rgb_folder([DATA / "Urban100", DATA / "BSDS500-test"])
    patches = HRPatches(images, LR_PATCH * SCALE, seed=12345)
    hr = torch.stack([patches[i] for i in range(count)])
    lr, labels = [], []
    generator = torch.Generator().manual_seed(777)
    for start in range(0, count, 32):
        out, lab = degrade(task, hr[start : start + 32], generator)
        lr.append(out)
        labels.append(lab)
    return hr, torch.cat(lr), torch.cat(labels)


def handmade_features(lr: torch.Tensor) -> np.ndarray:
    """Per-patch statistics of the grey LR that change with blur, noise and JPEG."""
    grey = lr.mean(dim=1, keepdim=True).double()
    dx, dy = grey[..., :, 1:] - grey[..., :, :-1], grey[..., 1:, :] - grey[..., :-1, :]
    lap = F.conv2d(grey, grey.new_tensor([[[[0, 1, 0], [1, -4, 1], [0, 1, 0]]]]))
    eps = 1e-8
    gradient = torch.log(dx.square().mean(dim=(1, 2, 3)) + dy.square().mean(dim=(1, 2, 3)) + eps)
    laplacian = torch.log(lap.square().mean(dim=(1, 2, 3)) + eps)
    boundary = dx[..., :, 7::8].square().mean(dim=(1, 2, 3)) + dy[..., 7::8, :].square().mean(dim=(1, 2, 3))
    blockiness = torch.log(boundary + eps) - torch.log(dx.square().mean(dim=(1, 2, 3)) * 2 + eps)
    std = torch.log(grey.std(dim=(1, 2, 3)) + eps)
    features = [gradient, laplacian, laplacian - gradient, std, blockiness, gradient - std]
    return torch.stack(features, dim=1).numpy()


def scores(task: str, labels: torch.Tensor, logits: np.ndarray | None, values: np.ndarray) -> dict[str, float]:
    """Read-out quality: sigma R^2 / MAE, or case accuracy, noise MAE, JPEG quality MAE."""
    labels = labels.numpy()
    if task == "sigma":
        truth, guess = labels[:, 1], values[:, 0]
        r2 = 1 - np.mean((guess - truth) ** 2) / np.var(truth)
        return {"r2": float(r2), "mae": float(np.mean(np.abs(guess - truth)))}
    out = {"acc": float(np.mean(logits.argmax(1) == labels[:, 0]))}
    noise_known = np.isfinite(labels[:, 2])
    out["noise_mae"] = float(np.mean(np.abs(values[noise_known, 1] - labels[noise_known, 2])))
    jpeg = np.isfinite(labels[:, 3]) & (labels[:, 3] < 100)
    out["jpeg_mae"] = float(np.mean(np.abs(values[jpeg, 2] - labels[jpeg, 3])))
    return out


def handmade_baseline(task: str, train: tuple, test: tuple) -> dict[str, float]:
    """Least squares / logistic regression on :func:`handmade_features`."""
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    (lr_train, lab_train), (lr_test, lab_test) = train, test
    x_train, x_test = handmade_features(lr_train), handmade_features(lr_test)
    lab_train_np = lab_train.numpy()
    values = np.zeros((len(x_test), 3))
    columns = ((1, 0), (2, 1), (3, 2))  # label column -> value column
    for column, slot in columns:
        known = np.isfinite(lab_train_np[:, column])
        if known.sum() > 10:
            fit = make_pipeline(StandardScaler(), LinearRegression()).fit(x_train[known], lab_train_np[known, column])
            values[:, slot] = fit.predict(x_test)
    logits = None
    if task == "everyday":
        classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        logits = classifier.fit(x_train, lab_train_np[:, 0].astype(int)).predict_proba(x_test)
    return scores(task, lab_test, logits, values)


def probe_scores(task: str, d_fit: np.ndarray, lab_fit: torch.Tensor, d_test: np.ndarray, lab_test) -> dict:
    """Held-out scores of linear read-outs fitted on the training patches' D (standardised)."""
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    lab = lab_fit.numpy()
    values = np.zeros((len(d_test), 3))
    for column, slot in ((1, 0), (2, 1), (3, 2)):
        known = np.isfinite(lab[:, column])
        if known.sum() > 10:
            ridge = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
            values[:, slot] = ridge.fit(d_fit[known], lab[known, column]).predict(d_test)
    logits = None
    if task == "everyday":
        classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        logits = classifier.fit(d_fit, lab[:, 0].astype(int)).predict_proba(d_test)
    return scores(task, lab_test, logits, values)


def train_variant(variant: str, task: str, args, train_images, test, fit) -> list[tuple[int, dict, float]]:
    """Train one encoder + head on the head loss alone; (step, held-out scores, seconds) at every evaluation."""
    role, encoder = variant.split("-")
    torch.manual_seed(args.seed)
    model = create_model("kdsr-s", teacher=role == "teacher", encoder=encoder)
    head = DegradationHead(model.config.n_feats, len(mixture.MIXTURE_CASES))
    optimizer = torch.optim.Adam(
        [{"params": model.encoder.parameters(), "lr": args.lr}, {"params": head.parameters(), "lr": args.lr * 100}]
    )
    patches = HRPatches(train_images, LR_PATCH * SCALE, seed=args.seed)
    hr_test, lr_test, lab_test = test
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16)

    def encode(lr, hr):
        lr = lr.contiguous(memory_format=torch.channels_last)
        return model.encode(lr, hr) if role == "teacher" else model.encode(lr)

    def encode_all(lr, hr) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
        ds, logits, values = [], [], []
        for start in range(0, len(lr), 64):
            d = encode(lr[start : start + 64], hr[start : start + 64]).d
            case, value = head(d)
            ds.append(d.float())
            logits.append(case.float())
            values.append(value.float())
        return torch.cat(ds).numpy(), torch.cat(logits), torch.cat(values)

    def evaluate() -> dict:
        model.eval()
        head.eval()
        with torch.no_grad(), autocast:
            d_test, logits, values = encode_all(lr_test, hr_test)
            d_fit, _, _ = encode_all(fit[1], fit[0])
        model.train()
        head.train()
        values = values * lr_test.new_tensor([3.0, 20.0, 70.0])
        values[:, 2] = 100 - values[:, 2]  # the head reads JPEG strength (100 - quality)
        own = scores(task, lab_test, logits.numpy(), values.numpy())
        probe = probe_scores(task, d_fit, fit[2], d_test, lab_test)
        return {**probe, **{f"head_{k}": v for k, v in own.items()}}

    curve, t0 = [], time.perf_counter()
    for step in range(args.variant_steps):
        hr = torch.stack([patches[step * args.batch + i] for i in range(args.batch)])
        generator = torch.Generator().manual_seed(args.seed * 100003 + step)
        with torch.no_grad():
            lr, labels = degrade(task, hr, generator)
        with autocast:
            loss = degradation_head_loss(head, encode(lr, hr).d, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if (step + 1) % args.eval_every == 0 or step + 1 == args.variant_steps:
            curve.append((step + 1, evaluate(), time.perf_counter() - t0))
            print(f"  {variant} step {step + 1}: {fmt(curve[-1][1])} ({curve[-1][2]:.0f} s)", flush=True)
    return curve


def fmt(score: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" if "mae" not in k or v < 10 else f"{k} {v:.1f}" for k, v in score.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("sigma", "everyday"), default="sigma")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--steps", type=int, nargs="+", default=[1000], help="one for all variants, or one each")
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-4, help="encoder learning rate (Adam); the head's is 100x")
    parser.add_argument("--held-out", type=int, default=512, help="held-out patches")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (fast only on CPUs with native bf16)")
    args = parser.parse_args()
    if len(args.steps) not in (1, len(args.variants)):
        raise SystemExit("--steps: give one number, or one per variant")
    if not DATA.is_dir():
        raise SystemExit(f"{DATA}: not found (this benchmark needs ../shared/data)")

    precision = "bf16" if args.bf16 else "fp32"
    print(f"task {args.task}, batch {args.batch}, LR patch {LR_PATCH}, {precision}, {torch.get_num_threads()} threads")
    train_images = load_rgb_folder([DATA / "T91", DATA / "BSD200"])
    test = held_out(args.task, args.held_out)
    fit_patches = HRPatches(train_images, LR_PATCH * SCALE, seed=99)
    fit_hr = torch.stack([fit_patches[i] for i in range(2048)])
    generator = torch.Generator().manual_seed(5)
    parts = [degrade(args.task, fit_hr[i : i + 32], generator) for i in range(0, 2048, 32)]
    fit_lr, fit_labels = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    baseline = handmade_baseline(args.task, (fit_lr, fit_labels), (test[1], test[2]))
    print(f"  hand-made statistics (2048 training patches): {fmt(baseline)}", flush=True)
    fit = (fit_hr[:1024], fit_lr[:1024], fit_labels[:1024])  # the probes' read-outs are fitted on these
    steps_of = dict(zip(args.variants, args.steps * (len(args.variants) if len(args.steps) == 1 else 1), strict=True))
    results = {}
    for variant in args.variants:
        args.variant_steps = steps_of[variant]
        results[variant] = train_variant(variant, args.task, args, train_images, test, fit)

    steps = sorted({s for curve in results.values() for s, _, _ in curve})
    key = "r2" if args.task == "sigma" else "acc"
    print(f"\nheld-out {key} by step ({len(test[1])} patches; hand-made statistics: {baseline[key]:.3f})\n")
    print("| variant | " + " | ".join(str(s) for s in steps) + " | last: all scores | s/step |")
    print("|---|" + "---|" * len(steps) + "---|---|")
    for variant, curve in results.items():
        by_step = {s: score[key] for s, score, _ in curve}
        cells = [f"{by_step[s]:.3f}" if s in by_step else "" for s in steps]
        last = curve[-1]
        print(f"| {variant} | " + " | ".join(cells) + f" | {fmt(last[1])} | {last[2] / last[0]:.2f} |")
    print("| hand-made statistics | " + " | ".join("" for _ in steps) + f" | {fmt(baseline)} | - |")
    if not math.isfinite(baseline[key]):
        raise SystemExit("baseline not finite")


if __name__ == "__main__":
    main()
