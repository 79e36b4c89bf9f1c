"""KDSR networks: the SR generator and the student/teacher wrappers (the KD-IDE encoders: :mod:`.encoder`).

Exactly the computation of the official code (KDSR-classic ``model_ST/blindsr.py``, ``model_TA/blindsr.py``,
``model/common.py``), with the official module names so that official state dicts load without renaming: student
``G.*`` + ``E_st.*``, teacher ``G.*`` + ``E.*``.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, overload

import torch
from torch import nn

from kdsr.architecture import KDSRConfig
from kdsr.constants import TAIL_BAND, TAIL_CONTEXT
from kdsr.models.blocks import DCRBGroup, MeanShift, conv3x3, upsampler
from kdsr.models.encoder import IDR, KDIDE, pack_teacher_input


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
        #: LR rows per band of the tail at inference (0: whole; :meth:`_upsample`)
        self.tail_band = TAIL_BAND

    def forward(self, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        h = self.head(self.sub_mean(x))
        r = self.body[1](self.body[0](h, d)) + h
        return self.add_mean(self._upsample(r))

    def _upsample(self, r: torch.Tensor) -> torch.Tensor:
        """The tail, in bands of :attr:`tail_band` rows at inference: its 2x feature maps (4 n_feats channels) are
        the largest tensors of a forward pass, 270 MB for a 256-px tile of a 32-feature network; in bands they stay
        a few tens of MB. Each band sees :data:`TAIL_CONTEXT` rows of real context, more than the tail's receptive
        radius (under 2 LR pixels), so the result is the same. Whole when training, tracing or compiling."""
        height, band = r.shape[2], self.tail_band
        whole = torch.is_grad_enabled() or torch.jit.is_tracing() or torch.compiler.is_compiling()
        if whole or band <= 0 or height <= band + 2 * TAIL_CONTEXT:
            return self.tail(r)
        s, bands = self.scale, []
        for top in range(0, height, band):
            bottom = min(top + band, height)
            first, last = max(top - TAIL_CONTEXT, 0), min(bottom + TAIL_CONTEXT, height)
            bands.append(self.tail(r[:, :, first:last])[:, :, (top - first) * s : (bottom - first) * s])
        return torch.cat(bands, dim=2)


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
        variant = config.variant
        self.E_st = KDIDE(in_channels=3, n_feats=config.n_feats, n_resblocks=config.n_resblocks,
                          energy=variant.energy_pool, standardise_input=variant.standardised_input)  # fmt: skip

    @property
    def encoder(self) -> KDIDE:
        return self.E_st

    def encode(self, lr: torch.Tensor) -> IDR:
        return self.E_st(lr)

    @overload
    def forward(
        self,
        lr: torch.Tensor,
        return_idr: Literal[False] = False,
        idr_from: torch.Tensor | None = None,
        idr_offset: torch.Tensor | None = None,
    ) -> torch.Tensor: ...
    @overload
    def forward(
        self,
        lr: torch.Tensor,
        return_idr: Literal[True],
        idr_from: torch.Tensor | None = None,
        idr_offset: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, IDR]: ...

    def forward(
        self,
        lr: torch.Tensor,
        return_idr: bool = False,
        idr_from: torch.Tensor | None = None,
        idr_offset: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, IDR]:
        """``idr_from`` (B', 3, h', w'), B' <= B: the first B' inputs are super-resolved with the IDR of these
        images instead of their own (counterfactual training, :mod:`kdsr.degradations.counterfactual`);
        ``idr_offset`` (B', C): with their own IDR plus this (the map-told steps); the returned IDR stays the
        inputs' own."""
        idr = self.E_st(lr)
        d = idr.d
        if idr_from is not None:
            d = torch.cat([self.E_st(idr_from).d, d[idr_from.shape[0] :]])
        if idr_offset is not None:
            k = idr_offset.shape[0]
            d = torch.cat([d[:k] + idr_offset.to(d.dtype), d[k:]])
        sr = self.G(lr, d)
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
            energy=config.variant.energy_pool,
        )

    @property
    def encoder(self) -> KDIDE:
        return self.E

    def encode(self, lr: torch.Tensor, hr: torch.Tensor) -> IDR:
        return self.E(pack_teacher_input(lr, hr, self.scale, self.config.variant.residual_teacher))

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
