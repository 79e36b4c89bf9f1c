"""KDSR networks: the SR generator, the KD-IDE encoders, and the student/teacher wrappers.

Exactly the computation of the official code (KDSR-classic ``model_ST/blindsr.py``, ``model_TA/blindsr.py``,
``model/common.py``), with the official module names so that official state dicts load without renaming: student
``G.*`` + ``E_st.*``, teacher ``G.*`` + ``E.*``.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, NamedTuple, overload

import torch
import torch.nn.functional as F
from torch import nn

from kdsr.models.blocks import DCRBGroup, MeanShift, ResBlock, conv3x3, lrelu, upsampler


class IDR(NamedTuple):
    """Implicit degradation representation: ``d`` (B, C) conditions the generator; ``d_prime`` (B, 4C) is the
    uncompressed vector that the student learns to match (the paper's D and D')."""

    d: torch.Tensor
    d_prime: torch.Tensor


#: Upper bounds of the architecture sizes (the largest official network, KDSR_S-GAN, is 128 / 42 / 6): a file that
#: claims more is refused before anything is built.
MAX_SIZES = {"n_feats": 512, "n_blocks": 512, "n_resblocks": 64}
#: Scales the sub-pixel upsampler supports.
SCALES = (2, 3, 4, 8)
#: KD-IDE variants: ``official`` (raw pixels in, mean of rectified features pooled: the paper's, loads official
#: checkpoints) and ``energy`` (each image standardised at the input, the log of the features' mean energy pooled;
#: the teacher sees the LR and the residual LR - box(HR) instead of the pixel-unshuffled HR). See :class:`KDIDE`.
ENCODERS = ("official", "energy")
#: Added to the standard deviation of an image before it divides it (a flat image stays finite): about 2.5 levels.
STD_FLOOR = 0.01
#: Added to the pooled energy before its log.
ENERGY_FLOOR = 1e-4


@dataclasses.dataclass(frozen=True)
class KDSRConfig:
    """Architecture hyper-parameters: feature width C, IDR-DCRB count N, encoder ResBlock count R, SR scale."""

    n_feats: int
    n_blocks: int
    n_resblocks: int
    scale: int = 4
    teacher: bool = False
    encoder: str = "official"

    def __post_init__(self) -> None:
        for name in ("n_feats", "n_blocks", "n_resblocks"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (1 if name != "n_resblocks" else 0):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
            if value > MAX_SIZES[name]:
                raise ValueError(f"{name}={value} is beyond any KDSR network (at most {MAX_SIZES[name]})")
        if not isinstance(self.teacher, bool):
            raise ValueError(f"teacher must be true or false, got {self.teacher!r}")
        if self.scale not in SCALES:
            raise ValueError(f"scale must be 2, 3, 4 or 8, got {self.scale!r}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}, got {self.encoder!r}")

    @property
    def encoder_in_channels(self) -> int:
        """3 for the student (LR only); the teacher: 3 + 3*s^2 (LR + pixel-unshuffled HR) for the official encoder,
        6 (LR + residual LR - box(HR)) for the energy encoder."""
        if not self.teacher:
            return 3
        return 6 if self.encoder == "energy" else 3 + 3 * self.scale**2


class KDSRGenerator(nn.Module):
    """The SR network ``G(x, d)``: mean shift, head conv, N IDR-DCRBs, conv, global residual, upsampler, tail conv."""

    def __init__(self, *, n_feats: int, n_blocks: int, scale: int) -> None:
        super().__init__()
        self.scale = scale
        self.sub_mean = MeanShift(-1)
        self.add_mean = MeanShift(+1)
        self.head = nn.Sequential(conv3x3(3, n_feats))
        self.body = nn.Sequential(DCRBGroup(n_feats, n_blocks), conv3x3(n_feats, n_feats))
        self.tail = nn.Sequential(upsampler(scale, n_feats), conv3x3(n_feats, 3))
        #: LR pixels of context that one output pixel depends on (used to size tile padding).
        self.receptive_radius = 2 * n_blocks + 4

    def forward(self, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        h = self.head(self.sub_mean(x))
        r = self.body[1](self.body[0](h, d)) + h
        return self.add_mean(self.tail(r))


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


def pack_teacher_input(lr: torch.Tensor, hr: torch.Tensor, scale: int, encoder: str = "official") -> torch.Tensor:
    """The teacher encoder's input. ``official``: LR (channels 0-2) then PixelUnshuffle(scale) of the HR,
    colour-major, i.e. channel ``3 + c*s*s + i*s + j`` holds ``hr[c, i::s, j::s]``. ``energy``: the standardised LR
    and the residual LR - (s x s mean of the HR), divided by the same standard deviation: the residual is what the
    degradation did, handed to the encoder instead of 48 raw channels it would have to relate to the LR itself."""
    if hr.shape[-2:] != (lr.shape[-2] * scale, lr.shape[-1] * scale):
        raise ValueError(f"HR size {tuple(hr.shape[-2:])} must be {scale}x the LR size {tuple(lr.shape[-2:])}")
    if encoder == "energy":
        mean, std = _mean_and_scale(lr)
        residual = lr.float() - F.avg_pool2d(hr.float(), scale)
        return torch.cat([(lr.float() - mean) / std, residual / std], dim=1).to(lr.dtype)
    return torch.cat([lr, F.pixel_unshuffle(hr, scale)], dim=1)


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """What a loaded network supports, for hosts that run it (as spandrel's model descriptors say): half and
    bfloat16 precision, whether the image must be seen whole for its IDR (a host must not cut it into independent
    tiles; kdsr tiles with one IDR itself), and the multiple the input size must be (1: any size)."""

    supports_half: bool = True
    supports_bfloat16: bool = True
    global_idr: bool = True
    size_multiple: int = 1


class _KDSRBase(nn.Module):
    """Shared parts of the student and the teacher: the generator and the config."""

    G: KDSRGenerator
    #: every KDSR network: any input size, the IDR pooled over the whole image; fp16 (the CUDA default) and bf16
    capabilities = Capabilities()

    def __init__(self, config: KDSRConfig) -> None:
        super().__init__()
        self.config = config
        self.G = KDSRGenerator(n_feats=config.n_feats, n_blocks=config.n_blocks, scale=config.scale)

    @property
    def scale(self) -> int:
        return self.config.scale

    def super_resolve(self, lr: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """Run the generator on ``lr`` with a given compact IDR ``d`` (B, C)."""
        return self.G(lr, d)


class KDSRStudent(_KDSRBase):
    """KDSR_S: estimates the IDR from the LR alone (KD-IDE_S) and super-resolves with it.

    ``model(lr)`` maps (B, 3, h, w) in [0, 1] to (B, 3, s*h, s*w); ``model(lr, return_idr=True)`` also returns the
    :class:`IDR`.
    """

    def __init__(self, config: KDSRConfig) -> None:
        if config.teacher:
            raise ValueError("KDSRStudent needs a student config (teacher=False)")
        super().__init__(config)
        energy = config.encoder == "energy"
        self.E_st = KDIDE(in_channels=3, n_feats=config.n_feats, n_resblocks=config.n_resblocks, energy=energy,
                          standardise_input=energy)  # fmt: skip

    @property
    def encoder(self) -> KDIDE:
        return self.E_st

    def encode(self, lr: torch.Tensor) -> IDR:
        return self.E_st(lr)

    @overload
    def forward(self, lr: torch.Tensor, return_idr: Literal[False] = False) -> torch.Tensor: ...
    @overload
    def forward(self, lr: torch.Tensor, return_idr: Literal[True]) -> tuple[torch.Tensor, IDR]: ...

    def forward(self, lr: torch.Tensor, return_idr: bool = False) -> torch.Tensor | tuple[torch.Tensor, IDR]:
        idr = self.E_st(lr)
        sr = self.G(lr, idr.d)
        return (sr, idr) if return_idr else sr


class KDSRTeacher(_KDSRBase):
    """KDSR_T: estimates the IDR from LR and HR together (KD-IDE_T). Called as ``model(lr, hr)``."""

    def __init__(self, config: KDSRConfig) -> None:
        if not config.teacher:
            raise ValueError("KDSRTeacher needs a teacher config (teacher=True)")
        super().__init__(config)
        self.E = KDIDE(
            in_channels=config.encoder_in_channels,
            n_feats=config.n_feats,
            n_resblocks=config.n_resblocks,
            energy=config.encoder == "energy",
        )

    @property
    def encoder(self) -> KDIDE:
        return self.E

    def encode(self, lr: torch.Tensor, hr: torch.Tensor) -> IDR:
        return self.E(pack_teacher_input(lr, hr, self.scale, self.config.encoder))

    @overload
    def forward(
        self, lr: torch.Tensor, hr: torch.Tensor, return_idr: Literal[False] = False, idr_groups: int = 1
    ) -> torch.Tensor: ...
    @overload
    def forward(
        self, lr: torch.Tensor, hr: torch.Tensor, return_idr: Literal[True], idr_groups: int = 1
    ) -> tuple[torch.Tensor, IDR]: ...

    def forward(
        self, lr: torch.Tensor, hr: torch.Tensor, return_idr: bool = False, idr_groups: int = 1
    ) -> torch.Tensor | tuple[torch.Tensor, IDR]:
        """``idr_groups`` > 1: consecutive groups of that many images (which share one degradation) are each
        super-resolved with their group's mean IDR, so that the IDR can only carry what the group has in common."""
        idr = self.encode(lr, hr)
        d = idr.d
        if idr_groups > 1:
            b, c = d.shape
            d = d.reshape(b // idr_groups, idr_groups, c).mean(dim=1, keepdim=True).expand(-1, idr_groups, -1)
            d = d.reshape(b, c)
        sr = self.G(lr, d)
        return (sr, idr) if return_idr else sr
