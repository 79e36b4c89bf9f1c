"""Distillation targets from a sharp teacher (``scripts/teacher_targets.py``): fixed (LR, target) pairs that the GAN
stage mixes into its batches.

A target keeps the HR's low frequencies (so the teacher's colour shifts and displaced edges do not carry over) and
takes the teacher's fine detail where the teacher agrees with the HR at the scale of LR pixels; where it does not
(invented structure, a wrong texture) the HR's detail is kept. The teacher is a deterministic function of the LR, so
unlike the HR's own detail its detail can be learnt exactly rather than averaged into blur.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from kdsr.errors import KDSRError

#: Gaussian width (HR pixels) that splits low from high frequencies: about one LR pixel at x4.
SPLIT_SIGMA = 2.0


def _gaussian(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, round(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (radius,) * 4, mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def agreement(hr: torch.Tensor, teacher: torch.Tensor, scale: int, tolerance: float) -> torch.Tensor:
    """(N, 1, H, W) weight in [0, 1]: 1 where the teacher's output averaged over each LR pixel is within half the
    tolerance of the HR's (on 0-1 values, channels averaged), falling linearly to 0 at the tolerance; spread over
    the LR pixel's 3x3 neighbourhood so one wrong pixel distrusts its surroundings too."""
    gap = (F.avg_pool2d(teacher, scale) - F.avg_pool2d(hr, scale)).abs().mean(1, keepdim=True)
    gap = F.max_pool2d(gap, 3, stride=1, padding=1)
    weight = ((tolerance - gap) / (tolerance / 2)).clamp(0, 1)
    return F.interpolate(weight, scale_factor=scale, mode="nearest")


def blend_targets(hr: torch.Tensor, teacher: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The HR's low frequencies plus the teacher's high frequencies where ``weight`` (:func:`agreement`) trusts it,
    the HR's elsewhere."""
    hr_low = _gaussian(hr, SPLIT_SIGMA)
    detail = weight * (teacher - _gaussian(teacher, SPLIT_SIGMA)) + (1 - weight) * (hr - hr_low)
    return (hr_low + detail).clamp(0, 1)


class TeacherTargets:
    """The pairs of one ``.npz`` set: ``lr`` (N, 3, P, P) and blended ``target`` (N, 3, sP, sP), 8-bit; drawn as
    floats in [0, 1]."""

    def __init__(self, path: str | Path, patch: int, scale: int, tolerance: float) -> None:
        try:
            with np.load(path, allow_pickle=False) as data:
                lr, hr, teacher = data["lr"], data["hr"], data["teacher"]
        except (OSError, ValueError, KeyError) as error:
            raise KDSRError(f"{path}: not a teacher-target set ({error})") from None
        expected = (3, patch * scale, patch * scale)
        if lr.shape[1:] != (3, patch, patch) or hr.shape[1:] != expected or teacher.shape != hr.shape:
            raise KDSRError(f"{path}: its samples are {lr.shape[1:]} LR, not {patch}-pixel patches at x{scale}")
        self.lr = torch.from_numpy(lr)
        self.target = torch.empty(hr.shape, dtype=torch.uint8)  # 8-bit: a quarter of the memory of floats
        trusted = 0.0
        for start in range(0, len(hr), 256):  # in chunks, so that no float copy of the whole set is held
            part = slice(start, start + 256)
            hr_t = torch.from_numpy(hr[part]).float().div_(255)
            teacher_t = torch.from_numpy(teacher[part]).float().div_(255)
            weight = agreement(hr_t, teacher_t, scale, tolerance)
            self.target[part] = blend_targets(hr_t, teacher_t, weight).mul_(255).round_().byte()
            trusted += float(weight.sum()) / weight[0].numel()
        #: the share of target pixels whose detail is the teacher's
        self.trusted = trusted / max(len(hr), 1)

    def __len__(self) -> int:
        return len(self.lr)

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` pairs drawn with the generator, each under one of the 8 flips/transposes."""
        index = torch.randint(len(self.lr), (n,), generator=generator, device=generator.device).cpu()
        lr, target = self.lr[index].float().div_(255), self.target[index].float().div_(255)
        flips = torch.randint(2, (3,), generator=generator, device=generator.device).tolist()
        dims = [d for d, flip in zip((3, 2), flips[:2], strict=True) if flip]
        if dims:
            lr, target = lr.flip(dims), target.flip(dims)
        if flips[2]:
            lr, target = lr.transpose(2, 3), target.transpose(2, 3)
        return lr.contiguous(), target.contiguous()
