"""Dials in readable units: steer the IDR a model restores with by what the user states about the degradation.

A model file may carry, next to its degradation estimator (IDR -> blur, noise, JPEG quality;
:mod:`kdsr.readout.head`), an *IDR map*: the inverse read-out, degradation -> the mean compact IDR ``d`` of images
under it, fitted by ``kdsr estimate --fit ... --idr-map``. Steering moves an image's own IDR by the difference the
map predicts between the degradation the user wants restored and the one the estimator read::

    d_used = d + map(told) - map(estimated)

so stating what the estimator read reproduces the blind output exactly, and the image's own content-specific part
of the IDR is kept. ``told`` is the estimate with the user's ``assume`` values put in, then ``denoise`` applied: the
noise scaled by it and the JPEG strength (100 - quality) too; 1 restores what was estimated, 0 restores as if there
were no noise and no compression (the model then keeps them, as far as it learnt to;
:mod:`kdsr.degradations.counterfactual`), above 1 restores more. Both degradations are held within the ranges the
map was fitted on (it would extrapolate beyond them), so the dials saturate there. Numpy only: the torch-free path
uses it too.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping

import numpy as np

from kdsr.errors import CheckpointError, KDSRError
from kdsr.readout.head import (
    NO_JPEG_QUALITY,
    TARGETS,
    DegradationEstimator,
    Reading,
    fitted_range,
    metadata_entry,
    read_head,
)

MAP_KEY = "idr_map"
#: what ``--assume`` accepts: its key -> the estimator target it sets
ASSUME_KEYS = {"noise": "noise", "jpeg": "jpeg_quality", "blur": "blur_sigma"}
#: values that ``--assume`` accepts (noise beyond 50 or blur beyond 6 HR pixels: no model here has seen it)
ASSUME_RANGES = {"noise": (0.0, 50.0), "jpeg_quality": (1.0, 100.0), "blur_sigma": (0.0, 6.0)}
#: the strongest ``denoise``: twice the estimated degradation
MAX_DENOISE = 2.0
#: each target's unit in the map's terms (JPEG as strength, (100 - quality) / 70: 0 uncompressed, 1 at quality 30)
_TERM_SCALE = {"blur_sigma": 4.0, "noise": 30.0, "jpeg_quality": 70.0}


def label_terms(values: np.ndarray, targets: list[str]) -> np.ndarray:
    """(N, T) degradations (columns ``targets``) -> the map's inputs: each scaled to about [0, 1], its square, and
    the products of pairs."""
    x = np.asarray(values, dtype=np.float64).copy()
    for j, name in enumerate(targets):
        x[:, j] = (NO_JPEG_QUALITY - x[:, j] if name == "jpeg_quality" else x[:, j]) / _TERM_SCALE[name]
    pairs = [x[:, i] * x[:, j] for i in range(x.shape[1]) for j in range(i + 1, x.shape[1])]
    return np.concatenate([x, x**2, *(p[:, None] for p in pairs)], axis=1)


@dataclasses.dataclass(frozen=True)
class IDRMap:
    """``d = coef @ label_terms(degradation) + intercept``: the mean compact IDR of images under a degradation."""

    targets: list[str]
    coef: list[list[float]]
    intercept: list[float]
    fitted_on: dict

    def predict(self, degradation: Mapping[str, float]) -> np.ndarray:
        values = np.array([[degradation[name] for name in self.targets]])
        return np.asarray(self.coef) @ label_terms(values, self.targets)[0] + np.asarray(self.intercept)

    def clip(self, degradation: Mapping[str, float]) -> dict[str, float]:
        """``degradation`` within the ranges the map was fitted on (when recorded), where it predicts and does not
        extrapolate; JPEG quality up to 100 (uncompressed)."""
        clipped = dict(degradation)
        for name, value in degradation.items():
            bounds = fitted_range(self.fitted_on, name)
            clipped[name] = value if bounds is None else float(np.clip(value, *bounds))
        return clipped

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> IDRMap:
        try:
            idr_map = cls(**json.loads(text))
            coef = np.asarray(idr_map.coef, dtype=np.float64)
            terms = label_terms(np.zeros((1, len(idr_map.targets))), idr_map.targets).shape[1]
            if coef.shape != (len(idr_map.intercept), terms):
                raise ValueError(f"coefficients of shape {coef.shape}")
        except (ValueError, TypeError, KeyError) as e:
            raise CheckpointError(f"unreadable IDR map ({e})") from None
        if any(name not in TARGETS for name in idr_map.targets):
            raise CheckpointError(f"IDR map has unknown targets {idr_map.targets}")
        return idr_map


def read_idr_map(source: str | os.PathLike) -> IDRMap | None:
    """The IDR map stored in a model file (bundled name or path); None when it has none."""
    text = metadata_entry(source, MAP_KEY)
    return IDRMap.from_json(text) if text else None


@dataclasses.dataclass(frozen=True)
class Steering:
    """What the user states: ``assume`` (estimator target -> value, e.g. ``{"noise": 10.0}``) and ``denoise``."""

    assume: tuple[tuple[str, float], ...] = ()
    denoise: float = 1.0

    def __post_init__(self) -> None:
        if not 0 <= self.denoise <= MAX_DENOISE:
            raise KDSRError(f"denoise must be in [0, {MAX_DENOISE:g}] (1: as estimated, 0: keep noise and JPEG)")
        for name, value in self.assume:
            low, high = ASSUME_RANGES[name]
            if not low <= value <= high:
                raise KDSRError(f"assumed {name} must be in [{low:g}, {high:g}], got {value:g}")

    @classmethod
    def from_options(cls, assume: str | Mapping[str, float] | None = None, denoise: float | None = None) -> Steering:
        """From ``--assume noise=10,jpeg=60,blur=1.5`` (or a mapping with those keys) and ``--denoise X``."""
        if isinstance(assume, str):
            assume = parse_assume(assume)
        pairs = []
        for key, value in (assume or {}).items():
            if key not in ASSUME_KEYS:
                raise KDSRError(f"unknown degradation {key!r} to assume (use {', '.join(ASSUME_KEYS)})")
            pairs.append((ASSUME_KEYS[key], float(value)))
        return cls(tuple(pairs), 1.0 if denoise is None else float(denoise))

    @property
    def active(self) -> bool:
        return bool(self.assume) or self.denoise != 1.0

    def told(self, estimate: Mapping[str, float]) -> dict[str, float]:
        """The degradation to restore: the estimate, the assumed values put in, then ``denoise`` applied."""
        told = {**estimate, **dict(self.assume)}
        if "noise" in told:
            told["noise"] = told["noise"] * self.denoise
        if "jpeg_quality" in told:
            strength = (NO_JPEG_QUALITY - told["jpeg_quality"]) * self.denoise
            told["jpeg_quality"] = float(np.clip(NO_JPEG_QUALITY - strength, 1.0, NO_JPEG_QUALITY))
        return told


def parse_assume(text: str) -> dict[str, float]:
    """``noise=10,jpeg=60`` -> ``{"noise": 10.0, "jpeg": 60.0}``; a one-line error for anything else."""
    values = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        try:
            if not sep:
                raise ValueError
            values[key.strip()] = float(value)
        except ValueError:
            raise KDSRError(f"bad --assume {text!r}: use e.g. noise=10,jpeg=60,blur=1.5") from None
    if not values:
        raise KDSRError(f"bad --assume {text!r}: use e.g. noise=10,jpeg=60,blur=1.5")
    return values


@dataclasses.dataclass(frozen=True)
class SteeredIDR:
    """The IDR to restore with, and the degradations it was moved between (estimator units)."""

    d: np.ndarray
    estimated: dict[str, float]
    used: dict[str, float]

    def describe(self) -> str:
        def words(values: Mapping[str, float]) -> str:
            return ", ".join(f"{name.replace('_', ' ')} {value:.1f}" for name, value in values.items())

        return f"estimated {words(self.estimated)}; restored as {words(self.used)}"


class Steerer:
    """A model's estimator and IDR map with the user's :class:`Steering`: ``steer(d, d_prime)``."""

    def __init__(self, head: DegradationEstimator, idr_map: IDRMap, steering: Steering) -> None:
        missing = [name for name, _ in steering.assume if name not in idr_map.targets]
        if missing:
            raise KDSRError(f"this model's IDR map knows {', '.join(idr_map.targets)}, not {', '.join(missing)}")
        if steering.denoise != 1 and not {"noise", "jpeg_quality"} & set(idr_map.targets):
            raise KDSRError(
                f"this model's IDR map knows {', '.join(idr_map.targets)} only: denoise has nothing to act on"
            )
        if any(name not in head.targets for name in idr_map.targets):
            raise KDSRError("this model's estimator does not read every degradation its IDR map knows")
        self.head, self.idr_map, self.steering = head, idr_map, steering

    @classmethod
    def for_model(cls, source: str | os.PathLike, steering: Steering) -> Steerer:
        """The steerer of a model file; a one-line error when it carries no estimator or IDR map."""
        head, idr_map = read_head(source), read_idr_map(source)
        if head is None or idr_map is None:
            raise KDSRError(
                f"{source}: --assume and --denoise need a model with a degradation estimator and an IDR map "
                "(kdsr estimate --fit HR_DIR --idr-map -n MODEL -o FILE)"
            )
        return cls(head, idr_map, steering)

    @property
    def feature_index(self) -> int:
        """Which of (d, d_prime) the estimator reads."""
        return 0 if self.head.feature == "d" else 1

    def estimate(self, d: np.ndarray, d_prime: np.ndarray) -> dict[str, float]:
        """One image's degradation as its estimator reads it from its own (d, d_prime), held within the map's
        fitted ranges."""
        read = self.head.predict(d if self.head.feature == "d" else d_prime)
        return self.idr_map.clip({name: read[name] for name in self.idr_map.targets})

    def shift(self, estimated: Mapping[str, float], told: Mapping[str, float]) -> tuple[np.ndarray, dict[str, float]]:
        """The IDR change (float64) that moves an image from its ``estimated`` degradation to ``told`` (held within
        the map's fitted ranges), and the degradation used."""
        used = self.idr_map.clip(told)
        return self.idr_map.predict(used) - self.idr_map.predict(estimated), used

    def steer(self, d: np.ndarray, d_prime: np.ndarray) -> SteeredIDR:
        """One image's own (d, d_prime) (C,), (4C,) -> the IDR moved to the told degradation."""
        estimated = self.estimate(d, d_prime)
        change, used = self.shift(estimated, self.steering.told(estimated))
        moved = np.asarray(d, dtype=np.float64) + change
        return SteeredIDR(moved.astype(np.float32), estimated, used)

    def steer_rows(self, d: np.ndarray, d_prime: np.ndarray) -> tuple[np.ndarray, list[SteeredIDR]]:
        """A batch's (B, C) and (B, 4C) IDRs -> the (B, C) steered IDRs, and each row's :class:`SteeredIDR`."""
        readings = [self.steer(row, row_prime) for row, row_prime in zip(d, d_prime, strict=True)]
        return np.stack([r.d for r in readings]), readings

    def describe_told(self, reading: Mapping[str, float | str]) -> str:
        """What a reading of :meth:`DegradationEstimator.read` is restored as, in one phrase (``-v``, the web
        page): the numbers :meth:`steer` would use (a reading outside the fitted range stays as it is read, unless
        assumed)."""
        reading = reading if isinstance(reading, Reading) else Reading(reading)
        told = {**reading, **self.idr_map.clip(self.steering.told(dict(reading)))}
        return "restored as " + ", ".join(reading.phrase(name, value) for name, value in told.items())
