"""A model's degradation estimator, read without torch: the ridge read-out (linear or quadratic) that
``kdsr estimate --fit`` stores in a model file's metadata (blur width, noise level, JPEG quality from the IDR), its
one-line description, and reading it from a safetensors header. Fitting it and computing the IDR with torch are
:mod:`kdsr.insight.estimator`'s; the torch-free path (:mod:`kdsr.inference.fastpath`) computes the IDR with its
graphs and reads it here."""

from __future__ import annotations

import dataclasses
import json
import os
import struct
from collections.abc import Mapping

import numpy as np

from kdsr.bundled import model_file
from kdsr.constants import ESTIMATOR_TERMS, IDR_FEATURES
from kdsr.errors import CheckpointError

HEAD_KEY = "degradation_head"
UNITS = {"blur_sigma": "blur sigma (HR px)", "noise": "noise (0-255)", "jpeg_quality": "JPEG quality"}
NO_JPEG_QUALITY = 100.0  # the JPEG target of an image that was never compressed
#: target name -> (Degradation field, valid range)
TARGETS = {"blur_sigma": ("sigma", (0.0, 20.0)), "noise": ("noise", (0.0, 255.0)), "jpeg_quality": ("jpeg", (1, 100))}


class Reading(dict):
    """A degradation estimate: target name -> value (always a number). A value the read-out put beyond the range
    the estimator was fitted on is held at that range's bound and named in :attr:`beyond` ("above" or "below")."""

    def __init__(self, values: Mapping[str, float], beyond: Mapping[str, str] | None = None) -> None:
        super().__init__(values)
        self.beyond = dict(beyond or {})

    def to_json(self) -> dict:
        """The values, and ``beyond_fitted_range`` (name -> "above" / "below") when any is flagged."""
        return {**self, **({"beyond_fitted_range": self.beyond} if self.beyond else {})}

    def phrase(self, name: str, value: float | None = None) -> str:
        """``name`` and its value in words: "noise (0-255) 3.1", or "... below 0, outside the fitted range"."""
        value = self[name] if value is None else value
        if name in self.beyond and value == self[name]:
            return f"{UNITS[name]} {self.beyond[name]} {value:g}, outside the fitted range"
        return f"{UNITS[name]} {value:.1f}"


@dataclasses.dataclass(frozen=True)
class DegradationEstimator:
    """``target = terms(z) @ coef[target] + intercept[target]`` with ``z = (v - mean) / scale``, clipped to the
    target's range, where ``v`` is the IDR vector ``feature`` (``d``, or ``d_prime``: the uncompressed D' a KD
    student learns to match) and ``terms(z)`` is ``z`` (linear) or ``z`` then ``z ** 2`` (quadratic)."""

    targets: list[str]
    mean: list[float]
    scale: list[float]
    coef: list[list[float]]
    intercept: list[float]
    fitted_on: dict
    feature: str = "d"  # heads written before the field existed read d
    terms: str = "linear"  # heads written before the field existed are linear

    def predict(self, d: np.ndarray) -> dict[str, float]:
        """The degradation estimate for one compact IDR ``d`` (C,)."""
        return {name: float(np.clip(v, *TARGETS[name][1])) for name, v in self._raw(d).items()}

    def _raw(self, d: np.ndarray) -> dict[str, float]:
        """The read-out before clipping."""
        if len(d) != len(self.mean):
            raise CheckpointError(f"degradation head expects an IDR of {len(self.mean)} values, got {len(d)}")
        z = (np.asarray(d, dtype=np.float64) - self.mean) / self.scale
        values = np.asarray(self.coef) @ read_out_terms(z[None], self.terms)[0] + np.asarray(self.intercept)
        return {name: float(v) for name, v in zip(self.targets, values, strict=True)}

    def fitted_range(self, name: str) -> tuple[float, float] | None:
        """The values of ``name`` the head was fitted on (JPEG: the compressed qualities and 100), if recorded."""
        return fitted_range(self.fitted_on, name)

    def read(self, d: np.ndarray) -> Reading:
        """:meth:`predict`, except that a value beyond the fitted range (by more than a tenth of its width) is held
        at the range's bound and flagged (:attr:`Reading.beyond`): a regression extrapolates, so a number there
        would be a guess."""
        values, beyond = {}, {}
        for name, value in self._raw(d).items():
            bounds = self.fitted_range(name)
            if bounds is not None:
                low, high = bounds
                margin = 0.1 * (high - low)
                if value > high + margin or value < low - margin:
                    beyond[name] = "above" if value > high else "below"
                    value = high if value > high else low
            values[name] = float(np.clip(value, *TARGETS[name][1]))
        return Reading(values, beyond)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> DegradationEstimator:
        try:
            fields = json.loads(text)
            head = cls(**fields)
        except (ValueError, TypeError) as e:
            raise CheckpointError(f"unreadable degradation head ({e})") from None
        if any(name not in TARGETS for name in head.targets) or head.feature not in IDR_FEATURES:
            raise CheckpointError(f"degradation head has unknown targets {head.targets} or feature {head.feature!r}")
        if head.terms not in ESTIMATOR_TERMS:
            raise CheckpointError(f"degradation head has unknown read-out terms {head.terms!r}")
        return head


def fitted_range(fitted_on: dict, name: str) -> tuple[float, float] | None:
    """The values of target ``name`` that a fit recorded in ``fitted_on`` drew (JPEG: the compressed qualities and
    100, the uncompressed), or None when it recorded none."""
    ranges = fitted_on.get("ranges")
    if not ranges:
        return None
    low, high = ranges[TARGETS[name][0]]
    return (float(low), NO_JPEG_QUALITY) if name == "jpeg_quality" else (float(low), float(high))


def read_out_terms(z: np.ndarray, terms: str) -> np.ndarray:
    """The read-out's inputs for standardised IDRs ``z`` (N, C): ``z`` (linear) or ``[z, z ** 2]`` (quadratic)."""
    return np.concatenate([z, z**2], axis=1) if terms == "quadratic" else z


def safetensors_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file, read from its header (an 8-byte little-endian length, then that
    many bytes of JSON) without loading any tensor or framework."""
    try:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > 100_000_000:
                raise ValueError(f"a header of {length} bytes")
            header = json.loads(f.read(length))
    except (OSError, struct.error, ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return dict(metadata) if isinstance(metadata, dict) else {}


def metadata_entry(source: str | os.PathLike, key: str) -> str | None:
    """The text under ``key`` in a model file's metadata (bundled name or path); None when it has none (or the file
    is not ours)."""
    path = model_file(source)
    if path.suffix != ".safetensors" or not path.is_file():
        return None
    return safetensors_metadata(path).get(key) or None


def read_head(source: str | os.PathLike) -> DegradationEstimator | None:
    """The degradation head stored in a model file (bundled name or path); None when it has none (or is not ours)."""
    text = metadata_entry(source, HEAD_KEY)
    return DegradationEstimator.from_json(text) if text else None


def as_rgb(image: np.ndarray) -> np.ndarray:
    """An (H, W, 1|3|4) or (H, W) image as the (H, W, 3) RGB the encoder reads (alpha ignored, grey repeated)."""
    image = image[:, :, None] if image.ndim == 2 else image
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[:, :, :3]


def describe(estimate: Mapping[str, float]) -> str:
    """One line: "blur sigma (HR px) 1.2, noise (0-255) above 20, outside the fitted range"."""
    reading = estimate if isinstance(estimate, Reading) else Reading(estimate)
    return ", ".join(reading.phrase(name) for name in reading)
