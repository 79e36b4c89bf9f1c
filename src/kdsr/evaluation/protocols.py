"""Benchmark protocols: Gaussian8 (paper Table 1), nine anisotropic kernels x noise (Table 2), paired folders, and
``everyday``: the inputs people actually have (clean downscaling, JPEG, blur + noise, camera-like, real-world), each
scored against bicubic upsampling of the same LR.

LR images are generated on the fly exactly as the official test code does (KDSR-classic ``trainer_iso_stage4.py``
and ``trainer_anisonoise_stage4.py``, ``test()``): HR read as 8-bit RGB (grey replicated), mod-cropped to the scale,
degraded with :func:`kdsr.degradations.classic.degrade`; SR output and HR are quantised to 8 bits before the
metrics.
"""

from __future__ import annotations

import math
import re
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from kdsr.constants import PROTOCOLS
from kdsr.degradations.classic import degrade
from kdsr.degradations.kernels import anisotropic_gaussian, isotropic_gaussian
from kdsr.degradations.recipes import EVERYDAY_CASES, named_lr
from kdsr.degradations.resize import imresize
from kdsr.errors import KDSRError, shortened
from kdsr.image_io import list_images, probe_image, read_rgb8
from kdsr.image_tensor import image_to_tensor, tensor_to_image
from kdsr.metrics import psnr, ssim
from kdsr.metrics.lpips import lpips_distance

GAUSSIAN8_SIGMAS = (1.8, 2.0, 2.2, 2.4, 2.6, 2.8, 3.0, 3.2)
#: (lambda1, lambda2, theta in degrees): the DASR nine-kernel list. KDSR's own nine kernels (its Table 2) are not
#: published anywhere in its code; this list contains both kernels its scripts use (``trainer_anisonoise_stage4.py``).
DASR_ANISO_KERNELS = (
    (2.0, 0.5, 0.0),
    (2.0, 1.0, 10.0),
    (3.5, 1.5, 30.0),
    (3.5, 2.0, 45.0),
    (3.5, 2.0, 90.0),
    (4.0, 1.5, 120.0),
    (4.0, 2.0, 135.0),
    (4.0, 3.0, 165.0),
    (4.0, 4.0, 180.0),
)
ANISO_NOISE_LEVELS = (0.0, 10.0, 20.0)

#: (LR (1, 3, h, w), HR (1, 3, H, W)) -> SR; the HR is there for teacher models (an upper bound) and is ignored
#: by every blind model.
SRFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def load_hr(path: Path, scale: int) -> np.ndarray:
    """8-bit RGB (grey replicated, alpha dropped), cropped to a multiple of ``scale``."""
    image = read_rgb8(path)
    h, w = image.shape[0] - image.shape[0] % scale, image.shape[1] - image.shape[1] % scale
    if h == 0 or w == 0:
        raise KDSRError(f"{path}: smaller than the scale {scale}")
    return np.ascontiguousarray(image[:h, :w])


def noise_seed(image_name: str, *setting: object) -> int:
    """Seed for one (image, setting) pair that does not depend on run order."""
    return zlib.crc32("|".join([image_name, *map(str, setting)]).encode())


#: (HR (1, 3, H, W), scale, generator) -> LR: how one setting of a synthetic protocol makes its LR.
MakeLR = Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]


def _classic(kernel: torch.Tensor, noise: float) -> MakeLR:
    return lambda hr, scale, generator: degrade(hr, kernel, scale, noise, generator)


def _everyday(case: str) -> MakeLR:
    return lambda hr, scale, generator: named_lr(hr, case, scale, generator)


