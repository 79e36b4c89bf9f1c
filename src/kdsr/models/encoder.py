"""The KD-IDE encoders (the paper's implicit degradation estimators): the conv stack, pooling and MLPs that map an
LR image (student) or an LR + HR pair (teacher) to the IDR, in the official form and the energy form.

Exactly the official computation for ``official`` (KDSR-classic ``model_ST/blindsr.py``, ``model_TA/blindsr.py``), with
the official module names (``E``, ``mlp``, ``compress``), so official state dicts load without renaming.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from kdsr.architecture import ENERGY_FLOOR
from kdsr.constants import STD_FLOOR
from kdsr.models.blocks import ResBlock, conv3x3, lrelu


class IDR(NamedTuple):
    """Implicit degradation representation: ``d`` (B, C) conditions the generator; ``d_prime`` (B, 4C) is the
    uncompressed vector that the student learns to match (the paper's D and D')."""

    d: torch.Tensor
    d_prime: torch.Tensor


def _mean_and_scale(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's mean and standard deviation plus :data:`STD_FLOOR` (over C, H, W), shaped (B, 1, 1, 1)."""
    flat = x.float().flatten(1)
    return flat.mean(dim=1)[:, None, None, None], flat.std(dim=1)[:, None, None, None] + STD_FLOOR


def standardise(x: torch.Tensor) -> torch.Tensor:
    """Each image of (B, C, H, W) minus its mean, over its standard deviation (over C, H, W; plus :data:`STD_FLOOR`):
    the energy encoder's input, so that image contrast and brightness are not confused with the degradation."""
    mean, scale = _mean_and_scale(x)
    return ((x.float() - mean) / scale).to(x.dtype)


class KDIDE(nn.Module):
    """KD-IDE encoder: conv stack at full LR resolution, global pool, ``mlp`` -> D', ``compress`` -> D.

    ``official``: the raw [0, 1] input (no mean subtraction), 3 channels for the student, LR + pixel-unshuffled HR for
    the teacher; the features' spatial mean is pooled. ``energy``: the student's image is standardised first
    (:meth:`prepare`), and the log of the features' mean square is pooled. A degradation changes the *energy* of an
    image's fine detail relative to its coarse content; a log of energies turns those ratios into differences the
    linear layers read directly, where a mean of rectified features of raw pixels mixes them with contrast and
    content (``benchmarks/idr_learnability.py`` measures both). The energy encoder carries a one-element ``energy``
    buffer, so that its state dict says which encoder it needs (as spandrel detects architectures by their keys).
    """

    def __init__(self, *, in_channels: int, n_feats: int, n_resblocks: int, energy: bool = False,
                 standardise_input: bool = False) -> None:  # fmt: skip
        super().__init__()
        c = n_feats
        layers: list[nn.Module] = [conv3x3(in_channels, c), lrelu()]
        layers += [ResBlock(c) for _ in range(n_resblocks)]
        layers += [conv3x3(c, 2 * c), lrelu(), conv3x3(2 * c, 2 * c), lrelu(), conv3x3(2 * c, 4 * c), lrelu()]
        layers.append(nn.AdaptiveAvgPool2d(1))
        self.E = nn.Sequential(*layers)
        self.mlp = nn.Sequential(nn.Linear(4 * c, 4 * c), lrelu(), nn.Linear(4 * c, 4 * c), lrelu())
        self.compress = nn.Sequential(nn.Linear(4 * c, c), lrelu())
        self.energy_pool = energy
        self.standardise_input = standardise_input
        if energy:
            self.register_buffer("energy", torch.ones(1))
        #: Input pixels of context that one pre-pool feature depends on (every conv is 3x3).
        self.receptive_radius = 2 * n_resblocks + 4

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The whole image as the conv stack sees it (standardised for the energy student; else unchanged). Tiled
        runs apply it once to the whole image, then :meth:`feature_map` tile by tile."""
        return standardise(x) if self.standardise_input else x

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The (B, 4C, H, W) map whose spatial mean is pooled (the features, or their squares for the energy
        encoder) of a :meth:`prepare`-d input; exposed so that it can be computed in tiles."""
        features = self.E[:-1](x)
        return features.float().square() if self.energy_pool else features

    def from_pooled(self, pooled: torch.Tensor) -> IDR:
        """The IDR from the pooled (B, 4C) map."""
        if self.energy_pool:
            pooled = torch.log(pooled.float() + ENERGY_FLOOR).to(self.compress[0].weight.dtype)
        d_prime = self.mlp(pooled)
        return IDR(self.compress(d_prime), d_prime)

    def forward(self, x: torch.Tensor) -> IDR:
        x = self.prepare(x)
        if self.energy_pool:
            return self.from_pooled(self.feature_map(x).mean(dim=(2, 3)))
        return self.from_pooled(self.E(x).flatten(1))


def pack_teacher_input(lr: torch.Tensor, hr: torch.Tensor, scale: int, residual: bool = False) -> torch.Tensor:
    """The teacher encoder's input. Official: LR (channels 0-2) then PixelUnshuffle(scale) of the HR,
    colour-major, i.e. channel ``3 + c*s*s + i*s + j`` holds ``hr[c, i::s, j::s]``. ``residual`` (the energy
    variant's): the standardised LR and the residual LR - (s x s mean of the HR), divided by the same standard
    deviation: the residual is what the degradation did, handed to the encoder instead of 48 raw channels it would
    have to relate to the LR itself."""
    if hr.shape[-2:] != (lr.shape[-2] * scale, lr.shape[-1] * scale):
        raise ValueError(f"HR size {tuple(hr.shape[-2:])} must be {scale}x the LR size {tuple(lr.shape[-2:])}")
    if residual:
        mean, std = _mean_and_scale(lr)
        residual = lr.float() - F.avg_pool2d(hr.float(), scale)
        return torch.cat([(lr.float() - mean) / std, residual / std], dim=1).to(lr.dtype)
    return torch.cat([lr, F.pixel_unshuffle(hr, scale)], dim=1)
