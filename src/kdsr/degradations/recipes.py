"""Fixed, named degradation recipes (each a function of an HR batch, the scale and a ``torch.Generator``): the
named cases (one table) that ``kdsr benchmark --protocol everyday``, the validation of training runs and INT8
calibration select from, and the known degradations of ``kdsr idr`` / ``kdsr estimate`` (blur, noise, JPEG
quality). Random sampling for training is in :mod:`.classic`, :mod:`.realworld` and :mod:`.mixture`."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from kdsr.degradations import realworld
from kdsr.degradations.classic import degrade
from kdsr.degradations.jpeg import libjpeg
from kdsr.degradations.kernels import anisotropic_gaussian, isotropic_gaussian


class NamedCase(NamedTuple):
    """A fixed degradation with a name: Gaussian blur sigma in HR pixels, noise sigma 0-255, JPEG quality (0: none),
    and the training-mixture family (:data:`kdsr.degradations.mixture.MIXTURE_CASES`) it is one draw of."""

    sigma: float
    noise: float
    jpeg: int
    family: str


#: The one vocabulary of named degradations. The mixture's families are the random ranges training draws from; the
#: named cases are fixed draws of them (a test holds each inside its family's default ranges), which the everyday
#: protocol, training validation, ``kdsr idr`` / ``estimate`` and INT8 calibration select by name. "realworld" is
#: the second-order pipeline with its default ranges, seeded per image.
NAMED_CASES: dict[str, NamedCase] = {
    "clean": NamedCase(0.0, 0.0, 0, "clean"),
    "jpeg40": NamedCase(0.0, 0.0, 40, "jpeg"),
    "jpeg60": NamedCase(0.0, 0.0, 60, "jpeg"),
    "jpeg80": NamedCase(0.0, 0.0, 80, "jpeg"),
    "blur1.0+noise5": NamedCase(1.0, 5.0, 0, "blur_noise"),
    "blur2.0+noise15": NamedCase(2.0, 15.0, 0, "blur_noise"),
    "camera": NamedCase(0.8, 3.0, 75, "camera"),
    "realworld": NamedCase(0.0, 0.0, 0, "realworld"),
    "gaussian2.0": NamedCase(2.0, 0.0, 0, "blur_noise"),
    "gaussian3.0": NamedCase(3.0, 0.0, 0, "blur_noise"),
}
#: the everyday protocol's cases (``kdsr benchmark --protocol everyday``, the validation of training runs)
EVERYDAY_CASES = ("clean", "jpeg40", "jpeg60", "jpeg80", "blur1.0+noise5", "blur2.0+noise15", "camera", "realworld")


def named_lr(hr: torch.Tensor, case: str, scale: int, generator: torch.Generator) -> torch.Tensor:
    """The LR of one named case: [Gaussian blur] -> antialiased bicubic 1/scale -> [colour noise] -> 8 bits ->
    [libjpeg at the case's quality]; or the real-world pipeline."""
    if case == "realworld":
        return realworld.degrade(hr, realworld.RealWorldConfig(), scale, generator)
    sigma, noise, quality, _ = NAMED_CASES[case]
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
