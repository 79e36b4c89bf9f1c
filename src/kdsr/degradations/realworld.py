"""Real-world second-order degradation (Real-ESRGAN, as configured by the KDSR-GAN option files; spec
official-gan.md section 4), as batched tensor functions driven by a ``torch.Generator``.

blur(k1) -> random resize -> Gaussian or Poisson noise -> JPEG -> [p=0.8] blur(k2) -> random resize -> noise ->
final stage in random order {resize to LR size + sinc filter + JPEG | JPEG + resize + sinc} -> 8-bit quantisation.
Per image: kernels, noise levels, grey-noise flags, JPEG qualities. Per batch (as in the official pipeline): resize
type/factor/mode, Gaussian-vs-Poisson choice, second-blur coin and final-stage order. The grey Gaussian noise field is
shared by the batch (a BasicSR quirk that the official pipeline has). Every default equals the option files.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

from kdsr.degradations.classic import blur, quantize
from kdsr.degradations.jpeg import jpeg
from kdsr.degradations.kernels import anisotropic_gaussian, generalized_gaussian, plateau, sinc

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES = ("area", "bilinear", "bicubic")
KERNEL_SIZE = 21


@dataclasses.dataclass(frozen=True)
class RealWorldConfig:
    """Every probability and range of the pipeline; defaults are those of the KDSR-GAN option files."""

    kernel_probs: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    blur_sigma2: tuple[float, float] = (0.2, 1.5)
    betag_range: tuple[float, float] = (0.5, 4.0)
    betap_range: tuple[float, float] = (1.0, 2.0)
    betag_range2: tuple[float, float] = (0.5, 4.0)
    betap_range2: tuple[float, float] = (1.0, 2.0)
    sinc_prob: float = 0.1
    sinc_prob2: float = 0.1
    final_sinc_prob: float = 0.8
    resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: tuple[float, float] = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5
    noise_range: tuple[float, float] = (1.0, 30.0)
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: tuple[float, float] = (30.0, 95.0)
    second_blur_prob: float = 0.8
    resize_prob2: tuple[float, float, float] = (0.3, 0.4, 0.3)
    resize_range2: tuple[float, float] = (0.3, 1.2)
    gaussian_noise_prob2: float = 0.5
    noise_range2: tuple[float, float] = (1.0, 25.0)
    poisson_scale_range2: tuple[float, float] = (0.05, 2.5)
    gray_noise_prob2: float = 0.4
    jpeg_range2: tuple[float, float] = (30.0, 95.0)

    def __post_init__(self) -> None:
        for name in ("kernel_probs", "resize_prob", "resize_prob2"):
            probs = getattr(self, name)
            if any(p < 0 for p in probs) or not math.isclose(sum(probs), 1.0, abs_tol=1e-6):
                raise ValueError(f"{name} must be non-negative and sum to 1, got {probs}")
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, float) and "_prob" in field.name:
                if not 0 <= value <= 1:
                    raise ValueError(f"{field.name} must be in [0, 1], got {value}")
            elif isinstance(value, tuple) and len(value) == 2 and value[0] > value[1]:
                raise ValueError(f"{field.name} must be (low, high), got {value}")


class _Draw:
    """Uniform and categorical draws from one generator, on its device."""

    def __init__(self, generator: torch.Generator | None) -> None:
        self.generator = generator
        self.device = generator.device if generator is not None else torch.device("cpu")

    def uniform(self, low: float, high: float, n: int = 1) -> torch.Tensor:
        return torch.rand(n, generator=self.generator, device=self.device) * (high - low) + low

    def coin(self, p: float) -> bool:
        return bool(self.uniform(0, 1).item() < p)

    def choice(self, probs, n: int = 1) -> torch.Tensor:
        weights = torch.tensor(probs, dtype=torch.float64, device=self.device)
        return torch.multinomial(weights, n, replacement=True, generator=self.generator)


def _kernel_size(draw: _Draw) -> int:
    """An odd kernel size in 7..21, uniformly."""
    return int(draw.choice([1] * 8).item()) * 2 + 7


def _beta(draw: _Draw, beta_range) -> torch.Tensor:
    """Shape parameter: with p 0.5 from [low, 1), else from [1, high) (so [1, 2] gives beta = 1 half the time)."""
    low, high = beta_range
    return (draw.uniform(low, 1) if draw.coin(0.5) else draw.uniform(1, high)).double().cpu()


def random_kernel(draw: _Draw, sigma_range, betag_range, betap_range, sinc_prob: float, probs) -> torch.Tensor:
    """One first- or second-degradation kernel: a random odd size in 7..21, sinc with ``sinc_prob``, else a mixed
    Gaussian-family kernel; zero-padded to 21x21."""
    size = _kernel_size(draw)
    if draw.coin(sinc_prob):
        cutoff = draw.uniform(math.pi / 3, math.pi) if size < 13 else draw.uniform(math.pi / 5, math.pi)
        return sinc(cutoff, size, pad_to=KERNEL_SIZE)[0]
    kind = KERNEL_TYPES[int(draw.choice(probs).item())]
    sigma_x = draw.uniform(*sigma_range)
    if kind.endswith("iso") and not kind.endswith("aniso"):
        sigma_y, theta = sigma_x, torch.zeros(1, device=draw.device)
    else:
        sigma_y, theta = draw.uniform(*sigma_range), draw.uniform(-math.pi, math.pi)
    sigma_x, sigma_y, theta = (v.double().cpu() for v in (sigma_x, sigma_y, theta))
    if kind.startswith("generalized"):
        kernel = generalized_gaussian(sigma_x, sigma_y, theta, _beta(draw, betag_range), size)
    elif kind.startswith("plateau"):
        kernel = plateau(sigma_x, sigma_y, theta, _beta(draw, betap_range), size)
    else:
        kernel = anisotropic_gaussian(sigma_x, sigma_y, theta, size)
    pad = (KERNEL_SIZE - size) // 2
    return F.pad(kernel[0].float(), (pad, pad, pad, pad))


def sample_kernels(batch: int, config: RealWorldConfig, generator: torch.Generator | None = None):
    """Per-image (kernel1, kernel2, final sinc kernel), each (B, 21, 21)."""
    draw = _Draw(generator)
    k1, k2, k3 = [], [], []
    for _ in range(batch):
        k1.append(
            random_kernel(
                draw, config.blur_sigma, config.betag_range, config.betap_range, config.sinc_prob, config.kernel_probs
            )
        )
        k2.append(
            random_kernel(
                draw,
                config.blur_sigma2,
                config.betag_range2,
                config.betap_range2,
                config.sinc_prob2,
                config.kernel_probs,
            )
        )
        if draw.coin(config.final_sinc_prob):
            size = _kernel_size(draw)
            k3.append(sinc(draw.uniform(math.pi / 3, math.pi), size, pad_to=KERNEL_SIZE)[0])
        else:
            pulse = torch.zeros(KERNEL_SIZE, KERNEL_SIZE)
            pulse[KERNEL_SIZE // 2, KERNEL_SIZE // 2] = 1
            k3.append(pulse)
    return torch.stack(k1), torch.stack(k2), torch.stack(k3)


def _resize_draw(draw: _Draw, probs, factor_range) -> tuple[float, str]:
    """A batch-level resize: (factor, mode) for kind up / down / keep drawn with ``probs``."""
    kind = int(draw.choice(probs).item())
    if kind == 0:
        factor = draw.uniform(1, factor_range[1]).item()
    elif kind == 1:
        factor = draw.uniform(factor_range[0], 1).item()
    else:
        factor = 1.0
    return factor, RESIZE_MODES[int(draw.choice([1, 1, 1]).item())]


def add_gaussian_noise(x: torch.Tensor, sigma: torch.Tensor, gray: torch.Tensor, generator=None) -> torch.Tensor:
    """Add N(0, sigma/255) noise per image; images with ``gray`` get one field on all channels (shared by the
    batch, as in BasicSR), the others independent colour noise; clamp to [0, 1]."""
    b, c, h, w = x.shape
    sigma = sigma.to(x).view(b, 1, 1, 1) / 255
    gray = gray.to(x).view(b, 1, 1, 1)
    colour = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype) * sigma
    field = torch.randn((h, w), generator=generator, device=x.device, dtype=x.dtype) * sigma
    return (x + colour * (1 - gray) + field * gray).clamp(0, 1)


def _poisson_noise(x: torch.Tensor, generator) -> torch.Tensor:
    q = torch.round(x.clamp(0, 1) * 255) / 255
    levels = torch.tensor([len(torch.unique(q[i])) for i in range(q.shape[0])], device=x.device, dtype=x.dtype)
    levels = (2 ** torch.ceil(torch.log2(levels))).view(-1, 1, 1, 1)
    return torch.poisson(q * levels, generator=generator) / levels - q


def add_poisson_noise(x: torch.Tensor, scale: torch.Tensor, gray: torch.Tensor, generator=None) -> torch.Tensor:
    """Add Poisson (shot) noise times ``scale`` per image, on the luma for ``gray`` images; clamp to [0, 1]."""
    b = x.shape[0]
    luma = 0.2989 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    noise_colour = _poisson_noise(x, generator)
    noise_gray = _poisson_noise(luma, generator).expand_as(x)
    gray = gray.to(x).view(b, 1, 1, 1)
    noise = noise_colour * (1 - gray) + noise_gray * gray
    return (x + noise * scale.to(x).view(b, 1, 1, 1)).clamp(0, 1)


def _random_noise(x: torch.Tensor, draw: _Draw, gaussian_prob, sigma_range, poisson_range, gray_prob):
    b = x.shape[0]
    gray = (draw.uniform(0, 1, b) < gray_prob).float()
    if draw.coin(gaussian_prob):
        return add_gaussian_noise(x, draw.uniform(*sigma_range, b), gray, draw.generator)
    return add_poisson_noise(x, draw.uniform(*poisson_range, b), gray, draw.generator)


def degrade(
    hr: torch.Tensor, config: RealWorldConfig = RealWorldConfig(), scale: int = 4, generator=None, kernels=None
) -> torch.Tensor:
    """Second-order degradation of a (B, 3, H, W) batch in [0, 1] to (B, 3, H//scale, W//scale) on the 8-bit grid.

    ``generator`` must live on ``hr``'s device; ``kernels`` (k1, k2, sinc) default to :func:`sample_kernels`.
    """
    draw = _Draw(generator)
    b, _, h, w = hr.shape
    k1, k2, k3 = kernels if kernels is not None else sample_kernels(b, config, generator)
    k1, k2, k3 = (k.to(hr) for k in (k1, k2, k3))
    out = blur(hr, k1)
    factor, mode = _resize_draw(draw, config.resize_prob, config.resize_range)
    out = F.interpolate(out, scale_factor=factor, mode=mode)
    out = _random_noise(
        out, draw, config.gaussian_noise_prob, config.noise_range, config.poisson_scale_range, config.gray_noise_prob
    )
    out = jpeg(out.clamp(0, 1), draw.uniform(*config.jpeg_range, b))
    if draw.coin(config.second_blur_prob):
        out = blur(out, k2)
    factor, mode = _resize_draw(draw, config.resize_prob2, config.resize_range2)  # relative to the LR size
    out = F.interpolate(out, size=(max(int(h / scale * factor), 1), max(int(w / scale * factor), 1)), mode=mode)
    out = _random_noise(
        out,
        draw,
        config.gaussian_noise_prob2,
        config.noise_range2,
        config.poisson_scale_range2,
        config.gray_noise_prob2,
    )
    final_mode = RESIZE_MODES[int(draw.choice([1, 1, 1]).item())]
    if draw.coin(0.5):
        out = F.interpolate(out, size=(h // scale, w // scale), mode=final_mode)
        out = blur(out, k3)
        out = jpeg(out.clamp(0, 1), draw.uniform(*config.jpeg_range2, b))
    else:
        out = jpeg(out.clamp(0, 1), draw.uniform(*config.jpeg_range2, b))
        out = F.interpolate(out, size=(h // scale, w // scale), mode=final_mode)
        out = blur(out, k3)
    return quantize(out)
