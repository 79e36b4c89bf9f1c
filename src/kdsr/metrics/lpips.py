"""LPIPS (Zhang et al. 2018), VGG variant, version 0.1, as used by KDSR-GAN's ``Metric/LPIPS.py``.

Our own definition whose ``state_dict`` keys equal those of ``lpips.LPIPS(net='vgg')`` (``net.sliceK.i.*`` for the
VGG16 convolutions, ``linK.model.1.weight`` for the learned 1x1 layers), so that a file saved from that package loads
directly. Nothing is downloaded: pass the weights file's path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from kdsr.errors import KDSRError
from kdsr.image_tensor import image_to_tensor
from kdsr.models.vgg import VGG16_CFG, vgg_layers

LPIPS_HOWTO = (
    "save the LPIPS VGG weights once on a machine with the `lpips` package: "
    "python -c \"import lpips, torch; torch.save(lpips.LPIPS(net='vgg').state_dict(), 'lpips_vgg.pth')\""
)
# VGG16 ``features`` indices of each slice (ending after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3).
_SLICES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))
_CHANNELS = (64, 128, 256, 512, 512)


class _Linear(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))


class _Slices(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layers = vgg_layers(VGG16_CFG)
        for k, (start, end) in enumerate(_SLICES, 1):
            block = nn.Sequential()
            for i in range(start, end):
                block.add_module(str(i), layers[i])
            setattr(self, f"slice{k}", block)


class LPIPS(nn.Module):
    """Perceptual distance of (B, 3, H, W) RGB images in [0, 1]; lower is more similar."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)
        self.net = _Slices()
        for k, channels in enumerate(_CHANNELS):
            setattr(self, f"lin{k}", _Linear(channels))
        self.eval().requires_grad_(False)

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((x * 2 - 1) - self.shift) / self.scale
        out = []
        for k in range(1, 6):
            x = getattr(self.net, f"slice{k}")(x)
            out.append(x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10))
        return out

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.shape != b.shape:
            raise ValueError(f"LPIPS needs images of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
        total = 0
        for k, (fa, fb) in enumerate(zip(self._features(a), self._features(b), strict=True)):
            total = total + getattr(self, f"lin{k}").model((fa - fb) ** 2).mean(dim=(2, 3))
        return total.flatten()


def load_lpips(path: str | Path) -> LPIPS:
    """LPIPS with weights from a state dict saved from ``lpips.LPIPS(net='vgg')`` (see ``LPIPS_HOWTO``)."""
    path = Path(path)
    if not path.is_file():
        raise KDSRError(f"LPIPS weights not found at '{path}': {LPIPS_HOWTO}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise KDSRError(f"{path}: cannot read LPIPS weights ({type(e).__name__})") from None
    model = LPIPS()
    state = {k: v for k, v in state.items() if k not in ("scaling_layer.shift", "scaling_layer.scale")}
    missing = [k for k in model.state_dict() if k not in state]
    if missing:
        raise KDSRError(f"{path}: not LPIPS VGG weights (missing {missing[0]}): {LPIPS_HOWTO}")
    model.load_state_dict({k: state[k] for k in model.state_dict()})
    return model


@torch.no_grad()
def lpips_distance(model: LPIPS, sr: np.ndarray, hr: np.ndarray) -> float:
    """LPIPS between two (H, W, 3) uint8 RGB images (full image, no border crop, as KDSR-GAN's script)."""
    return float(model(image_to_tensor(sr), image_to_tensor(hr)).item())
