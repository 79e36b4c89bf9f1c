"""A ridge-regression head that reads the degradation (blur width, noise level, JPEG quality) off a model's IDR.

It is fitted on synthetic degradations of HR images in ``kdsr degrade`` units and stored as JSON under the
``degradation_head`` metadata key of the model file, so a bundled model carries it; predicting needs numpy only.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kdsr.bundled import model_file
from kdsr.checkpoint import load_model, read_metadata, save_model
from kdsr.constants import IDR_FEATURES
from kdsr.errors import CheckpointError, KDSRError
from kdsr.image_tensor import image_to_tensor
from kdsr.insight._optional import require
from kdsr.insight.collect import Degradation, collect_idr, encode
from kdsr.models import KDSRTeacher

HEAD_KEY = "degradation_head"
UNITS = {"blur_sigma": "blur sigma (HR px)", "noise": "noise (0-255)", "jpeg_quality": "JPEG quality"}
NO_JPEG_QUALITY = 100.0  # the JPEG target of an image that was never compressed
#: target name -> (Degradation field, valid range)
TARGETS = {"blur_sigma": ("sigma", (0.0, 20.0)), "noise": ("noise", (0.0, 255.0)), "jpeg_quality": ("jpeg", (1, 100))}


@dataclasses.dataclass(frozen=True)
class FitRanges:
    """What the fitting draws, uniformly per sample: blur sigma, noise level, and (when ``jpeg_prob`` > 0) a JPEG
    quality for that fraction of the samples."""

    sigma: tuple[float, float] = (0.2, 4.0)
    noise: tuple[float, float] = (0.0, 0.0)
    jpeg: tuple[float, float] = (30.0, 95.0)
    jpeg_prob: float = 0.0

    def __post_init__(self) -> None:
        for name in ("sigma", "noise", "jpeg"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(f"{name} range must be (low, high) with 0 <= low <= high, got {(low, high)}")
        if not (1 <= self.jpeg[0] and self.jpeg[1] <= 100) or not 0 <= self.jpeg_prob <= 1:
            raise ValueError("JPEG qualities must lie in [1, 100] and the JPEG fraction in [0, 1]")

    def targets(self) -> list[str]:
        names = ["blur_sigma"]
        if self.noise[1] > 0:
            names.append("noise")
        if self.jpeg_prob > 0:
            names.append("jpeg_quality")
        return names

    def draw(self, rng: np.random.Generator, count: int) -> list[Degradation]:
        draws = []
        for _ in range(count):
            jpeg = rng.uniform(*self.jpeg) if rng.random() < self.jpeg_prob else 0.0
            draws.append(Degradation(rng.uniform(*self.sigma), rng.uniform(*self.noise), round(jpeg)))
        return draws


@dataclasses.dataclass(frozen=True)
class DegradationEstimator:
    """``target = ((v - mean) / scale) @ coef[target] + intercept[target]``, clipped to the target's range, where
    ``v`` is the IDR vector ``feature`` (``d``, or ``d_prime``: the uncompressed D' a KD student learns to match)."""

    targets: list[str]
    mean: list[float]
    scale: list[float]
    coef: list[list[float]]
    intercept: list[float]
    fitted_on: dict
    feature: str = "d"  # heads written before the field existed read d

    def predict(self, d: np.ndarray) -> dict[str, float]:
        """The degradation estimate for one compact IDR ``d`` (C,)."""
        return {name: float(np.clip(v, *TARGETS[name][1])) for name, v in self._linear(d).items()}

    def _linear(self, d: np.ndarray) -> dict[str, float]:
        """The read-out before clipping."""
        if len(d) != len(self.mean):
            raise CheckpointError(f"degradation head expects an IDR of {len(self.mean)} values, got {len(d)}")
        z = (np.asarray(d, dtype=np.float64) - self.mean) / self.scale
        values = np.asarray(self.coef) @ z + np.asarray(self.intercept)
        return {name: float(v) for name, v in zip(self.targets, values, strict=True)}

    def fitted_range(self, name: str) -> tuple[float, float] | None:
        """The values of ``name`` the head was fitted on (JPEG: the compressed qualities and 100), if recorded."""
        ranges = self.fitted_on.get("ranges")
        if not ranges:
            return None
        low, high = ranges[TARGETS[name][0]]
        return (float(low), NO_JPEG_QUALITY) if name == "jpeg_quality" else (float(low), float(high))

    def read(self, d: np.ndarray) -> dict[str, float | str]:
        """:meth:`predict`, except that a value beyond the fitted range (by more than a tenth of its width) is
        replaced by a phrase saying so (e.g. ``"above 4.0, outside the fitted range"``): a linear read-out
        extrapolates, so a number there would be a guess."""
        reading: dict[str, float | str] = {}
        for name, value in self._linear(d).items():
            bounds = self.fitted_range(name)
            if bounds is not None:
                low, high = bounds
                margin = 0.1 * (high - low)
                if value > high + margin:
                    reading[name] = f"above {high:g}, outside the fitted range"
                    continue
                if value < low - margin:
                    reading[name] = f"below {low:g}, outside the fitted range"
                    continue
            reading[name] = float(np.clip(value, *TARGETS[name][1]))
        return reading

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
        return head


def _target_values(draws: Sequence[Degradation], name: str) -> np.ndarray:
    values = np.array([getattr(d, TARGETS[name][0]) for d in draws], dtype=np.float64)
    return np.where(values == 0, NO_JPEG_QUALITY, values) if name == "jpeg_quality" else values


def fit_ridge(
    features: np.ndarray,
    targets: dict[str, np.ndarray],
    fitted_on: dict,
    groups: np.ndarray | None = None,
    feature: str = "d",
) -> DegradationEstimator:
    """Standardise the features and fit one ridge regression per target, each with its regularisation chosen by
    leave-one-out (scikit-learn's RidgeCV). With ``groups`` (the image of each row), ``fitted_on`` also gets each
    target's cross-validated MAE (5 folds of whole images) next to that of a constant guess (the training mean),
    which says whether the IDR carries the degradation at all."""
    require("sklearn")
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import GroupKFold, cross_val_predict

    x = features.astype(np.float64)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    z, y = (x - mean) / scale, np.stack(list(targets.values()), axis=1)
    ridge = RidgeCV(alphas=np.logspace(-3, 3, 13), alpha_per_target=True)
    fitted_on = dict(fitted_on)
    if groups is not None and len(np.unique(groups)) >= 5:
        predicted = cross_val_predict(ridge, z, y, groups=groups, cv=GroupKFold(5)).reshape(y.shape)  # 1 target
        fitted_on["cv_mae"] = dict(zip(targets, np.abs(predicted - y).mean(axis=0).round(3).tolist(), strict=True))
        constant = np.abs(y - y.mean(axis=0)).mean(axis=0).round(3).tolist()
        fitted_on["constant_mae"] = dict(zip(targets, constant, strict=True))
    ridge.fit(z, y)
    coef, intercept = ridge.coef_.tolist(), ridge.intercept_.tolist()
    return DegradationEstimator(list(targets), mean.tolist(), scale.tolist(), coef, intercept, fitted_on, feature)


def fit_head(
    model,
    hr_paths: Sequence[Path],
    ranges: FitRanges,
    per_image: int = 8,
    crop: int = 384,
    seed: int = 0,
    feature: str = "d",
    **kw,
) -> DegradationEstimator:
    """Degrade each HR image (centre ``crop``; 0: whole) ``per_image`` times with draws from ``ranges``, encode
    (IDR vector ``feature``), fit."""
    rng = np.random.default_rng(seed)
    plan = [ranges.draw(rng, per_image) for _ in hr_paths]
    samples = collect_idr(model, hr_paths, plan, crop=crop, seed=seed, feature=feature, **kw)
    draws = [samples.degradations[i] for i in samples.setting]
    targets = {name: _target_values(draws, name) for name in ranges.targets()}
    fitted_on = {"images": len(hr_paths), "samples": len(draws), "ranges": dataclasses.asdict(ranges), "seed": seed,
                 "crop": crop}  # fmt: skip
    return fit_ridge(samples.features, targets, fitted_on, groups=samples.image, feature=feature)


def read_head(source: str | os.PathLike) -> DegradationEstimator | None:
    """The degradation head stored in a model file (bundled name or path); None when it has none (or is not ours)."""
    path = model_file(source)
    if path.suffix != ".safetensors" or not path.is_file():
        return None
    text = read_metadata(path).get(HEAD_KEY)
    return DegradationEstimator.from_json(text) if text else None


def write_head(source: str | os.PathLike, head: DegradationEstimator, output: str | os.PathLike) -> None:
    """Write the model (bundled name, our file or an official one) to ``output`` in our format with ``head`` in its
    metadata; the other metadata of our files (model card, summary) is kept."""
    path = model_file(source)
    kept = read_metadata(path) if path.suffix == ".safetensors" else {}
    kept = {k: v for k, v in kept.items() if not k.startswith("kdsr_")}
    save_model(load_model(path), output, metadata={**kept, HEAD_KEY: head.to_json()})


def estimate_image(model, head: DegradationEstimator, image: np.ndarray) -> dict[str, float | str]:
    """The degradation a student sees in an (H, W, 1|3|4) uint8/uint16 image (alpha ignored, grey as RGB), as
    :meth:`DegradationEstimator.read` words it."""
    if isinstance(model, KDSRTeacher):
        raise KDSRError("estimating needs a student model (a teacher needs the HR image)")
    image = image[:, :, None] if image.ndim == 2 else image
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[:, :, :3]
    return head.read(encode(model, image_to_tensor(rgb), None, head.feature))


def load_estimator(source: str | os.PathLike):
    """``image -> estimate`` for a model (bundled name or file) that carries a degradation head, else None: what
    ``kdsr estimate``, ``kdsr upscale -v`` and ``kdsr serve`` read images with."""
    head = read_head(source)
    if head is None:
        return None
    model = load_model(source)
    return lambda image: estimate_image(model, head, image)


def head_errors(
    model, head: DegradationEstimator, hr_paths: Sequence[Path], settings: Sequence[Degradation], seed: int = 0, **kw
) -> dict[str, dict[str, float]]:
    """Mean absolute error of each target per setting, on whole images degraded as ``kdsr degrade`` does."""
    samples = collect_idr(model, hr_paths, settings, seed=seed, feature=head.feature, **kw)
    errors: dict[str, dict[str, float]] = {}
    for index, degradation in enumerate(samples.degradations):
        rows = samples.features[samples.setting == index]
        predictions = [head.predict(row) for row in rows]
        errors[degradation.label] = {
            name: float(np.mean([abs(p[name] - _target_values([degradation], name)[0]) for p in predictions]))
            for name in head.targets
        }
    return errors


def describe(estimate: dict[str, float | str]) -> str:
    """One line: "blur sigma (HR px) 1.2, noise (0-255) above 20, outside the fitted range"."""
    return ", ".join(
        f"{UNITS[name]} {value:.1f}" if isinstance(value, float) else f"{UNITS[name]} {value}"
        for name, value in estimate.items()
    )
