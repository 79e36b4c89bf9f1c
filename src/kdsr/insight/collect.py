"""Degrade HR images under known settings and collect the IDR the model's encoder makes of each."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from kdsr.degradations.recipes import EVERYDAY_CASES, NAMED_CASES, known_lr, named_lr
from kdsr.errors import KDSRError
from kdsr.evaluation.protocols import load_hr, noise_seed
from kdsr.image_tensor import image_to_tensor
from kdsr.inference.tiling import estimate_idr
from kdsr.inference.upscaler import DEFAULT_IDR_VIEW
from kdsr.models import KDSRStudent, KDSRTeacher


@dataclasses.dataclass(frozen=True)
class Degradation:
    """One known degradation in ``kdsr degrade`` units: Gaussian blur width ``sigma`` in HR pixels (0: none;
    ``aniso`` makes it lambda1 = sigma, lambda2 = sigma / 2 at a per-image angle), noise standard deviation on the
    0-255 scale, JPEG quality (0: none); or one of the everyday cases by name (``case``, e.g. ``realworld``; see
    :data:`kdsr.degradations.recipes.EVERYDAY_CASES`)."""

    sigma: float = 0.0
    noise: float = 0.0
    jpeg: float = 0.0
    aniso: bool = False
    case: str = ""

    @classmethod
    def everyday(cls, case: str) -> Degradation:
        """An everyday case; its blur, noise and JPEG quality are filled in where the case has them."""
        if case not in EVERYDAY_CASES:
            raise KDSRError(f"unknown everyday case {case!r} (use {', '.join(EVERYDAY_CASES)})")
        sigma, noise, jpeg, _ = NAMED_CASES[case]
        return cls(sigma, noise, jpeg, case=case)

    @property
    def label(self) -> str:
        if self.case:
            return self.case
        parts = [f"{'aniso ' if self.aniso else ''}sigma {self.sigma:g}"]
        if self.noise:
            parts.append(f"noise {self.noise:g}")
        if self.jpeg:
            parts.append(f"JPEG q{self.jpeg:g}")
        return ", ".join(parts)

    def apply(self, hr: torch.Tensor, scale: int, generator: torch.Generator) -> torch.Tensor:
        """(1, 3, H, W) HR -> the 8-bit LR: blur, bicubic /scale, noise (as ``kdsr degrade``), then JPEG; or the
        everyday case's recipe."""
        if self.case:
            return named_lr(hr, self.case, scale, generator)
        return known_lr(hr, scale, generator, self.sigma, self.noise, self.jpeg, self.aniso)


@dataclasses.dataclass
class IDRSamples:
    """One IDR per (image, degradation): ``features`` (N, C), with the index of the setting and image of each row."""

    features: np.ndarray
    setting: np.ndarray
    image: np.ndarray
    degradations: list[Degradation]

    def targets(self, name: str) -> np.ndarray:
        """The per-row value of a degradation parameter: ``sigma``, ``noise`` or ``jpeg``."""
        return np.array([getattr(self.degradations[i], name) for i in self.setting], dtype=np.float64)


def encode(
    model: KDSRStudent | KDSRTeacher, lr: torch.Tensor, hr: torch.Tensor | None, feature: str = "d"
) -> np.ndarray:
    """One image's IDR vector ``feature`` (:data:`kdsr.constants.IDR_FEATURES`): a teacher sees LR and HR, a student
    the LR (bounded view, as upscaling)."""
    with torch.inference_mode():
        if isinstance(model, KDSRTeacher):
            idr = model.encode(lr, hr)
        else:
            idr = estimate_idr(model, lr, view=DEFAULT_IDR_VIEW)
    return getattr(idr, feature)[0].float().numpy()


def center_crop(hr: np.ndarray, size: int, scale: int) -> np.ndarray:
    """At most ``size`` x ``size`` HR pixels from the middle, a multiple of ``scale`` (0: the whole image)."""
    if size <= 0:
        return hr
    h, w = (min(n, size) // scale * scale for n in hr.shape[:2])
    y, x = (hr.shape[0] - h) // 2, (hr.shape[1] - w) // 2
    return np.ascontiguousarray(hr[y : y + h, x : x + w])


def collect_idr(
    model: KDSRStudent | KDSRTeacher,
    hr_paths: Sequence[Path],
    degradations: Sequence[Degradation] | Iterable[Sequence[Degradation]],
    *,
    crop: int = 0,
    seed: int = 0,
    progress: bool = False,
    feature: str = "d",
) -> IDRSamples:
    """The IDR of every HR image under every degradation; ``degradations`` is one list for all images, or one list
    per image (random draws for fitting). Each LR is seeded from the image name and the setting, so runs repeat.
    ``feature`` is the IDR vector collected (``d``, the paper's D, or ``d_prime``)."""
    per_image = [list(degradations)] * len(hr_paths) if isinstance(degradations[0], Degradation) else degradations
    features, settings, images, table = [], [], [], {}
    rows = [(i, path, d) for (i, path), ds in zip(enumerate(hr_paths), per_image, strict=True) for d in ds]
    hr_cache: tuple[int, torch.Tensor] | None = None
    for i, path, degradation in tqdm(rows, desc="IDR", unit="LR", disable=not progress, leave=False):
        if hr_cache is None or hr_cache[0] != i:
            hr_cache = (i, image_to_tensor(center_crop(load_hr(path, model.scale), crop, model.scale)))
        hr = hr_cache[1]
        generator = torch.Generator().manual_seed(noise_seed(path.name, seed, degradation))
        lr = degradation.apply(hr, model.scale, generator)
        features.append(encode(model, lr, hr, feature))
        settings.append(table.setdefault(degradation, len(table)))
        images.append(i)
    return IDRSamples(np.stack(features), np.array(settings), np.array(images), list(table))