def _settings(protocol: str) -> list[tuple[str, MakeLR]]:
    """(setting name, LR maker) of a synthetic protocol (gaussian8, aniso, everyday)."""
    if protocol == "gaussian8":
        return [(f"sigma={s}", _classic(isotropic_gaussian(s)[0], 0.0)) for s in GAUSSIAN8_SIGMAS]
    if protocol == "everyday":
        return [(name, _everyday(name)) for name in EVERYDAY_CASES]
    settings = []
    for i, (l1, l2, theta) in enumerate(DASR_ANISO_KERNELS, 1):
        kernel = anisotropic_gaussian(l1, l2, theta * math.pi / 180)[0]
        for noise in ANISO_NOISE_LEVELS:
            settings.append((f"k{i}/noise={noise:g}", _classic(kernel, noise)))
    return settings


_PAIR_SUFFIX = re.compile(r"([_-]?(lr|hr|lq|gt|sr))?([_-]?x[2348])?$", re.IGNORECASE)


def pair_key(path: Path) -> str:
    """The shared name of an LR/HR pair: the stem without an LR/HR/LQ/GT tag or an x2/x3/x4/x8 mark
    (``baby_x4``, ``baby_LRx4``, ``baby-lr`` and ``baby`` all give ``baby``)."""
    return _PAIR_SUFFIX.sub("", path.stem) or path.stem


