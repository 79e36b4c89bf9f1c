"""Fitting and using a model's degradation estimator with torch: a ridge regression that reads the degradation
(blur width, noise level, JPEG quality) off the IDR, fitted on synthetic degradations of HR images in ``kdsr degrade``
units and stored as JSON under the ``degradation_head`` metadata key of the model file, so a bundled model carries
it. The estimator itself and reading it need numpy only (:mod:`kdsr.readout.head`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kdsr.bundled import model_file
from kdsr.checkpoint import load_model, read_metadata, save_model
from kdsr.errors import KDSRError
from kdsr.image_tensor import image_to_tensor
from kdsr.insight._optional import require
from kdsr.insight.collect import Degradation, collect_idr, encode
from kdsr.models import KDSRTeacher
from kdsr.readout.head import (
    HEAD_KEY,
    NO_JPEG_QUALITY,
    TARGETS,
    DegradationEstimator,
    as_rgb,
    read_head,
    read_out_terms,
)
from kdsr.readout.steering import IDRMap, label_terms


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


def _target_values(draws: Sequence[Degradation], name: str) -> np.ndarray:
    values = np.array([getattr(d, TARGETS[name][0]) for d in draws], dtype=np.float64)
    return np.where(values == 0, NO_JPEG_QUALITY, values) if name == "jpeg_quality" else values


def fit_ridge(
    features: np.ndarray,
    targets: dict[str, np.ndarray],
    fitted_on: dict,
    groups: np.ndarray | None = None,
    feature: str = "d",
    terms: str = "linear",
) -> DegradationEstimator:
    """Standardise the features and fit one ridge regression per target on their ``terms`` (linear or quadratic,
    see :func:`~kdsr.readout.head.read_out_terms`), each with its regularisation chosen by leave-one-out
    (scikit-learn's RidgeCV). With ``groups`` (the image of each row), ``fitted_on`` also gets each
    target's cross-validated MAE (5 folds of whole images) next to that of a constant guess (the training mean),
    which says whether the IDR carries the degradation at all."""
    require("sklearn")
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import GroupKFold, cross_val_predict

    x = features.astype(np.float64)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    z, y = read_out_terms((x - mean) / scale, terms), np.stack(list(targets.values()), axis=1)
    ridge = RidgeCV(alphas=np.logspace(-3, 4, 15), alpha_per_target=True)
    fitted_on = dict(fitted_on)
    if groups is not None and len(np.unique(groups)) >= 5:
        predicted = cross_val_predict(ridge, z, y, groups=groups, cv=GroupKFold(5)).reshape(y.shape)  # 1 target
        fitted_on["cv_mae"] = dict(zip(targets, np.abs(predicted - y).mean(axis=0).round(3).tolist(), strict=True))
        constant = np.abs(y - y.mean(axis=0)).mean(axis=0).round(3).tolist()
        fitted_on["constant_mae"] = dict(zip(targets, constant, strict=True))
    ridge.fit(z, y)
    coef, intercept = ridge.coef_.tolist(), ridge.intercept_.tolist()
    return DegradationEstimator(
        list(targets), mean.tolist(), scale.tolist(), coef, intercept, fitted_on, feature, terms
    )


def fit_head(
    model,
    hr_paths: Sequence[Path],
    ranges: FitRanges,
    per_image: int = 8,
    crop: int = 384,
    seed: int = 0,
    feature: str = "d",
    terms: str = "linear",
    **kw,
) -> DegradationEstimator:
    """Degrade each HR image (centre ``crop``; 0: whole) ``per_image`` times with draws from ``ranges``, encode
    (IDR vector ``feature``), fit (``terms``: linear or quadratic read-out)."""
    samples, draws, fitted_on = _draw_and_collect(model, hr_paths, ranges, per_image, crop, seed, feature, **kw)
    targets = {name: _target_values(draws, name) for name in ranges.targets()}
    return fit_ridge(samples.features, targets, fitted_on, groups=samples.image, feature=feature, terms=terms)


def _draw_and_collect(model, hr_paths, ranges: FitRanges, per_image: int, crop: int, seed: int, feature: str, **kw):
    """(samples, the degradation of each row, what the fit is fitted on): each HR image degraded ``per_image`` times
    with seeded draws from ``ranges``, its IDR vector ``feature`` collected."""
    rng = np.random.default_rng(seed)
    plan = [ranges.draw(rng, per_image) for _ in hr_paths]
    samples = collect_idr(model, hr_paths, plan, crop=crop, seed=seed, feature=feature, **kw)
    draws = [samples.degradations[i] for i in samples.setting]
    fitted_on = {"images": len(hr_paths), "samples": len(draws), "ranges": dataclasses.asdict(ranges), "seed": seed,
                 "crop": crop}  # fmt: skip
    return samples, draws, fitted_on


def write_head(source: str | os.PathLike, head: DegradationEstimator, output: str | os.PathLike) -> None:
    """Write the model (bundled name, our file or an official one) to ``output`` in our format with ``head`` in its
    metadata; the other metadata of our files (model card, summary, IDR map) is kept."""
    write_metadata_entry(source, HEAD_KEY, head.to_json(), output)


def write_metadata_entry(source: str | os.PathLike, key: str, text: str, output: str | os.PathLike) -> None:
    """Write the model to ``output`` in our format with ``key: text`` in its metadata, the rest of it kept."""
    path = model_file(source)
    kept = read_metadata(path) if path.suffix == ".safetensors" else {}
    kept = {k: v for k, v in kept.items() if not k.startswith("kdsr_")}
    save_model(load_model(path), output, metadata={**kept, key: text})


def fit_idr_map(
    model, hr_paths: Sequence[Path], ranges: FitRanges, per_image: int = 8, crop: int = 384, seed: int = 0, **kw
) -> IDRMap:
    """The inverse read-out (:class:`~kdsr.readout.steering.IDRMap`): degrade each HR image ``per_image`` times with
    draws from ``ranges``, collect the compact IDR ``d`` of each, and fit ``d`` on the degradations' terms by ridge
    regression; ``fitted_on`` records the share of the IDR's variance the degradation explains (R^2, 5 folds of
    whole images)."""
    require("sklearn")
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GroupKFold, cross_val_predict

    samples, draws, fitted_on = _draw_and_collect(model, hr_paths, ranges, per_image, crop, seed, "d", **kw)
    targets = ranges.targets()
    x = label_terms(np.stack([_target_values(draws, name) for name in targets], axis=1), targets)
    y = samples.features.astype(np.float64)
    ridge = Ridge(alpha=1e-3)
    if len(np.unique(samples.image)) >= 5:
        predicted = cross_val_predict(ridge, x, y, groups=samples.image, cv=GroupKFold(5))
        fitted_on["cv_r2"] = round(float(1 - ((predicted - y) ** 2).sum() / ((y - y.mean(axis=0)) ** 2).sum()), 4)
    ridge.fit(x, y)
    return IDRMap(targets, ridge.coef_.tolist(), ridge.intercept_.tolist(), fitted_on)


def estimate_image(model, head: DegradationEstimator, image: np.ndarray) -> dict[str, float | str]:
    """The degradation a student sees in an (H, W, 1|3|4) uint8/uint16 image (alpha ignored, grey as RGB), as
    :meth:`DegradationEstimator.read` words it."""
    if isinstance(model, KDSRTeacher):
        raise KDSRError("estimating needs a student model (a teacher needs the HR image)")
    return head.read(encode(model, image_to_tensor(as_rgb(image)), None, head.feature))


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
