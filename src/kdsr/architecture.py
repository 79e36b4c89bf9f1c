"""What a KDSR network is, without torch: its architecture (:class:`KDSRConfig`) and the named presets, so that
listing models, reading a split export's architecture and checking a file need not load torch. The networks
themselves are :mod:`kdsr.models`."""

from __future__ import annotations

import dataclasses

#: Slope of every LeakyReLU of the networks (the official code's)
LRELU_SLOPE = 0.1
#: Added to the energy encoder's pooled energy before its log
ENERGY_FLOOR = 1e-4
#: Upper bounds of the architecture sizes (the largest official network, KDSR_S-GAN, is 128 / 42 / 6): a file that
#: claims more is refused before anything is built.
MAX_SIZES = {"n_feats": 512, "n_blocks": 512, "n_resblocks": 64}
#: Scales the sub-pixel upsampler supports.
SCALES = (2, 3, 4, 8)


@dataclasses.dataclass(frozen=True)
class EncoderVariant:
    """What a KD-IDE variant changes, read by the networks (:class:`~kdsr.models.encoder.KDIDE`), the exporters
    (the split graphs' config says it) and the runtimes, instead of comparing names.

    ``standardised_input``: the student's image is standardised (minus its mean, over its standard deviation) before
    the convolutions, which a runtime of the split graphs must do too; ``energy_pool``: the log of the features' mean
    square is pooled (else their mean); ``residual_teacher``: the teacher sees the LR and the residual LR - box(HR)
    (6 channels) instead of the LR and the pixel-unshuffled HR."""

    name: str
    standardised_input: bool
    energy_pool: bool
    residual_teacher: bool
    description: str


#: KD-IDE variants by name (see KDIDE); a new one is a new entry here and a branch in KDIDE where it computes
#: something new (the contract tests of tests/models/test_models.py run over every entry)
ENCODER_VARIANTS = {
    v.name: v
    for v in (
        EncoderVariant(
            "official",
            False,
            False,
            False,
            "raw pixels in, mean of rectified features pooled: the paper's; loads official checkpoints",
        ),  # fmt: skip
        EncoderVariant(
            "energy",
            True,
            True,
            True,
            "each image standardised at the input, the log of the features' mean energy pooled",
        ),  # fmt: skip
    )
}
ENCODERS = tuple(ENCODER_VARIANTS)


@dataclasses.dataclass(frozen=True)
class KDSRConfig:
    """Architecture hyper-parameters: feature width C, IDR-DCRB count N, encoder ResBlock count R, SR scale."""

    n_feats: int
    n_blocks: int
    n_resblocks: int
    scale: int = 4
    teacher: bool = False
    encoder: str = "official"

    def __post_init__(self) -> None:
        for name in ("n_feats", "n_blocks", "n_resblocks"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (1 if name != "n_resblocks" else 0):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
            if value > MAX_SIZES[name]:
                raise ValueError(f"{name}={value} is beyond any KDSR network (at most {MAX_SIZES[name]})")
        if not isinstance(self.teacher, bool):
            raise ValueError(f"teacher must be true or false, got {self.teacher!r}")
        if self.scale not in SCALES:
            raise ValueError(f"scale must be 2, 3, 4 or 8, got {self.scale!r}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}, got {self.encoder!r}")

    @property
    def encoder_in_channels(self) -> int:
        """3 for the student (LR only); the teacher: 3 + 3*s^2 (LR + pixel-unshuffled HR) for the official encoder,
        6 (LR + residual LR - box(HR)) for the energy encoder."""
        if not self.teacher:
            return 3
        return 6 if self.variant.residual_teacher else 3 + 3 * self.scale**2

    @property
    def variant(self) -> EncoderVariant:
        return ENCODER_VARIANTS[self.encoder]


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    config: KDSRConfig
    description: str


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("kdsr-m", KDSRConfig(64, 53, 9), "KDSR_S-M of the paper (classic degradations), 5.80M params"),
        Preset("kdsr-l", KDSRConfig(128, 28, 5), "KDSR_S-L of the paper (classic degradations), 14.19M params"),
        Preset("kdsr-gan", KDSRConfig(128, 42, 6), "KDSR_S-GAN of the paper (real-world degradations), 18.85M params"),
        Preset("kdsr-s", KDSRConfig(32, 8, 2), "small preset of this project that trains on a CPU, 0.45M params"),
    )
}
