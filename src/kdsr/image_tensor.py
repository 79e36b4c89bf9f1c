"""Arrays from :mod:`kdsr.image_io` (H, W, C) <-> batched float tensors (1, C, H, W) in [0, 1]."""

from __future__ import annotations

import numpy as np
import torch

from kdsr.image_io import from_float, to_float


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8/uint16 (H, W, C) -> float32 (1, C, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(to_float(image).transpose(2, 0, 1)))[None]


def tensor_to_image(tensor: torch.Tensor, dtype: np.dtype = np.uint8) -> np.ndarray:
    """The first image of a (N, C, H, W) batch -> (H, W, C) of ``dtype``, clipped to [0, 1] and rounded."""
    return from_float(tensor[0].detach().float().cpu().permute(1, 2, 0).numpy(), dtype)
