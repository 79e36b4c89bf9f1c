"""An independent re-implementation of the official KDSR forward pass (x4), written the way the official code
computes (KDSR-classic ``model_ST/blindsr.py``, ``model_TA/blindsr.py``, ``model/common.py``): MeanShift as frozen 1x1
convs, the dynamic depthwise conv as one grouped conv over B*C groups on a reshaped (1, B*C, H, W) tensor, NCHW.

It shares no code with :mod:`kdsr.models`, so the tests can hold our networks to it, and ``benchmarks/speed.py``
times it as the baseline (a test oracle: it lives in tests/, not in the installed package). It loads our state dicts
(the official keys) unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RefMeanShift(nn.Conv2d):
    def __init__(self, sign: int) -> None:
        super().__init__(3, 3, 1)
        self.weight.data = torch.eye(3).view(3, 3, 1, 1)
        self.bias.data = sign * torch.tensor((0.4488, 0.4371, 0.4040))
        self.requires_grad_(False)


class RefDDC(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.kernel = nn.Sequential(
            nn.Linear(c, c, bias=False), nn.LeakyReLU(0.1, True), nn.Linear(c, 9 * c, bias=False)
        )

    def forward(self, x, d):
        b, c, h, w = x.size()
        kernel = self.kernel(d).view(-1, 1, 3, 3)
        out = F.conv2d(x.view(1, -1, h, w), kernel, groups=b * c, padding=1)
        return out.view(b, -1, h, w)


class RefBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.da_conv1 = RefDDC(c)
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.relu = nn.LeakyReLU(0.1, True)

    def forward(self, x, d):
        return self.conv1(self.relu(self.da_conv1(x, d))) + x


class RefDAG(nn.Module):
    def __init__(self, c: int, n: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*[RefBlock(c) for _ in range(n)])

    def forward(self, x, d):
        for block in self.body:
            x = block(x, d)
        return x


class RefG(nn.Module):
    def __init__(self, c: int, n: int) -> None:
        super().__init__()
        self.sub_mean, self.add_mean = RefMeanShift(-1), RefMeanShift(1)
        self.head = nn.Sequential(nn.Conv2d(3, c, 3, padding=1))
        self.body = nn.Sequential(RefDAG(c, n), nn.Conv2d(c, c, 3, padding=1))
        up = nn.Sequential(
            nn.Conv2d(c, 4 * c, 3, padding=1), nn.PixelShuffle(2), nn.Conv2d(c, 4 * c, 3, padding=1), nn.PixelShuffle(2)
        )
        self.tail = nn.Sequential(up, nn.Conv2d(c, 3, 3, padding=1))

    def forward(self, x, d):
        x = self.head(self.sub_mean(x))
        res = self.body[1](self.body[0](x, d)) + x
        return self.add_mean(self.tail(res))


class RefResBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.LeakyReLU(0.1, True), nn.Conv2d(c, c, 3, padding=1))

    def forward(self, x):
        return self.body(x) + x


class RefIDE(nn.Module):
    def __init__(self, c: int, r: int, in_channels: int = 3) -> None:
        super().__init__()
        layers = [nn.Conv2d(in_channels, c, 3, padding=1), nn.LeakyReLU(0.1, True)] + [RefResBlock(c) for _ in range(r)]
        layers += [
            nn.Conv2d(c, 2 * c, 3, padding=1),
            nn.LeakyReLU(0.1, True),
            nn.Conv2d(2 * c, 2 * c, 3, padding=1),
            nn.LeakyReLU(0.1, True),
            nn.Conv2d(2 * c, 4 * c, 3, padding=1),
            nn.LeakyReLU(0.1, True),
            nn.AdaptiveAvgPool2d(1),
        ]
        self.E = nn.Sequential(*layers)
        self.mlp = nn.Sequential(
            nn.Linear(4 * c, 4 * c), nn.LeakyReLU(0.1, True), nn.Linear(4 * c, 4 * c), nn.LeakyReLU(0.1, True)
        )
        self.compress = nn.Sequential(nn.Linear(4 * c, c), nn.LeakyReLU(0.1, True))

    def forward(self, x):
        fea = self.mlp(self.E(x).squeeze(-1).squeeze(-1))
        return self.compress(fea), [fea]


class ReferenceStudent(nn.Module):
    """KDSR_S (x4) as the official code computes it; loads our (= the official) state dict."""

    def __init__(self, c: int, n: int, r: int) -> None:
        super().__init__()
        self.G, self.E_st = RefG(c, n), RefIDE(c, r)

    def forward(self, x):
        d, _ = self.E_st(x)
        return self.G(x, d)


class ReferenceTeacher(nn.Module):
    """KDSR_T (x4): the encoder sees the LR and the pixel-unshuffled HR (3 + 48 channels)."""

    def __init__(self, c: int, n: int, r: int) -> None:
        super().__init__()
        self.G, self.E = RefG(c, n), RefIDE(c, r, in_channels=3 + 3 * 16)

    def forward(self, x, hr):
        d, _ = self.E(torch.cat([x, F.pixel_unshuffle(hr, 4)], dim=1))
        return self.G(x, d)
