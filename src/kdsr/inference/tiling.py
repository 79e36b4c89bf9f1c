"""Tiled inference with the IDR estimated once per image.

The IDR is a property of the whole image. :func:`estimate_idr` computes it exactly as the untiled encoder does, but
in tiles: every conv of the encoder is 3x3, so a tile extended by the encoder's receptive radius yields exact
pre-pool features in its interior, and the global average pool is the sum of the tile interiors divided by the pixel
count. On large images a bounded view (grid cells, one per row and column) caps the encoder's cost.
:func:`tiled_super_resolve` then runs the generator tile by tile with that one IDR: each tile gets
``tile_pad`` pixels of context (cropped away) and adjacent tiles overlap by ``overlap`` pixels that are blended with
linear ramps, so no seams show. Peak memory depends on the tile size, not on the image size.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from kdsr.inference.tile_plan import encoder_tiles, generator_tiles, runs_whole, view_regions
from kdsr.models import IDR, KDSRStudent


@torch.no_grad()
def estimate_idr(
    model: KDSRStudent,
    lr: torch.Tensor,
    tile: int = 0,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
    view: int = 0,
) -> IDR:
    """The student's IDR of ``lr`` (B, 3, H, W), computed in tiles of ``tile`` pixels (0: at once) on ``device`` in
    ``dtype`` (default: those of ``lr``), from the features of :func:`~kdsr.inference.tile_plan.view_regions`
    (``view`` 0: the whole image).

    Every region is computed with the encoder's receptive radius of real context around it, so the pooled features
    are exactly the whole-image features averaged over the regions: with ``view`` 0 the result equals
    ``model.encode(lr)`` up to float summation order.
    """
    encoder = model.encoder
    device, dtype = device or lr.device, dtype or lr.dtype
    _, _, height, width = lr.shape
    regions = view_regions(height, width, view)
    if len(regions) == 1 and runs_whole(height, width, tile):
        return encoder(lr.to(device, dtype))
    lr = encoder.prepare(lr)  # the energy encoder standardises by the whole image's statistics, then tiles
    total, count = None, 0
    for part in encoder_tiles(height, width, regions, tile, encoder.receptive_radius):
        features = encoder.feature_map(lr[(..., *part.crop)].to(device, dtype))[(..., *part.interior)]
        pooled = features.float().sum(dim=(2, 3))
        total = pooled if total is None else total + pooled
        count += part.pixels
    return encoder.from_pooled((total / count).to(dtype))


@torch.no_grad()
def tiled_super_resolve(
    model: KDSRStudent,
    lr: torch.Tensor,
    d: torch.Tensor,
    tile: int,
    tile_pad: int,
    overlap: int,
    device: torch.device,
    dtype: torch.dtype,
    on_tile: Callable[[], None] | None = None,
) -> torch.Tensor:
    """Generator output for ``lr`` (B, 3, H, W, on any device) conditioned on ``d``, as float32 on ``lr.device``.

    Only one tile at a time lives on ``device``; the output is accumulated on ``lr``'s device.
    """
    s = model.scale
    b, _, height, width = lr.shape
    d = d.to(device, dtype)
    if runs_whole(height, width, tile):
        out = model.super_resolve(lr.to(device, dtype), d).float().to(lr.device)
        if on_tile:
            on_tile()
        return out
    out = torch.zeros(b, 3, height * s, width * s, dtype=torch.float32, device=lr.device)
    weight = torch.zeros(1, 1, height * s, width * s, dtype=torch.float32, device=lr.device)
    for part in generator_tiles(height, width, tile, tile_pad, overlap, s):
        sr = model.super_resolve(lr[(..., *part.crop)].to(device, dtype), d).float().to(lr.device)
        w = torch.from_numpy(part.weight).to(lr.device)
        out[(..., *part.place)] += sr[(..., *part.keep)] * w
        weight[(..., *part.place)] += w
        if on_tile:
            on_tile()
    return out.div_(weight)
