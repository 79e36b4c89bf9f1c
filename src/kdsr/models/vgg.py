"""VGG19 feature extractor for the perceptual loss, with torchvision-compatible keys (``features.{i}.weight``).

No weights are downloaded: load torchvision's ImageNet VGG19 state dict (``vgg19-dcbb9e9d.pth``) from a path.
"""

from __future__ import annotations

import torch
from torch import nn

# torchvision's VGG16 "D" and VGG19 "E" configurations; "M" is a 2x2 max-pool.
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg_layers(cfg: tuple) -> list[nn.Module]:
    """The modules of torchvision's VGG ``features`` for ``cfg`` (3x3 convs with ReLU, 2x2 max-pools), in order."""
    layers: list[nn.Module] = []
    in_channels = 3
    for item in cfg:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(in_channels, item, 3, padding=1), nn.ReLU(inplace=False)]
            in_channels = item
    return layers


def _layer_names() -> list[str]:
    """Names (conv1_1, relu1_1, ..., pool5) of VGG19 ``features`` indices."""
    names, block, conv = [], 1, 1
    for item in VGG19_CFG:
        if item == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 1
        else:
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
            conv += 1
    return names


LAYER_NAMES = _layer_names()


class VGG19Features(nn.Module):
    """VGG19 ``features`` truncated after the deepest requested layer; returns the requested activations
    (taken before the ReLU for ``convX_Y`` names) of ImageNet-normalised [0, 1] RGB input."""

    def __init__(self, layers: tuple[str, ...] = ("conv1_2", "conv2_2", "conv3_4", "conv4_4", "conv5_4")) -> None:
        super().__init__()
        unknown = [name for name in layers if name not in LAYER_NAMES]
        if unknown:
            raise ValueError(f"unknown VGG19 layer(s): {', '.join(unknown)}")
        self.layers = tuple(layers)
        last = max(LAYER_NAMES.index(name) for name in layers)
        self.features = nn.Sequential(*vgg_layers(VGG19_CFG)[: last + 1])
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (x - self.mean) / self.std
        out = {}
        for name, module in zip(LAYER_NAMES, self.features, strict=False):
            x = module(x)
            if name in self.layers:
                out[name] = x
        return out
