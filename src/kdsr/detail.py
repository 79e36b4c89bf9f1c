"""The detail dial (``kdsr upscale --detail D``): ESRGAN's network interpolation between a faithful model and its
sharp GAN partner, ``(1 - D) * faithful + D * sharp`` weight by weight (Wang et al., ESRGAN, section 3.4).

0 is the faithful model, 1 the sharp one; in between, detail rises smoothly without the noise a pixel blend of the
two outputs would add. The two share their architecture, and their degradation encoder (the GAN model is
fine-tuned from the faithful one with its encoder kept), so the IDR, the estimator and the dials of ``--assume`` /
``--denoise`` mean the same at every D. A blend is written once per (pair, D) under ``$KDSR_CACHE/detail`` as a
model file, keyed by the two files' contents, so everything that takes a model file takes it (its graphs are written
from its weights on first use, :mod:`kdsr.export.onnx_writer`). Torch-free: the weights are blended with numpy.
"""

from __future__ import annotations

import os
from pathlib import Path

from kdsr.atomic import atomic_write_bytes
from kdsr.bundled import default_model_name, model_file
from kdsr.errors import KDSRError
from kdsr.inference.graph_files import cache_root, file_digest

#: faithful bundled model -> its sharp partner
DETAIL_PARTNERS = {"kdsr-real-x4": "kdsr-real-x4-gan"}
#: D is rounded to this many decimals: finer steps change nothing one can see, and each value is a cached file
DETAIL_DECIMALS = 2


def blend_files(faithful: Path, sharp: Path, detail: float, target: Path) -> None:
    """Write ``(1 - detail) * faithful + detail * sharp`` as the model file ``target``, with the faithful model's
    metadata (architecture, estimator) and a summary saying what it is."""
    from safetensors import safe_open
    from safetensors.numpy import save

    with safe_open(faithful, "np") as a, safe_open(sharp, "np") as b:
        if set(a.keys()) != set(b.keys()):
            raise KDSRError(f"{faithful.name} and {sharp.name} differ in architecture: they cannot be blended")
        tensors = {}
        for key in a.keys():  # noqa: SIM118 - safe_open has keys(), not iteration
            x, y = a.get_tensor(key), b.get_tensor(key)
            if x.shape != y.shape:
                raise KDSRError(f"{faithful.name} and {sharp.name} differ in architecture ({key}): cannot be blended")
            tensors[key] = ((1 - detail) * x + detail * y).astype(x.dtype) if x.dtype.kind == "f" else x
        metadata = dict(a.metadata() or {})
    metadata["summary"] = f"{faithful.stem} at detail {detail:g} (network interpolation with {sharp.stem})"
    metadata["source"] = f"kdsr --detail {detail:g}: {faithful.name} blended with {sharp.name}"
    atomic_write_bytes(target, save(tensors, metadata))


def with_detail(model: str | os.PathLike | None, detail: float) -> str | None:
    """The model to run for ``detail`` D in [0, 1]: ``model`` itself at 0 (None: the default), its sharp partner at
    1, their cached blend in between. Only models with a partner (:data:`DETAIL_PARTNERS`) take D > 0."""
    if not 0 <= detail <= 1:
        raise KDSRError(f"--detail must be in 0-1 (0: faithful, 1: the sharpest), got {detail:g}")
    detail = round(detail, DETAIL_DECIMALS)
    if detail == 0:
        return None if model is None else str(model)
    name = str(model) if model is not None else default_model_name()
    partner = DETAIL_PARTNERS.get(name)
    if partner is None:
        pairs = ", ".join(f"{a} (with {b})" for a, b in DETAIL_PARTNERS.items())
        raise KDSRError(f"--detail needs a model with a sharp partner: {pairs}; {name} has none")
    faithful, sharp = model_file(name), model_file(partner)
    if not (faithful.is_file() and sharp.is_file()):
        raise KDSRError(f"--detail needs the bundled models {name} and {partner}; this installation lacks one")
    if detail == 1:
        return str(sharp)
    digests = file_digest(faithful, 12) + file_digest(sharp, 12)  # a new version of either: a new blend
    target = cache_root() / "detail" / f"{name}-detail{detail:.2f}-{digests}.safetensors"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        blend_files(faithful, sharp, detail, target)
    return str(target)
