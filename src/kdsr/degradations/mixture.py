"""A training mixture of the inputs people actually have, next to the Real-ESRGAN second-order pipeline.

Each image of a batch draws one case (``MIXTURE_CASES``):

- ``clean``: antialiased downscaling only (MATLAB bicubic or a box filter, as image editors and ``cv2.INTER_AREA``);
- ``jpeg``: clean downscaling, then a real libjpeg round trip (4:2:0 chroma, standard tables) at a random quality;
- ``blur_noise``: the paper's isotropic Gaussian blur, bicubic downscaling, colour or grey Gaussian noise;
- ``camera``: mild blur, downscaling, mild noise, then JPEG: what a phone or a web page hands over;
- ``realworld``: :func:`kdsr.degradations.realworld.degrade`.

A model trained on the real-world pipeline alone never sees a clean or mildly compressed image and learns to smooth
everything; mixing the easy cases in lets the encoder tell them apart. Every draw comes from the caller's generator.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

import kdsr.degradations.realworld as realworld
from kdsr.degradations.classic import blur, quantize
from kdsr.degradations.jpeg import libjpeg
from kdsr.degradations.kernels import isotropic_gaussian
from kdsr.degradations.resize import imresize

MIXTURE_CASES = ("clean", "jpeg", "blur_noise", "camera", "realworld")
#: Columns of the labels :func:`degrade_with_labels` returns.
LABEL_FIELDS = ("case", "blur", "noise", "jpeg_quality")


@dataclasses.dataclass(frozen=True)
class MixtureConfig:
    """Case probabilities (in ``MIXTURE_CASES`` order) and the ranges each case draws from (uniformly).

    Blur widths are Gaussian sigmas in HR pixels; noise levels standard deviations on the 0-255 scale.
    """

    probs: tuple[float, ...] = (0.2, 0.2, 0.2, 0.2, 0.2)
    box_prob: float = 0.3  # clean/jpeg/camera cases: box-filter downscaling instead of bicubic
    jpeg_range: tuple[float, float] = (30.0, 95.0)
    blur_range: tuple[float, float] = (0.2, 3.0)
    noise_range: tuple[float, float] = (0.0, 20.0)
    gray_noise_prob: float = 0.4
    camera_blur_range: tuple[float, float] = (0.2, 1.5)
    camera_noise_range: tuple[float, float] = (0.0, 8.0)
    camera_jpeg_range: tuple[float, float] = (60.0, 95.0)
    realworld: realworld.RealWorldConfig = dataclasses.field(default_factory=realworld.RealWorldConfig)

    def __post_init__(self) -> None:
        if len(self.probs) != len(MIXTURE_CASES):
            raise ValueError(f"probs must have {len(MIXTURE_CASES)} values ({', '.join(MIXTURE_CASES)})")
        if any(p < 0 for p in self.probs) or not math.isclose(sum(self.probs), 1.0, abs_tol=1e-6):
            raise ValueError(f"probs must be non-negative and sum to 1, got {self.probs}")
        for name in ("box_prob", "gray_noise_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1]")
        for name in ("jpeg_range", "camera_jpeg_range"):
            low, high = getattr(self, name)
            if not 1 <= low <= high <= 100:
                raise ValueError(f"{name} must be (low, high) within [1, 100], got {(low, high)}")
        for name in ("blur_range", "noise_range", "camera_blur_range", "camera_noise_range"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(f"{name} must be (low, high) with 0 <= low <= high, got {(low, high)}")


def downscale(hr: torch.Tensor, scale: int, box: torch.Tensor) -> torch.Tensor:
    """Antialiased 1/scale downscaling: a box filter (area average) for images with ``box`` True, MATLAB bicubic for
    the others."""
    out = imresize(hr, 1 / scale)
    if box.any():
        out[box] = F.avg_pool2d(hr[box], scale)
    return out


def _gaussian_noise(x: torch.Tensor, sigma: torch.Tensor, gray: torch.Tensor, generator) -> torch.Tensor:
    """Per-image N(0, sigma/255): one field on all channels where ``gray``, independent colour noise elsewhere."""
    b, c, h, w = x.shape
    noise = torch.randn((b, c, h, w), generator=generator, device=x.device, dtype=x.dtype)
    noise = torch.where(gray.view(b, 1, 1, 1), noise[:, :1].expand(b, c, h, w), noise)
    return x + noise * (sigma.to(x).view(b, 1, 1, 1) / 255)


def _case(name: str, hr: torch.Tensor, config: MixtureConfig, scale: int, generator):
    """(LR, labels) of one case for the whole batch; labels as :func:`degrade_with_labels`."""
    b = hr.shape[0]
    device = generator.device if generator is not None else hr.device
    index = MIXTURE_CASES.index(name)

    def uniform(bounds: tuple[float, float]) -> torch.Tensor:
        low, high = bounds
        return torch.rand(b, generator=generator, device=device) * (high - low) + low

    def coin(p: float) -> torch.Tensor:
        return (torch.rand(b, generator=generator, device=device) < p).to(hr.device)

    def labels(blur_sigma=0.0, noise=0.0, quality=100.0) -> torch.Tensor:
        columns = [torch.full((b,), float(index)), blur_sigma, noise, quality]
        return torch.stack([torch.as_tensor(c, dtype=torch.float32).cpu().expand(b) for c in columns], dim=1)

    if name == "realworld":
        unknown = float("nan")
        return realworld.degrade(hr, config.realworld, scale, generator), labels(unknown, unknown, unknown)
    if name in ("clean", "jpeg"):
        lr = quantize(downscale(hr, scale, coin(config.box_prob)))
        if name == "clean":
            return lr, labels()
        quality = uniform(config.jpeg_range)
        return libjpeg(lr, quality), labels(quality=quality.round())
    if name == "blur_noise":
        sigma, noise, gray = uniform(config.blur_range), uniform(config.noise_range), coin(config.gray_noise_prob)
        lr = imresize(blur(hr, isotropic_gaussian(sigma.cpu()).to(hr)), 1 / scale)
        return quantize(_gaussian_noise(lr, noise, gray, generator)), labels(sigma, noise)
    sigma, noise, gray = uniform(config.camera_blur_range), uniform(config.camera_noise_range), coin(0.5)
    quality, box = uniform(config.camera_jpeg_range), coin(config.box_prob)
    lr = downscale(blur(hr, isotropic_gaussian(sigma.cpu()).to(hr)), scale, box)
    return libjpeg(_gaussian_noise(lr, noise, gray, generator).clamp(0, 1), quality), labels(
        sigma, noise, quality.round()
    )


def degrade(hr: torch.Tensor, config: MixtureConfig = MixtureConfig(), scale: int = 4, generator=None) -> torch.Tensor:
    """(B, 3, H, W) HR in [0, 1] -> (B, 3, H//scale, W//scale) LR on the 8-bit grid, one random case per image."""
    return degrade_with_labels(hr, config, scale, generator)[0]


def degrade_with_labels(
    hr: torch.Tensor, config: MixtureConfig = MixtureConfig(), scale: int = 4, generator=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`degrade` (the same draws) plus what each image went through, a (B, 4) float tensor on the CPU with
    columns ``LABEL_FIELDS``: the case's index in ``MIXTURE_CASES``, the HR blur sigma (0 when not blurred beyond the
    antialiasing), the noise level on the 0-255 scale (0: none) and the JPEG quality (100: not compressed). The
    real-world case's second-order draws have no such summary: NaN there."""
    device = generator.device if generator is not None else hr.device
    weights = torch.tensor(config.probs, dtype=torch.float64, device=device)
    cases = torch.multinomial(weights, hr.shape[0], replacement=True, generator=generator).cpu()
    out = torch.empty(
        (hr.shape[0], hr.shape[1], hr.shape[2] // scale, hr.shape[3] // scale), dtype=hr.dtype, device=hr.device
    )
    labels = torch.empty((hr.shape[0], len(LABEL_FIELDS)))
    for index, name in enumerate(MIXTURE_CASES):
        members = (cases == index).nonzero().flatten()
        if len(members):
            out[members.to(hr.device)], labels[members] = _case(
                name, hr[members.to(hr.device)], config, scale, generator
            )
    return out, labels
