"""U-Net discriminator with spectral normalisation (Real-ESRGAN's, used by the KDSR-GAN stage)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm


class UNetDiscriminatorSN(nn.Module):
    """Per-pixel real/fake logits; keys ``conv0`` ... ``conv9`` as in the official checkpoints. Input sides must be
    multiples of 8."""

    def __init__(self, in_channels: int = 3, features: int = 64, skip_connection: bool = True) -> None:
        super().__init__()
        f = features
        self.skip_connection = skip_connection
        self.conv0 = nn.Conv2d(in_channels, f, 3, 1, 1)
        self.conv1 = spectral_norm(nn.Conv2d(f, 2 * f, 4, 2, 1, bias=False))
        self.conv2 = spectral_norm(nn.Conv2d(2 * f, 4 * f, 4, 2, 1, bias=False))
        self.conv3 = spectral_norm(nn.Conv2d(4 * f, 8 * f, 4, 2, 1, bias=False))
        self.conv4 = spectral_norm(nn.Conv2d(8 * f, 4 * f, 3, 1, 1, bias=False))
        self.conv5 = spectral_norm(nn.Conv2d(4 * f, 2 * f, 3, 1, 1, bias=False))
        self.conv6 = spectral_norm(nn.Conv2d(2 * f, f, 3, 1, 1, bias=False))
        self.conv7 = spectral_norm(nn.Conv2d(f, f, 3, 1, 1, bias=False))
        self.conv8 = spectral_norm(nn.Conv2d(f, f, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(f, 1, 3, 1, 1)

    def forward(self, x: torch.Tensor, return_features: bool = False):
        """Logits (B, 1, H, W); with ``return_features`` also the activations of every layer before the last, for
        feature matching."""

        def act(t: torch.Tensor) -> torch.Tensor:
            return F.leaky_relu(t, 0.2)

        def up(t: torch.Tensor) -> torch.Tensor:
            return F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)

        x0 = act(self.conv0(x))
        x1 = act(self.conv1(x0))
        x2 = act(self.conv2(x1))
        x3 = act(self.conv3(x2))
        x4 = act(self.conv4(up(x3)))
        x4 = x4 + x2 if self.skip_connection else x4
        x5 = act(self.conv5(up(x4)))
        x5 = x5 + x1 if self.skip_connection else x5
        x6 = act(self.conv6(up(x5)))
        x6 = x6 + x0 if self.skip_connection else x6
        x7 = act(self.conv7(x6))
        x8 = act(self.conv8(x7))
        logits = self.conv9(x8)
        return (logits, [x0, x1, x2, x3, x4, x5, x6, x7, x8]) if return_features else logits
