"""Random degradations for training, in one place: which pipeline a batch goes through (``kind``: the paper's
classic one, the Real-ESRGAN real-world one, or the everyday mixture), and how draws are shared within a batch
(``group``). Training (:mod:`kdsr.train.loop`) and anything else that needs the training distribution call
:func:`sample_lr`; the fixed, named recipes of evaluation are :mod:`.recipes`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from kdsr.degradations import classic, mixture, realworld
from kdsr.degradations.classic import ClassicSampling
from kdsr.degradations.mixture import MixtureConfig
from kdsr.degradations.realworld import RealWorldConfig

GROUP_MODES = ("replay", "strip")


@dataclasses.dataclass(frozen=True)
class DegradationKind:
    """A training pipeline: ``degrade(hr, settings, scale, generator)`` -> LR batch; ``with_labels`` the same draws
    plus the labels the degradation head learns (None where the pipeline has none); ``settings`` the name of its
    section in :class:`DegradationSampling`."""

    degrade: Callable
    with_labels: Callable | None
    settings: str


#: The training pipelines by ``degradation.kind``: a new one is a module of its own, a section in
#: :class:`DegradationSampling` and an entry here.
DEGRADATION_KINDS = {
    "classic": DegradationKind(classic.random_degrade, classic.random_degrade_with_labels, "classic"),
    "realworld": DegradationKind(realworld.degrade, None, "realworld"),
    "mixture": DegradationKind(mixture.degrade, mixture.degrade_with_labels, "mixture"),
}
KINDS = tuple(DEGRADATION_KINDS)


@dataclasses.dataclass
class DegradationSampling:
    """The ``degradation`` section of a training config."""

    kind: str = "classic"  # classic | realworld | mixture
    # images per degradation draw: consecutive groups of this many share one draw (case, parameters, noise field)
    group: int = 1
    # how a group is degraded: "replay" (each image from the same generator state: identical noise fields) or "strip"
    # (the group side by side as one image: shared parameters, independent noise; a few pixels at the seams see the
    # neighbouring patch through the blur)
    group_mode: str = "replay"
    classic: ClassicSampling = dataclasses.field(default_factory=ClassicSampling)
    realworld: RealWorldConfig = dataclasses.field(default_factory=RealWorldConfig)
    mixture: MixtureConfig = dataclasses.field(default_factory=MixtureConfig)


def _draw(sampling: DegradationSampling, hr: torch.Tensor, scale: int, generator: torch.Generator) -> torch.Tensor:
    """One batch through the ``kind``'s pipeline (per-image draws where the pipeline makes them)."""
    kind = DEGRADATION_KINDS[sampling.kind]
    return kind.degrade(hr, getattr(sampling, kind.settings), scale, generator)


def sample_lr(sampling: DegradationSampling, hr: torch.Tensor, scale: int, generator: torch.Generator) -> torch.Tensor:
    """The LR batch of an HR batch; with ``group`` > 1 each group shares one draw: every image degraded from the
    same generator state (``replay``), or the group degraded as one image laid side by side (``strip``)."""
    group = sampling.group
    if group == 1:
        return _draw(sampling, hr, scale, generator)
    if sampling.group_mode == "strip":
        b, c, h, w = hr.shape
        strips = hr.reshape(b // group, group, c, h, w).permute(0, 2, 3, 1, 4).reshape(b // group, c, h, group * w)
        out = torch.cat([_draw(sampling, strip[None], scale, generator) for strip in strips])
        lw = out.shape[-1] // group
        return out.reshape(b // group, c, out.shape[2], group, lw).permute(0, 3, 1, 2, 4).reshape(b, c, -1, lw)
    out = []
    for start in range(0, hr.shape[0], group):
        state = generator.get_state()
        for i in range(start, start + group):
            generator.set_state(state)
            out.append(_draw(sampling, hr[i : i + 1], scale, generator))
    return torch.cat(out)


def sample_lr_with_labels(
    sampling: DegradationSampling, hr: torch.Tensor, scale: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`sample_lr` (the same draws, ``group`` 1) plus the degradation labels the degradation head learns
    (mixture or classic kinds)."""
    kind = DEGRADATION_KINDS[sampling.kind]
    if kind.with_labels is None:
        raise ValueError(f"the {sampling.kind} pipeline has no degradation labels")
    return kind.with_labels(hr, getattr(sampling, kind.settings), scale, generator)
