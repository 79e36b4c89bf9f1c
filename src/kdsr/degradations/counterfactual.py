"""Counterfactual training pairs: an LR, the LR the same HR gives under a *lesser* ("told") degradation, and the
target that fits the told degradation, so that a generator learns to restore what its IDR says, no more.

A generator trained only with its own IDR can read the degradation off the LR itself and ignore the IDR (what the
IDR swap of ``benchmarks/idr_swap.py`` measured on the first energy default). Here part of each batch is super-resolved
with the IDR of the told LR, and the target is the image that the told degradation turns into the LR:

- blur sigma ``s`` told as ``t <= s``: the target is the HR blurred by ``sqrt(s^2 - t^2)`` (Gaussians compose, so
  blurring that target by ``t`` gives the LR's blur exactly);
- noise ``n`` told as ``m <= n``: the LR's noise is drawn as two independent fields, ``m`` (removed) and
  ``sqrt(n^2 - m^2)`` (kept); the told LR has the removed field only, the target is the HR plus the kept field
  upsampled (bicubic x scale): the grain the user asked to keep;
- JPEG quality ``q`` told as ``p >= q`` (100: not compressed): the target is the HR plus the upsampled difference
  between the two compressions, the blocking that is kept.

Telling the truth gives the ordinary pair (target = HR), and telling "clean" asks the generator to enlarge the
degradation with the content. Every draw comes from the caller's generator.
"""

from __future__ import annotations

import dataclasses

import torch

from kdsr.degradations.classic import blur, quantize
from kdsr.degradations.jpeg import libjpeg
from kdsr.degradations.kernels import isotropic_gaussian
from kdsr.degradations.mixture import downscale
from kdsr.degradations.resize import imresize

#: the narrowest blur a told LR gets (HR pixels): the mixture's floor
MIN_TOLD_BLUR = 0.2


