"""Deepen a trained network without changing what it computes, so that a bigger model can continue a smaller one's
training instead of starting from scratch.

An IDR-DCRB is ``x + conv1(LeakyReLU(IDR-DDC(x, d)))``: with ``conv1`` zeroed it is the identity, yet its gradient
is not zero (``conv1`` sees the non-zero IDR-DDC features), so inserted blocks start silent and learn.
"""

from __future__ import annotations

import dataclasses

import torch

from kdsr.models.kdsr import KDSRStudent, KDSRTeacher
from kdsr.models.registry import build_model


def block_positions(old_blocks: int, new_blocks: int) -> list[int]:
    """Where each old block goes in the deeper chain: spread evenly, first stays first, order kept."""
    if not 0 < old_blocks <= new_blocks:
        raise ValueError(f"can only deepen to at least the current depth ({old_blocks}), got {new_blocks}")
    return [i * new_blocks // old_blocks for i in range(old_blocks)]


def deepen(model: KDSRStudent | KDSRTeacher, n_blocks: int, seed: int = 0) -> KDSRStudent | KDSRTeacher:
    """A copy of ``model`` with ``n_blocks`` IDR-DCRBs: the old blocks (spread evenly) plus identity blocks whose
    IDR-DDC is freshly initialised (from ``seed``) and whose ``conv1`` is zero. The outputs are unchanged."""
    positions = block_positions(model.config.n_blocks, n_blocks)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        deeper = build_model(dataclasses.replace(model.config, n_blocks=n_blocks))
    old_state = model.state_dict()
    prefix = "G.body.0.body."
    state = {k: v for k, v in old_state.items() if not k.startswith(prefix)}
    old_index = {new: old for old, new in enumerate(positions)}
    for key, value in deeper.state_dict().items():
        if not key.startswith(prefix):
            continue
        index, rest = key[len(prefix) :].split(".", 1)
        if int(index) in old_index:
            state[key] = old_state[f"{prefix}{old_index[int(index)]}.{rest}"]
        elif rest.startswith("conv1."):
            state[key] = torch.zeros_like(value)
        else:
            state[key] = value
    deeper.load_state_dict(state)
    return deeper.to(next(model.parameters()).device)


def sensitise(model: KDSRStudent | KDSRTeacher, mean_idr: torch.Tensor, gain: float) -> KDSRStudent | KDSRTeacher:
    """A copy of ``model`` whose generator is ``gain`` times as sensitive to how an IDR departs from ``mean_idr``
    (the part of the departure orthogonal to it), its output at ``mean_idr`` unchanged.

    Each IDR-DDC's kernels start with a bias-free ``Linear(d)``; its weight becomes ``W (g I + (1 - g) m m^T / m^T m)``,
    so ``W' m = W m`` and ``W' v = g W v`` for ``v`` orthogonal to ``m``. A generator trained where the IDR varied
    little around its mean (the compact IDR of the default model moves by about 8% of its norm between degradations)
    barely responds to it; sensitised, it responds from the first step of a fine-tune that asks it to follow the IDR
    (:mod:`kdsr.degradations.counterfactual`)."""
    if gain <= 0:
        raise ValueError(f"gain must be > 0, got {gain}")
    copy = build_model(model.config)
    copy.load_state_dict(model.state_dict())
    m = mean_idr.detach().double().flatten()
    projection = gain * torch.eye(len(m), dtype=torch.float64) + (1 - gain) * torch.outer(m, m) / m.dot(m)
    with torch.no_grad():
        for block in copy.G.body[0].body:
            linear = block.da_conv1.kernel[0]
            linear.weight.copy_((linear.weight.double() @ projection).to(linear.weight.dtype))
    return copy.to(next(model.parameters()).device).train(model.training)
