"""KDSR (Xia et al., "Knowledge Distillation based Degradation Estimation for Blind Super-Resolution", ICLR 2023):
the student network, which estimates an implicit degradation representation (IDR) from the LR image with its
KD-IDE encoder and super-resolves with IDR-DCRB blocks whose depthwise 3x3 kernels are generated from it.

Module names are the official code's (``G.*``, ``E_st.*``), so official student checkpoints load as they are.
``energy=True`` is the encoder variant of the kdsr package (https://pypi.org/project/kdsr/): the input standardised,
the log of the features' mean square pooled; its state dict carries a one-element ``E_st.energy`` buffer.
Written for spandrel by the kdsr authors (MIT).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spandrel.util import store_hyperparameters

RGB_MEAN = (
    0.4488,
    0.4371,
    0.4040,
)  # DIV2K, subtracted before and added after the generator
STD_FLOOR = 0.01  # added to the standard deviation the energy encoder divides by
ENERGY_FLOOR = 1e-4  # added to the pooled energy before its log


def _conv(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1)


def _act() -> nn.LeakyReLU:
    return nn.LeakyReLU(0.1, inplace=True)


class MeanShift(nn.Module):
    def __init__(self, sign: int) -> None:
        super().__init__()
        self.register_buffer("weight", torch.eye(3).view(3, 3, 1, 1))
        self.register_buffer("bias", sign * torch.tensor(RGB_MEAN))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias)


class DynamicConv(nn.Module):
    """A depthwise 3x3 convolution whose kernels are generated from the IDR ``d`` (B, C)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.kernel = nn.Sequential(
            nn.Linear(channels, channels, bias=False),
            _act(),
            nn.Linear(channels, 9 * channels, bias=False),
        )

    def forward(self, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        kernels = self.kernel(d).reshape(-1, 1, 3, 3)
        return F.conv2d(
            x.reshape(1, b * c, h, w), kernels, padding=1, groups=b * c
        ).reshape(b, c, h, w)


class DCRB(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.da_conv1 = DynamicConv(channels)
        self.conv1 = _conv(channels, channels)
        self.act = _act()

    def forward(self, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(self.act(self.da_conv1(x, d)))


class DCRBGroup(nn.Module):
    def __init__(self, channels: int, n_blocks: int) -> None:
        super().__init__()
        self.body = nn.ModuleList(DCRB(channels) for _ in range(n_blocks))

    def forward(self, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        for block in self.body:
            x = block(x, d)
        return x


class ResBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv(channels, channels), _act(), _conv(channels, channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _upsampler(scale: int, channels: int) -> nn.Sequential:
    if scale == 3:
        return nn.Sequential(_conv(channels, 9 * channels), nn.PixelShuffle(3))
    layers: list[nn.Module] = []
    for _ in range(scale.bit_length() - 1):
        layers += [_conv(channels, 4 * channels), nn.PixelShuffle(2)]
    return nn.Sequential(*layers)


class Generator(nn.Module):
    def __init__(self, n_feats: int, n_blocks: int, scale: int) -> None:
        super().__init__()
        self.sub_mean, self.add_mean = MeanShift(-1), MeanShift(+1)
        self.head = nn.Sequential(_conv(3, n_feats))
        self.body = nn.Sequential(DCRBGroup(n_feats, n_blocks), _conv(n_feats, n_feats))
        self.tail = nn.Sequential(_upsampler(scale, n_feats), _conv(n_feats, 3))

    def forward(self, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        h = self.head(self.sub_mean(x))
        return self.add_mean(self.tail(self.body[1](self.body[0](h, d)) + h))


class Encoder(nn.Module):
    """KD-IDE_S: convolutions at the LR resolution, a global pool, ``mlp`` -> D' (4C), ``compress`` -> D (C)."""

    def __init__(self, n_feats: int, n_resblocks: int, energy: bool) -> None:
        super().__init__()
        c = n_feats
        layers: list[nn.Module] = [
            _conv(3, c),
            _act(),
            *(ResBlock(c) for _ in range(n_resblocks)),
        ]
        layers += [
            _conv(c, 2 * c),
            _act(),
            _conv(2 * c, 2 * c),
            _act(),
            _conv(2 * c, 4 * c),
            _act(),
        ]
        self.E = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1))
        self.mlp = nn.Sequential(
            nn.Linear(4 * c, 4 * c), _act(), nn.Linear(4 * c, 4 * c), _act()
        )
        self.compress = nn.Sequential(nn.Linear(4 * c, c), _act())
        self.energy_pool = energy
        if energy:
            self.register_buffer("energy", torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.energy_pool:
            return self.compress(self.mlp(self.E(x).flatten(1)))
        flat = x.float().flatten(1)
        mean = flat.mean(dim=1)[:, None, None, None]
        std = flat.std(dim=1)[:, None, None, None] + STD_FLOOR
        features = self.E[:-1](((x.float() - mean) / std).to(x.dtype))
        pooled = torch.log(features.float().square().mean(dim=(2, 3)) + ENERGY_FLOOR)
        return self.compress(self.mlp(pooled.to(self.compress[0].weight.dtype)))


@store_hyperparameters()
class KDSR(nn.Module):
    """The KDSR student (defaults: KDSR_S-M of the paper): ``(B, 3, h, w)`` in [0, 1] -> ``(B, 3, scale h, scale w)``;
    the IDR is estimated from the whole input, so an image should not be cut into tiles that would each get their own."""

    hyperparameters: dict

    def __init__(
        self,
        *,
        n_feats: int = 64,
        n_blocks: int = 53,
        n_resblocks: int = 9,
        scale: int = 4,
        energy: bool = False,
    ) -> None:
        super().__init__()
        self.G = Generator(n_feats, n_blocks, scale)
        self.E_st = Encoder(n_feats, n_resblocks, energy)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.G(x, self.E_st(x))