@dataclasses.dataclass(frozen=True)
class CounterfactualConfig:
    """``fraction`` of each training batch becomes counterfactual pairs, ``jpeg_share`` of them JPEG ones and the
    rest blur + noise; ``truth_prob`` of each told quantity is the truth (so every mix of told and true occurs);
    ``jpeg_weight``: the JPEG pairs' L1 counts this many times (the blocking they ask to keep is a few levels of 8x8
    structure, a small signal beside the kept blur and grain); ``difference_weight``: an L1 between what the told
    IDR changes in the output (told output minus the output with the LR's own IDR, held fixed) and what the told
    degradation keeps (target minus HR), in which the content error of both outputs cancels; ``map_share``: the
    share of steps whose pairs are told through the model's IDR map instead of the told LR's IDR: the LR's own IDR
    moved from its estimated degradation to the told one, as ``--assume`` / ``--denoise`` move it, so that the dials
    themselves are trained; ``jpeg_clean_prob``: the share of JPEG pairs told "uncompressed" outright (a told
    strength drawn uniformly reaches "uncompressed" about once in a hundred pairs, and every JPEG quality also
    subsamples the chroma, so the clean IDR is apart from every other told one)."""

    fraction: float = 0.0
    jpeg_share: float = 0.4
    truth_prob: float = 0.25
    blur_range: tuple[float, float] = (0.2, 3.6)
    noise_range: tuple[float, float] = (0.0, 30.0)
    jpeg_range: tuple[float, float] = (25.0, 95.0)
    gray_noise_prob: float = 0.4
    jpeg_weight: float = 1.0
    difference_weight: float = 0.0
    map_share: float = 0.0
    jpeg_clean_prob: float = 0.0

    def __post_init__(self) -> None:
        for name in ("fraction", "jpeg_share", "truth_prob", "gray_noise_prob", "map_share", "jpeg_clean_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"counterfactual.{name} must be in [0, 1]")
        if min(self.jpeg_weight, self.difference_weight) < 0:
            raise ValueError("counterfactual.jpeg_weight and difference_weight must be >= 0")
        for name, floor, ceiling in (("blur_range", 0, 20), ("noise_range", 0, 255), ("jpeg_range", 1, 100)):
            low, high = getattr(self, name)
            if not floor <= low <= high <= ceiling:
                raise ValueError(f"counterfactual.{name} must be (low, high) within [{floor}, {ceiling}]")


@dataclasses.dataclass(frozen=True)
class CounterfactualBatch:
    """(B, 3, h, w) LRs, the told LRs (whose IDR the generator gets), the (B, 3, H, W) targets, and per pair the told
    degradation in the IDR map's units (what it states; the rest is as estimated)."""

    lr: torch.Tensor
    told: torch.Tensor
    target: torch.Tensor
    told_values: tuple[dict[str, float], ...] = ()


def _uniform(b: int, bounds: tuple[float, float], generator, device) -> torch.Tensor:
    low, high = bounds
    return torch.rand(b, generator=generator, device=device) * (high - low) + low


def _told_fraction(b: int, config: CounterfactualConfig, generator, device) -> torch.Tensor:
    """Per image, the share of the degradation that is told: 1 with ``truth_prob``, else U[0, 1)."""
    u = torch.rand(b, generator=generator, device=device)
    truth = torch.rand(b, generator=generator, device=device) < config.truth_prob
    return torch.where(truth, torch.ones_like(u), u)


def _noise_field(shape, sigma: torch.Tensor, gray: torch.Tensor, generator, like: torch.Tensor) -> torch.Tensor:
    b, c, h, w = shape
    field = torch.randn((b, c, h, w), generator=generator, device=like.device, dtype=like.dtype)
    field = torch.where(gray.view(b, 1, 1, 1), field[:, :1].expand(b, c, h, w), field)
    return field * (sigma.to(like).view(b, 1, 1, 1) / 255)


def blur_noise_pairs(hr: torch.Tensor, config: CounterfactualConfig, scale: int, generator) -> CounterfactualBatch:
    """Isotropic Gaussian blur, bicubic downscaling and Gaussian noise, told as a lesser blur and noise."""
    b, device = hr.shape[0], hr.device
    sigma = _uniform(b, config.blur_range, generator, device).cpu()
    noise = _uniform(b, config.noise_range, generator, device).cpu()
    gray = (torch.rand(b, generator=generator, device=device) < config.gray_noise_prob).to(device)
    told_sigma = MIN_TOLD_BLUR + _told_fraction(b, config, generator, device).cpu() * (sigma - MIN_TOLD_BLUR)
    told_sigma = torch.minimum(told_sigma.clamp(min=MIN_TOLD_BLUR), sigma)
    told_noise = _told_fraction(b, config, generator, device).cpu() * noise
    kept_noise = (noise.square() - told_noise.square()).clamp(min=0).sqrt()

    def down(sigmas: torch.Tensor) -> torch.Tensor:
        return imresize(blur(hr, isotropic_gaussian(sigmas).to(hr)), 1 / scale)

    lr_shape = (b, hr.shape[1], hr.shape[2] // scale, hr.shape[3] // scale)
    removed = _noise_field(lr_shape, told_noise, gray, generator, hr)
    kept = _noise_field(lr_shape, kept_noise, gray, generator, hr)
    lr = quantize(down(sigma) + removed + kept)
    told = quantize(down(told_sigma) + removed)
    rest = (sigma.square() - told_sigma.square()).clamp(min=0).sqrt()
    sharp = rest < 1e-3  # told the whole blur: the target is the HR itself
    blurred = blur(hr, isotropic_gaussian(rest.clamp(min=1e-3)).to(hr))
    target = torch.where(sharp.to(device).view(b, 1, 1, 1), hr, blurred) + imresize(kept, scale)
    values = tuple({"blur_sigma": float(t), "noise": float(n)} for t, n in zip(told_sigma, told_noise, strict=True))
    return CounterfactualBatch(lr, told, target.clamp(0, 1), values)


def jpeg_pairs(hr: torch.Tensor, config: CounterfactualConfig, scale: int, generator) -> CounterfactualBatch:
    """Clean downscaling (bicubic) and a libjpeg round trip, told as a higher quality (or none)."""
    b, device = hr.shape[0], hr.device
    clean = quantize(downscale(hr, scale, torch.zeros(b, dtype=torch.bool, device=device)))
    quality = _uniform(b, config.jpeg_range, generator, device).round()
    told_quality = (100 - _told_fraction(b, config, generator, device) * (100 - quality)).round()  # strength told
    if config.jpeg_clean_prob:  # drawn only when asked, so that runs without it keep their draws
        told_clean = torch.rand(b, generator=generator, device=device) < config.jpeg_clean_prob
        told_quality = torch.where(told_clean.to(told_quality.device), torch.full_like(told_quality, 100), told_quality)
    lr = libjpeg(clean, quality)
    uncompressed = told_quality >= 100
    told = libjpeg(clean, told_quality.clamp(max=99))
    told = torch.where(uncompressed.to(device).view(b, 1, 1, 1), clean, told)
    target = hr + imresize(lr - told, scale)
    values = tuple({"jpeg_quality": float(min(q, 100.0)), "noise": 0.0} for q in told_quality.cpu())
    return CounterfactualBatch(lr, told, target.clamp(0, 1), values)


def jpeg_pair_count(n_pairs: int, config: CounterfactualConfig) -> int:
    """How many of ``n_pairs`` counterfactual pairs (the first ones) are JPEG pairs."""
    return round(config.jpeg_share * n_pairs)


def counterfactual_pairs(hr: torch.Tensor, config: CounterfactualConfig, scale: int, generator) -> CounterfactualBatch:
    """Counterfactual pairs of a batch of HR patches: the first :func:`jpeg_pair_count` JPEG, the rest blur +
    noise."""
    n_jpeg = jpeg_pair_count(hr.shape[0], config)
    parts = []
    if n_jpeg:
        parts.append(jpeg_pairs(hr[:n_jpeg], config, scale, generator))
    if n_jpeg < hr.shape[0]:
        parts.append(blur_noise_pairs(hr[n_jpeg:], config, scale, generator))
    tensors = (torch.cat([getattr(p, f) for p in parts]) for f in ("lr", "told", "target"))
    return CounterfactualBatch(*tensors, tuple(v for p in parts for v in p.told_values))
