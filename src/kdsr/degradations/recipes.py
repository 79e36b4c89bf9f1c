"""Fixed, named degradation recipes (each a function of an HR batch, the scale and a ``torch.Generator``): the
everyday cases that ``kdsr benchmark --protocol everyday``, the validation of training runs and INT8 calibration
use, and the known degradations of ``kdsr idr`` / ``kdsr estimate`` (blur, noise, JPEG quality). Random sampling
for training is in :mod:`.classic`, :mod:`.realworld` and :mod:`.mixture`."""

from __future__ import annotations

import math

import torch

from kdsr.degradations import realworld
from kdsr.degradations.classic import degrade
from kdsr.degradations.jpeg import libjpeg
from kdsr.degradations.kernels import anisotropic_gaussian, isotropic_gaussian

#: everyday cases: (name, blur sigma in HR pixels, noise sigma 0-255, JPEG quality or 0); "realworld" is the
#: second-order pipeline with its default ranges, seeded per image.
EVERYDAY_CASES = (
    ("clean", 0.0, 0.0, 0),
    ("jpeg40", 0.0, 0.0, 40),
    ("jpeg60", 0.0, 0.0, 60),
    ("jpeg80", 0.0, 0.0, 80),
    ("blur1.0+noise5", 1.0, 5.0, 0),
    ("blur2.0+noise15", 2.0, 15.0, 0),
    ("camera", 0.8, 3.0, 75),
    ("realworld", 0.0, 0.0, 0),
)


def everyday_lr(hr: torch.Tensor, case: str, scale: int, generator: torch.Generator) -> torch.Tensor:
    """The LR of one everyday case: [Gaussian blur] -> antialiased bicubic 1/scale -> [colour noise] -> 8 bits ->
    [libjpeg at the case's quality]; or the real-world pipeline."""
    if case == "realworld":
        return realworld.degrade(hr, realworld.RealWorldConfig(), scale, generator)
    _, sigma, noise, quality = next(c for c in EVERYDAY_CASES if c[0] == case)
    return known_lr(hr, scale, generator, sigma, noise, quality)


def known_lr(
    hr: torch.Tensor,
    scale: int,
    generator: torch.Generator,
    sigma: float = 0.0,
    noise: float = 0.0,
    jpeg: float = 0.0,
    aniso: bool = False,
) -> torch.Tensor:
    """A known degradation in ``kdsr degrade`` units: Gaussian blur of width ``sigma`` HR pixels (0: none; ``aniso``:
    lambda1 = sigma, lambda2 = sigma / 2 at an angle drawn from ``generator``), bicubic 1/scale, noise of standard
    deviation ``noise`` (0-255), 8 bits, then libjpeg at quality ``jpeg`` (0: none)."""
    kernel = None
    if sigma > 0 and aniso:
        theta = float(torch.rand((), generator=generator)) * math.pi
        kernel = anisotropic_gaussian(sigma, sigma / 2, theta)[0]
    elif sigma > 0:
        kernel = isotropic_gaussian(sigma)[0]
    lr = degrade(hr, kernel, scale, noise, generator)
    return libjpeg(lr, jpeg) if jpeg else lr
