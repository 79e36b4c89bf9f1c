"""The classic degradation of the paper (Eq. 1) exactly as the official code applies it (KDSR-classic
``utils/util2.py``, ``SRMDPreprocessing``):

    LR = quantize8( bicubic_down_s( HR (*) k ) + n )

with a 21x21 Gaussian k applied by reflect-padded cross-correlation, MATLAB-style antialiased bicubic
downsampling (replicate borders by default), colour Gaussian noise on the [0, 255] scale added after downsampling,
and rounding to the 8-bit grid. Every random draw comes from a caller-supplied ``torch.Generator``.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

from kdsr.degradations.kernels import anisotropic_gaussian, isotropic_gaussian
from kdsr.degradations.resize import imresize

KERNEL_SIZE = 21


def blur(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Cross-correlate (B, C, H, W) images with one (k, k) kernel or one kernel per image (B, k, k); reflect pad
    (replicate for images not larger than the kernel radius)."""
    b, c, h, w = images.shape
    if kernels.dim() == 2:
        kernels = kernels[None]
    k = kernels.shape[-1]
    pad = k // 2
    kernels = kernels.to(images.dtype).expand(b, k, k) if kernels.shape[0] == 1 else kernels.to(images.dtype)
    # Reflect padding needs pad < size; images smaller than the kernel (tiny crops) fall back to replicate.
    padded = F.pad(images, (pad, pad, pad, pad), mode="reflect" if pad < min(h, w) else "replicate")
    weight = kernels[:, None].repeat_interleave(c, dim=0)  # (B*C, 1, k, k)
    out = F.conv2d(padded.reshape(1, b * c, h + 2 * pad, w + 2 * pad), weight, groups=b * c)
    return out.reshape(b, c, h, w)


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Round [0, 1] values to the 8-bit grid (clamped; half to even, as ``torch.round``)."""
    return torch.round(images.clamp(0, 1) * 255) / 255


def degrade(
    hr: torch.Tensor,
    kernels: torch.Tensor | None,
    scale: int = 4,
    noise: float | torch.Tensor = 0.0,
    generator: torch.Generator | None = None,
    border: str = "replicate",
) -> torch.Tensor:
    """Blur (skipped when ``kernels`` is None), downsample by ``scale``, add colour noise of standard deviation
    ``noise`` (0-255 units; scalar or per image (B,)) and quantise. ``hr`` is (B, 3, H, W) in [0, 1] with H, W
    divisible by ``scale``."""
    if hr.shape[-1] % scale or hr.shape[-2] % scale:
        raise ValueError(f"HR size {tuple(hr.shape[-2:])} must be divisible by the scale {scale}")
    x = blur(hr, kernels) if kernels is not None else hr
    lr = imresize(x, 1 / scale, border)
    noise = torch.as_tensor(noise, dtype=lr.dtype, device=lr.device).reshape(-1, 1, 1, 1)
    if (noise > 0).any():
        lr = lr + torch.randn(lr.shape, generator=generator, device=lr.device, dtype=lr.dtype) * noise / 255
    return quantize(lr)


@dataclasses.dataclass(frozen=True)
class ClassicSampling:
    """Training distribution of the classic setting (paper Sec. 4.1; official defaults).

    ``mode`` "iso": sigma ~ U[sig_min, sig_max); "aniso": theta ~ U[0, pi), lambda1, lambda2 ~ U[lambda_min,
    lambda_max) independently. Noise level ~ U[0, 1) * noise_max. ``per_image`` False draws one kernel and one
    noise level for the whole batch (the official behaviour), True one per image.
    """

    mode: str = "iso"
    sig_min: float = 0.2
    sig_max: float = 4.0
    lambda_min: float = 0.2
    lambda_max: float = 4.0
    noise_max: float = 0.0
    per_image: bool = False
    kernel_size: int = KERNEL_SIZE

    def __post_init__(self) -> None:
        if self.mode not in ("iso", "aniso"):
            raise ValueError(f"mode must be 'iso' or 'aniso', got {self.mode!r}")


def sample_kernels(
    sampling: ClassicSampling, batch: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, dict]:
    """Random kernels (n, k, k) with n = batch (per image) or 1, and the drawn parameters.

    RNG order as in the official code: [sigma] or [theta, lambda1, lambda2].
    """
    n = batch if sampling.per_image else 1
    device = generator.device if generator is not None else None

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(n, generator=generator, device=device) * (hi - lo) + lo

    if sampling.mode == "iso":
        sigma = uniform(sampling.sig_min, sampling.sig_max)
        return isotropic_gaussian(sigma, sampling.kernel_size), {"sigma": sigma}
    theta = uniform(0, math.pi)
    lambda1 = uniform(sampling.lambda_min, sampling.lambda_max)
    lambda2 = uniform(sampling.lambda_min, sampling.lambda_max)
    params = {"theta": theta, "lambda1": lambda1, "lambda2": lambda2}
    return anisotropic_gaussian(lambda1, lambda2, theta, sampling.kernel_size), params


def random_degrade(
    hr: torch.Tensor, sampling: ClassicSampling, scale: int = 4, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Training-time degradation: random kernel(s), random noise level(s), then :func:`degrade`."""
    return random_degrade_with_labels(hr, sampling, scale, generator)[0]


#: The mixture's case index that the classic degradation (blur, noise) falls under, for labels in its format.
BLUR_NOISE_CASE = 2


def random_degrade_with_labels(
    hr: torch.Tensor, sampling: ClassicSampling, scale: int = 4, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`random_degrade` (the same draws) plus labels in the format of
    :func:`kdsr.degradations.mixture.degrade_with_labels` ((B, 4): case, blur sigma, noise level, JPEG quality):
    the case is always blur + noise, the blur the iso sigma (aniso: the geometric mean of lambda1 and lambda2), no
    JPEG (quality 100)."""
    b = hr.shape[0]
    kernels, params = sample_kernels(sampling, b, generator)
    noise = torch.zeros(1)
    if sampling.noise_max > 0:
        n = b if sampling.per_image else 1
        device = generator.device if generator is not None else None
        noise = torch.rand(n, generator=generator, device=device) * sampling.noise_max
    lr = degrade(hr, kernels.to(hr.device), scale, noise, generator)
    width = params["sigma"] if "sigma" in params else (params["lambda1"] * params["lambda2"]).sqrt()
    columns = [
        torch.full((b,), float(BLUR_NOISE_CASE)),
        width.cpu().expand(b),
        noise.cpu().expand(b),
        torch.full((b,), 100.0),
    ]
    return lr, torch.stack([c.float() for c in columns], dim=1)
