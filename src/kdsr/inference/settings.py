"""How to upscale, said once: :class:`UpscaleSettings` (torch-free, frozen), carried from the CLI, the web page,
Ray and Python to :func:`kdsr.inference.opening.open_upscaler`; the torch :class:`~kdsr.inference.upscaler.Upscaler`
checks its arguments with it too."""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Mapping

from kdsr.constants import (
    ALPHA_UPSAMPLERS,
    BACKENDS,
    BORDER_PAD,
    DEFAULT_IDR_VIEW,
    DEFAULT_TILE,
    DEFAULT_TILES,
    OPENVINO_ONLY_PRECISIONS,
    TILE_OVERLAP,
    TILE_PAD,
)
from kdsr.errors import KDSRError

#: what a user without torch is told when a run needs it
TORCH_ADVICE = (
    "pip install 'kdsr[torch]' (on a machine without an NVIDIA GPU, the CPU build first: pip install torch "
    "--index-url https://download.pytorch.org/whl/cpu)"
)


def default_tile(device_type: str) -> int:
    """The LR tile size a run uses when none is given (the one place it is decided)."""
    return DEFAULT_TILES.get(device_type, DEFAULT_TILE)


def torch_installed() -> bool:
    return importlib.util.find_spec("torch") is not None


def needs_torch(what: str) -> KDSRError:
    """The one-line error for ``what`` (e.g. "training") where torch is not installed."""
    return KDSRError(f"{what} needs PyTorch, which is not installed: {TORCH_ADVICE}")


@dataclasses.dataclass(frozen=True)
class UpscaleSettings:
    """Every setting of an upscale run but the model (see :class:`~kdsr.inference.upscaler.Upscaler` for each).

    ``tile`` None picks the device's default (512 on CUDA, 256 elsewhere); ``backend`` ``auto`` the fastest
    installed runtime; ``assume`` / ``denoise`` steer the IDR (:mod:`kdsr.readout.steering`); ``detail`` blends a
    bundled model with its sharp partner (:mod:`kdsr.detail`)."""

    device: str | None = None
    precision: str = "auto"
    backend: str = "auto"
    tile: int | None = None
    tile_pad: int = TILE_PAD
    tile_overlap: int = TILE_OVERLAP
    idr_view: int = DEFAULT_IDR_VIEW
    border_pad: int = BORDER_PAD
    fix_color: bool = True
    alpha_upsampler: str = "kdsr"
    calibration: str | None = None
    assume: str | Mapping[str, float] | None = None
    denoise: float | None = None
    detail: float = 0.0

    def __post_init__(self) -> None:
        from kdsr.readout.steering import Steering

        if self.backend not in (*BACKENDS, "auto"):
            raise KDSRError(f"unknown backend '{self.backend}' (use auto, {', '.join(BACKENDS)})")
        if self.precision in OPENVINO_ONLY_PRECISIONS and self.backend not in ("openvino", "auto"):
            raise KDSRError(f"--precision {self.precision} runs on the OpenVINO backend: add --backend openvino")
        if (self.tile is not None and self.tile < 0) or min(
            self.tile_pad, self.tile_overlap, self.idr_view, self.border_pad
        ) < 0:
            raise KDSRError("tile, tile pad, tile overlap, IDR view and border pad must be >= 0")
        if self.alpha_upsampler not in ALPHA_UPSAMPLERS:
            raise KDSRError(f"unknown alpha upsampler '{self.alpha_upsampler}' (use {' or '.join(ALPHA_UPSAMPLERS)})")
        if not 0 <= self.detail <= 1:
            raise KDSRError(f"detail must be in 0-1, got {self.detail}")
        Steering.from_options(self.assume, self.denoise)  # a bad --assume / --denoise is answered here

    @classmethod
    def of(cls, **values) -> UpscaleSettings:
        """Settings from keyword arguments; an unknown name is a one-line error."""
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise KDSRError(f"unknown upscale setting(s): {', '.join(unknown)}")
        return cls(**values)

    def upscaler_arguments(self) -> dict:
        """The settings as :class:`~kdsr.inference.upscaler.Upscaler` keyword arguments."""
        return dataclasses.asdict(self)
