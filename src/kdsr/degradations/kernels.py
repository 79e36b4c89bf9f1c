"""Blur kernels as batched tensors: Gaussian (isotropic, anisotropic), generalized Gaussian, plateau, sinc.

Grid convention (official code and BasicSR): x is the column offset (to the right), y the row offset (downwards),
both in ``-(k-1)/2 .. (k-1)/2``. The covariance is ``R diag(l1^2, l2^2) R^T`` with ``R`` the rotation by theta,
so ``lambda1``/``lambda2`` are standard deviations and lambda1 lies along theta measured from +x towards +y
(clockwise on screen). Every kernel is normalised to sum 1.
"""

from __future__ import annotations

import math

import torch


def _grid(size: int, device=None, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    ax = torch.arange(size, device=device, dtype=dtype) - (size // 2)
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    return xx, yy


def _as_batch(value, device=None, dtype=torch.float32) -> torch.Tensor:
    return torch.as_tensor(value, device=device, dtype=dtype).reshape(-1)


def isotropic_gaussian(sigma, size: int = 21) -> torch.Tensor:
    """(B, size, size) kernels ``exp(-(x^2 + y^2) / (2 sigma^2))`` for each sigma in ``sigma`` (B,)."""
    sigma = _as_batch(sigma, dtype=torch.as_tensor(sigma).dtype if torch.is_tensor(sigma) else torch.float32)
    xx, yy = _grid(size, sigma.device, sigma.dtype)
    k = torch.exp(-(xx**2 + yy**2)[None] / (2 * sigma[:, None, None] ** 2))
    return k / k.sum(dim=(1, 2), keepdim=True)


def covariance(lambda1, lambda2, theta) -> torch.Tensor:
    """(B, 2, 2) covariance ``R diag(l1^2, l2^2) R^T``, theta in radians."""
    lambda1, lambda2, theta = torch.broadcast_tensors(*(_as_batch(v) for v in (lambda1, lambda2, theta)))
    c, s = torch.cos(theta), torch.sin(theta)
    rot = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
    diag = torch.diag_embed(torch.stack([lambda1**2, lambda2**2], -1))
    return rot @ diag @ rot.transpose(1, 2)


def _quadratic_form(cov: torch.Tensor, size: int) -> torch.Tensor:
    """(B, size, size) values of ``d^T cov^-1 d`` over the grid."""
    xx, yy = _grid(size, cov.device, cov.dtype)
    xy = torch.stack([xx, yy], -1).reshape(1, -1, 2)
    inv = torch.linalg.inv(cov)
    q = ((xy @ inv) * xy).sum(-1)
    return q.reshape(-1, size, size)


def anisotropic_gaussian(lambda1, lambda2, theta, size: int = 21) -> torch.Tensor:
    """(B, size, size) anisotropic Gaussians; theta in radians."""
    k = torch.exp(-0.5 * _quadratic_form(covariance(lambda1, lambda2, theta), size))
    return k / k.sum(dim=(1, 2), keepdim=True)


def generalized_gaussian(lambda1, lambda2, theta, beta, size: int = 21) -> torch.Tensor:
    """(B, size, size) kernels ``exp(-0.5 q^beta)`` (Real-ESRGAN's generalized Gaussian)."""
    q = _quadratic_form(covariance(lambda1, lambda2, theta), size)
    k = torch.exp(-0.5 * q ** _as_batch(beta)[:, None, None])
    return k / k.sum(dim=(1, 2), keepdim=True)


def plateau(lambda1, lambda2, theta, beta, size: int = 21) -> torch.Tensor:
    """(B, size, size) plateau kernels ``1 / (1 + q^beta)``."""
    q = _quadratic_form(covariance(lambda1, lambda2, theta), size)
    k = 1.0 / (1.0 + q ** _as_batch(beta)[:, None, None])
    return k / k.sum(dim=(1, 2), keepdim=True)


def sinc(cutoff, size: int = 21, pad_to: int = 0) -> torch.Tensor:
    """(B, size, size) circular low-pass (2-D sinc) kernels ``w J1(w r) / (2 pi r)``, zero-padded to ``pad_to``."""
    cutoff = _as_batch(cutoff, dtype=torch.float64)
    xx, yy = _grid(size, dtype=torch.float64)
    r = torch.sqrt(xx**2 + yy**2)[None]
    w = cutoff[:, None, None]
    safe_r = torch.where(r == 0, torch.ones_like(r), r)
    k = torch.where(r == 0, w**2 / (4 * math.pi), w * torch.special.bessel_j1(w * safe_r) / (2 * math.pi * safe_r))
    k = k / k.sum(dim=(1, 2), keepdim=True)
    if pad_to > size:
        p = (pad_to - size) // 2
        k = torch.nn.functional.pad(k, (p, p, p, p))
    return k.float()
