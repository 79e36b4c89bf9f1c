"""Training throughput per stage, split into its parts (not a test).

    python benchmarks/train_speed.py [--preset kdsr-s] [--encoder energy] [--blocks 24] [--batch 16] [--patch 48]
                                     [--steps 6] [--threads 2] [--gan]

For the teacher and the student stage, and for each way of running them (fp32 NCHW; fp32 channels_last; bf16
autocast NCHW; bf16 autocast channels_last), one training step is timed in its parts: data (a batch of HR crops from
images in memory), degradation (classic, real-world, mixture), forward (the student stage includes the frozen
teacher's encoder), backward and the optimiser step. With ``--gan`` the GAN stage too (the student's L1 + feature
matching + GAN losses, then the U-Net discriminator's step, counted in "optimiser"; ``--d-features`` wide). Printed:
median milliseconds per part, samples/s of the whole step with the mixture degradation, the achieved GFLOP/s (3x the
generator's forward FLOPs, the usual fwd+bwd estimate; the GAN row's discriminator work is not counted), and the
speed-up of every way against fp32 NCHW measured in the same run. bf16 pays only on CPUs with native bf16 units
(AVX-512 bf16 / AMX): check here before choosing a config's precision. Uses T91 from ../shared/data when present,
else synthetic images.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from kdsr.data import HRPatches, StepBatchSampler
from kdsr.data.patches import load_rgb_folder
from kdsr.degradations import classic, mixture, realworld
from kdsr.models import create_model
from kdsr.models.discriminator import UNetDiscriminatorSN
from kdsr.profiling import count_flops
from kdsr.train.losses import feature_matching_loss, gan_loss, kd_loss

REPO = Path(__file__).resolve().parents[1]
WAYS = {
    "fp32 NCHW": (torch.float32, False),
    "fp32 channels_last": (torch.float32, True),
    "bf16 NCHW": (torch.bfloat16, False),
    "bf16 channels_last": (torch.bfloat16, True),
}


def _images() -> list[np.ndarray]:
    folder = REPO.parent / "shared" / "data" / "T91"
    if folder.is_dir():
        return load_rgb_folder([folder])
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(8)]


def _time(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return (time.perf_counter() - start) * 1000, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="kdsr-s")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=48, help="LR patch size")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per way (after one warm-up)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--encoder", choices=["official", "energy"], default="official", help="KD-IDE kind")
    parser.add_argument("--blocks", type=int, default=0, help="IDR-DCRBs (0: the preset's; the default model: 24)")
    parser.add_argument("--gan", action="store_true", help="time the GAN stage too")
    parser.add_argument("--d-features", type=int, default=32, help="GAN discriminator width (configs: 32)")
    parser.add_argument("--ways", nargs="+", choices=list(WAYS), default=list(WAYS), metavar="WAY")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scale = 4
    loader = iter(
        torch.utils.data.DataLoader(
            HRPatches(_images(), args.patch * scale, seed=0), batch_sampler=StepBatchSampler(args.batch)
        )
    )
    degradations = {
        "classic": lambda hr, g: classic.random_degrade(hr, classic.ClassicSampling(), scale, g),
        "realworld": lambda hr, g: realworld.degrade(hr, realworld.RealWorldConfig(), scale, g),
        "mixture": lambda hr, g: mixture.degrade(hr, mixture.MixtureConfig(), scale, g),
    }
    overrides = {"encoder": args.encoder, **({"n_blocks": args.blocks} if args.blocks else {})}
    print(
        f"{args.preset} ({args.encoder} encoder, {args.blocks or 'preset'} blocks), batch {args.batch}, LR patch "
        f"{args.patch}, {args.threads} threads, torch {torch.__version__}"
    )
    data_ms = []
    degrade_ms = {name: [] for name in degradations}
    for step in range(args.steps + 1):
        ms, hr = _time(lambda: next(loader))
        for name, fn in degradations.items():
            generator = torch.Generator().manual_seed(step)
            ms_d, _ = _time(lambda fn=fn, generator=generator, hr=hr: fn(hr, generator))
            if step:
                degrade_ms[name].append(ms_d)
        if step:
            data_ms.append(ms)
    data = statistics.median(data_ms)
    print(
        f"data {data:.1f} ms/batch; degradation "
        + ", ".join(f"{n} {statistics.median(v):.1f}" for n, v in degrade_ms.items())
        + " ms/batch"
    )
    mix = statistics.median(degrade_ms["mixture"])

    torch.manual_seed(0)
    teacher = create_model(args.preset, teacher=True, **overrides)
    student = create_model(args.preset, **overrides)
    disc = UNetDiscriminatorSN(features=args.d_features).train()
    optimizer_d = torch.optim.Adam(disc.parameters(), lr=1e-4)
    flops = {
        "teacher": 3 * count_flops(teacher, args.patch, args.patch) * args.batch,
        "student": 3 * count_flops(student, args.patch, args.patch) * args.batch,
    }
    flops["gan"] = flops["student"]
    stages = (("teacher", teacher), ("student", student), *((("gan", student),) if args.gan else ()))
    hr = next(loader)
    lr = degradations["mixture"](hr, torch.Generator().manual_seed(0))
    print()
    columns = ["stage", "way", "forward ms", "backward ms", "optimiser ms", "step ms (+ data + mixture)"]
    print("| " + " | ".join([*columns, "samples/s", "GFLOP/s", "speed-up"]) + " |")
    print("|---|---|---|---|---|---|---|---|---|")
    for stage, model in stages:
        baseline = None
        for way in args.ways:
            dtype, channels_last = WAYS[way]
            memory_format = torch.channels_last if channels_last else torch.contiguous_format
            net = model.to(memory_format=memory_format).train()
            frozen = teacher.to(memory_format=memory_format).eval()
            x, y = lr.contiguous(memory_format=memory_format), hr.contiguous(memory_format=memory_format)
            optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
            parts = {"forward": [], "backward": [], "optimiser": []}
            for step in range(args.steps + 1):
                start = time.perf_counter()
                with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
                    if stage == "teacher":
                        loss = F.l1_loss(net(x, y).float(), hr)
                    elif stage == "gan":
                        sr = net(x)
                        disc.requires_grad_(False)
                        fake, fake_features = disc(sr, return_features=True)
                        with torch.no_grad():
                            real_features = disc(y, return_features=True)[1]
                        loss = F.l1_loss(sr.float(), hr) + feature_matching_loss(fake_features, real_features)
                        loss = loss + 0.1 * gan_loss(fake, real=True)
                    else:
                        with torch.no_grad():
                            target = frozen.encode(x, y).d_prime
                        sr, idr = net(x, return_idr=True)
                        loss = F.l1_loss(sr.float(), hr) + kd_loss(idr.d_prime.float(), target.float())
                forward = time.perf_counter()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                backward = time.perf_counter()
                optimizer.step()
                if stage == "gan":  # the discriminator's step
                    disc.requires_grad_(True)
                    optimizer_d.zero_grad(set_to_none=True)
                    with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
                        d_loss = gan_loss(disc(y), real=True) + gan_loss(disc(sr.detach()), real=False)
                    d_loss.backward()
                    optimizer_d.step()
                end = time.perf_counter()
                if step:
                    parts["forward"].append((forward - start) * 1000)
                    parts["backward"].append((backward - forward) * 1000)
                    parts["optimiser"].append((end - backward) * 1000)
            f, b, o = (statistics.median(v) for v in parts.values())
            step_ms = f + b + o + data + mix
            baseline = baseline or step_ms
            rate = args.batch / step_ms * 1000
            print(
                f"| {stage} | {way} | {f:.0f} | {b:.0f} | {o:.1f} | {step_ms:.0f} | {rate:.1f} | "
                f"{flops[stage] / (f + b) / 1e6:.0f} | {baseline / step_ms:.2f}x |"
            )


if __name__ == "__main__":
    main()