def _paired_files(folder: Path, scale: int) -> list[tuple[Path, Path]]:
    """Matched (LR, HR) files of a paired set; unmatched files and LRs that are not HR/scale are refused."""
    lr_dir = next((folder / n for n in ("LR", "lr", "LQ", "lq") if (folder / n).is_dir()), None)
    hr_dir = next((folder / n for n in ("HR", "hr", "GT", "gt") if (folder / n).is_dir()), None)
    if lr_dir is None or hr_dir is None:
        raise KDSRError(f"{folder}: a paired set needs LR/ and HR/ subfolders")
    lrs, hrs = {}, {}
    for files, table in ((list_images(lr_dir), lrs), (list_images(hr_dir), hrs)):
        for path in files:
            if pair_key(path) in table:
                raise KDSRError(f"{path}: has the same pair name as {table[pair_key(path)].name}")
            table[pair_key(path)] = path
    unmatched = sorted(p.name for k, p in [*lrs.items(), *hrs.items()] if k not in lrs or k not in hrs)
    if unmatched:
        raise KDSRError(f"{folder}: {len(unmatched)} file(s) without a partner: {shortened(unmatched, 5)}")
    pairs = [(lrs[k], hrs[k]) for k in sorted(lrs)]
    for lr_path, hr_path in pairs:
        (lw, lh, *_), (hw, hh, *_) = probe_image(lr_path), probe_image(hr_path)
        if (lw, lh) != (hw // scale, hh // scale):
            raise KDSRError(
                f"{lr_path}: {lw}x{lh} is not its HR ({hr_path.name}, {hw}x{hh}) divided by the scale {scale}"
            )
    return pairs


def _means(records: list[dict[str, float]]) -> dict[str, float]:
    """Each metric's mean over the records that have it (LR consistency: the clean case only)."""
    keys = dict.fromkeys(key for r in records for key in r)
    return {key: float(np.mean([r[key] for r in records if key in r])) for key in keys}


def detail_metrics(sr: np.ndarray, ref: np.ndarray, scale: int, prefix: str = "") -> dict[str, float]:
    """NIQE, the high-frequency energy ratio and the colour error of an output (:mod:`kdsr.metrics.detail`)."""
    from kdsr.metrics.detail import colour_error, high_frequency_ratio
    from kdsr.metrics.niqe import niqe

    return {
        f"{prefix}niqe": niqe(sr),
        f"{prefix}hf_ratio": high_frequency_ratio(sr, ref, scale),
        f"{prefix}colour_error": colour_error(sr, ref, scale),
    }


Case = tuple[str, torch.Tensor, torch.Tensor, np.ndarray]


def _cases(folder: Path, protocol: str, scale: int) -> tuple[int, Iterator[Case]]:
    """Number of cases and an iterator over (setting name, LR tensor, HR tensor, HR uint8 image) of one folder."""
    if protocol == "paired":
        pairs = _paired_files(folder, scale)

        def paired() -> Iterator[Case]:
            for lr_path, hr_path in pairs:
                hr_image = load_hr(hr_path, scale)
                yield "paired", image_to_tensor(read_rgb8(lr_path)), image_to_tensor(hr_image), hr_image

        return len(pairs), paired()
    files, settings = list_images(folder), _settings(protocol)

    def synthetic() -> Iterator[Case]:
        for path in files:
            hr_image = load_hr(path, scale)
            hr = image_to_tensor(hr_image)
            for name, make_lr in settings:
                generator = torch.Generator().manual_seed(noise_seed(path.name, name))
                yield name, make_lr(hr, scale, generator), hr, hr_image

    return len(files) * len(settings), synthetic()


def run_benchmark(
    sr_fn: SRFunction,
    datasets: list[Path],
    protocol: str,
    scale: int = 4,
    convention: str = "official",
    progress: bool = False,
    lpips_model=None,
    detail: bool = False,
) -> dict:
    """Evaluate ``sr_fn`` on every dataset folder.

    Returns ``{"results": {DATASET: {"psnr", "ssim", "settings": {name: {"psnr", "ssim"}}}}, "wall_time_s": t}``;
    means are over all (image, setting) pairs of a dataset. With ``lpips_model`` (:func:`kdsr.metrics.lpips.load_lpips`)
    every level also has "lpips" (full image, no crop). The everyday protocol also scores bicubic upsampling of the
    same LR ("bicubic_psnr", "bicubic_ssim") and the model's "gain" in PSNR over it. With ``detail`` every level
    also has "niqe", "hf_ratio" and "colour_error" (:func:`detail_metrics`; bicubic's too, "bicubic_niqe", ..., in
    the everyday protocol), and the clean case "lr_consistency" (:func:`kdsr.metrics.detail.lr_consistency`).
    """
    from tqdm import tqdm

    if protocol not in PROTOCOLS:
        raise KDSRError(f"unknown protocol '{protocol}' (use {', '.join(PROTOCOLS)})")
    start = time.perf_counter()
    results = {}
    for folder in map(Path, datasets):
        if not folder.is_dir():
            raise KDSRError(f"{folder}: not a folder")
        total, cases = _cases(folder, protocol, scale)
        per_setting: dict[str, list[dict[str, float]]] = {}
        for name, lr, hr, hr_image in tqdm(cases, total=total, desc=folder.name, unit="img", disable=not progress):
            with torch.inference_mode():
                sr = tensor_to_image(sr_fn(lr, hr))
            h, w = min(sr.shape[0], hr_image.shape[0]), min(sr.shape[1], hr_image.shape[1])
            sr, ref = sr[:h, :w], hr_image[:h, :w]
            values = {"psnr": psnr(sr, ref, scale, convention), "ssim": ssim(sr, ref, scale, convention)}
            if protocol == "everyday":
                bicubic = tensor_to_image(imresize(lr, scale))[:h, :w]
                values["bicubic_psnr"] = psnr(bicubic, ref, scale, convention)
                values["bicubic_ssim"] = ssim(bicubic, ref, scale, convention)
                values["gain"] = values["psnr"] - values["bicubic_psnr"]
            if lpips_model is not None:
                values["lpips"] = lpips_distance(lpips_model, sr, ref)
            if detail:
                values |= detail_metrics(sr, ref, scale)
                if protocol == "everyday":
                    values |= detail_metrics(bicubic, ref, scale, prefix="bicubic_")
                if name == "clean":
                    from kdsr.metrics.detail import lr_consistency

                    values["lr_consistency"] = lr_consistency(sr, tensor_to_image(lr), scale)
            per_setting.setdefault(name, []).append(values)
        every = [v for values in per_setting.values() for v in values]
        results[folder.name] = {
            **_means(every),
            "settings": {name: _means(values) for name, values in per_setting.items()},
        }
    return {"results": results, "wall_time_s": time.perf_counter() - start}
