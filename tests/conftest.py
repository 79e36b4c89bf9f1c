"""Shared fixtures: tiny models, synthetic images, and access to ../shared (tests using it skip without it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kdsr.models import create_model

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
ASSETS = REPO / "assets"
FIXTURES = Path(__file__).parent / "fixtures"


def tiny_model(teacher: bool = False, seed: int = 0, **overrides):
    """A small random KDSR network (C=8, N=2, R=1 unless overridden), deterministic for a seed."""
    torch.manual_seed(seed)
    config = {"n_feats": 8, "n_blocks": 2, "n_resblocks": 1, **overrides}
    return create_model("kdsr-s", teacher=teacher, **config).eval()


def synthetic_image(height: int, width: int, channels: int = 3, dtype=np.uint8, seed: int = 0) -> np.ndarray:
    """Smooth gradients plus texture, so that upscaled output is not trivially constant."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = [0.5 + 0.4 * np.sin(x / 5 + c) * np.cos(y / 7 - c) for c in range(channels)]
    image = np.stack(base, axis=2) + rng.normal(0, 0.03, (height, width, channels))
    peak = np.iinfo(dtype).max
    return np.clip(np.rint(image * peak), 0, peak).astype(dtype)


STEERED_TARGETS = ["blur_sigma", "noise", "jpeg_quality"]


def random_idr_map(channels: int, seed: int = 0):
    """An IDR map of blur, noise and JPEG with random coefficients (a stand-in for a fitted one)."""
    from kdsr.readout.steering import IDRMap, label_terms

    rng = np.random.default_rng(seed)
    terms = label_terms(np.zeros((1, 3)), STEERED_TARGETS).shape[1]
    return IDRMap(
        STEERED_TARGETS, rng.normal(0, 0.5, (channels, terms)).tolist(), rng.normal(0, 0.1, channels).tolist(), {}
    )


def random_estimator(features: int, seed: int = 1):
    """A degradation estimator on D' with random coefficients, reading about blur 1.5, noise 10, JPEG 70."""
    from kdsr.readout.head import DegradationEstimator

    rng = np.random.default_rng(seed)
    coef = rng.normal(0, 1, (3, features)).tolist()
    return DegradationEstimator(STEERED_TARGETS, [0.0] * features, [1.0] * features, coef, [1.5, 10.0, 70.0], {},
                                "d_prime")  # fmt: skip


def steerable_model(path: Path) -> Path:
    """A tiny energy model file at ``path`` that carries an estimator and an IDR map (``--assume`` / ``--denoise``
    work on it)."""
    from kdsr.checkpoint import save_model
    from kdsr.readout.head import HEAD_KEY
    from kdsr.readout.steering import MAP_KEY

    metadata = {HEAD_KEY: random_estimator(4 * 8).to_json(), MAP_KEY: random_idr_map(8).to_json()}
    save_model(tiny_model(encoder="energy"), path, metadata=metadata)
    return path


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not available (needs ../shared beside the repo)")
    return path


def official_keys(preset: str, teacher: bool) -> dict[str, tuple[int, ...]]:
    """Official state-dict keys and shapes (tests/fixtures/official-keys-*.json, read off the official classes), in
    file order."""
    if preset == "kdsr-gan":
        data = json.loads((FIXTURES / "official-keys-gan.json").read_text())
        entries = data["BlindSR_TA" if teacher else "BlindSR_ST"]["keys"]
        return {e["key"]: tuple(e["shape"]) for e in entries}
    suffix = {"kdsr-m": "M", "kdsr-l": "L"}[preset]
    data = json.loads((FIXTURES / f"official-keys-{suffix}.json").read_text())
    return {k: tuple(shape) for k, shape in data["teacher" if teacher else "student"]["keys"]}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Four small synthetic HR images: a training set for tiny runs."""
    from kdsr.image_io import write_image

    folder = tmp_path_factory.mktemp("hr")
    for i in range(4):
        write_image(folder / f"{i}.png", synthetic_image(40, 48, seed=i))
    return folder


@pytest.fixture(autouse=True, scope="session")
def _model_cache(tmp_path_factory):
    """Exported graphs (``kdsr upscale``'s default backend is OpenVINO where it is installed) go into the test
    session's own cache, never into the user's ~/.cache/kdsr."""
    import os

    before = os.environ.get("KDSR_CACHE")
    os.environ["KDSR_CACHE"] = str(tmp_path_factory.mktemp("kdsr-cache"))
    yield
    if before is None:
        os.environ.pop("KDSR_CACHE", None)
    else:
        os.environ["KDSR_CACHE"] = before


@pytest.fixture(autouse=True, scope="session")
def _shipped_graphs():
    """The bundled models' split graphs in the package (generated, not in git; scripts/build_graphs.py): built here
    when a clone has none yet, or when a bundled model changed since they were built."""
    from kdsr.bundled import bundled_models
    from kdsr.inference.graph_cache import build_shipped_graphs
    from kdsr.inference.graph_files import shipped_split_folder

    for name, path in bundled_models().items():
        if shipped_split_folder(path.resolve()) is None:
            build_shipped_graphs(name, path)
