"""Building blocks of the KDSR networks.

Module and attribute names follow the official code so that our ``state_dict`` keys are the official ones
(``head.0``, ``body.0.body.{i}.da_conv1.kernel.0``, ``E.{i}.body.0`` ...). Every activation is LeakyReLU(0.1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdsr.architecture import LRELU_SLOPE

#: RGB mean of DIV2K, subtracted before and added after the SR generator (rgb_range = 1).
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    """3x3 convolution, stride 1, zero padding 1, with bias (the official ``default_conv``)."""
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=True)


def lrelu() -> nn.LeakyReLU:
    return nn.LeakyReLU(LRELU_SLOPE, inplace=True)


class MeanShift(nn.Module):
    """Fixed 1x1 convolution that adds ``sign * mean`` to each RGB channel.

    The official code stores these as frozen parameters; here they are persistent buffers (same keys, same values),
    so a model has 24 fewer parameters than the official count but an identical ``state_dict``.
    """

    def __init__(self, sign: int, mean: tuple[float, float, float] = DIV2K_RGB_MEAN) -> None:
        super().__init__()
        self.register_buffer("weight", torch.eye(3).view(3, 3, 1, 1))
        self.register_buffer("bias", sign * torch.tensor(mean, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias)


class IDRDynamicConv(nn.Module):
    """IDR-DDC: a depthwise 3x3 convolution whose kernels are generated from the IDR ``d`` (B, C).

    The generator is Linear(C, C) -> LeakyReLU -> Linear(C, 9C), both without bias; the kernel of sample b and
    channel c is ``out[b, 9c:9c+9]`` read row-major. It is applied as a cross-correlation with zero padding 1.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.kernel = nn.Sequential(
            nn.Linear(channels, channels, bias=False),
            lrelu(),
            nn.Linear(channels, 9 * channels, bias=False),
        )

    def kernels(self, d: torch.Tensor) -> torch.Tensor:
        """Depthwise kernels for each sample, shape (B*C, 1, 3, 3)."""
        return self.kernel(d).reshape(-1, 1, 3, 3)

    def forward(self, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        if b == 1:  # plain depthwise conv: no reshape, so a channels_last input stays channels_last (no copy)
            return F.conv2d(x, self.kernels(d), padding=1, groups=c)
        out = F.conv2d(x.reshape(1, b * c, h, w), self.kernels(d), padding=1, groups=b * c)
        return out.reshape(b, c, h, w)


class IDRDCRB(nn.Module):
    """IDR-DCRB: ``x + conv1(LeakyReLU(IDR-DDC(x, d)))``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.da_conv1 = IDRDynamicConv(channels)
        self.conv1 = conv3x3(channels, channels)
        self.act = lrelu()

    def forward(self, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(self.act(self.da_conv1(x, d)))


class DCRBGroup(nn.Module):
    """The chain of IDR-DCRBs, each conditioned on the same IDR (official ``DAG``; no trailing conv)."""

    def __init__(self, channels: int, n_blocks: int) -> None:
        super().__init__()
        self.body = nn.ModuleList(IDRDCRB(channels) for _ in range(n_blocks))

    def forward(self, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        for block in self.body:
            x = block(x, d)
        return x


class ResBlock(nn.Module):
    """Plain residual block of the encoder: ``x + conv(LeakyReLU(conv(x)))``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv3x3(channels, channels), lrelu(), conv3x3(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def upsampler(scale: int, channels: int) -> nn.Sequential:
    """Sub-pixel upsampler without activation: [conv C->4C, PixelShuffle(2)] per factor 2, or conv C->9C + x3."""
    layers: list[nn.Module] = []
    if scale in (2, 4, 8):
        for _ in range(scale.bit_length() - 1):
            layers += [conv3x3(channels, 4 * channels), nn.PixelShuffle(2)]
    elif scale == 3:
        layers += [conv3x3(channels, 9 * channels), nn.PixelShuffle(3)]
    else:
        raise ValueError(f"unsupported scale {scale}; KDSR supports 2, 3, 4 and 8")
    return nn.Sequential(*layers)
