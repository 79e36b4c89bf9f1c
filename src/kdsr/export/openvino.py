"""OpenVINO runtime for the split graphs (the ``openvino`` extra): the same tiling path as torch and ONNX, with
OpenVINO's CPU plugin, which reaches a larger share of the CPU's peak.

INT8 (the ``openvino`` extra with NNCF) quantises the generator graph after training with NNCF's accuracy-controlled
post-training quantisation: calibrated on HR photos (the package's six calibration crops, or the user's folder)
turned into everyday LR inputs, and any layer whose INT8 version costs more than ``max_drop`` dB of PSNR against the
HR goes back to float. The encoder graphs stay in float (they run once per image on a bounded view).

A model given by name or file is exported to split ONNX graphs once and cached under ``$KDSR_CACHE`` (default
``~/.cache/kdsr``), keyed by the model file's SHA-256, so the next run starts at once. The precision is pinned with
``INFERENCE_PRECISION_HINT``, so that fp32 means fp32 (the CPU plugin's default on bf16-capable CPUs is bf16).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from kdsr.errors import KDSRError
from kdsr.export.onnx import SPLIT_CONFIG, SPLIT_GRAPHS, SplitGraphs, read_split_folder

#: precision name -> OpenVINO inference precision hint (int8: the float layers at the plugin's default)
PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": None}
#: default PSNR budget (dB) of the INT8 generator against the float one on the calibration pairs
INT8_MAX_DROP = 0.05
#: the everyday cases the calibration pairs are made with (kdsr.evaluation.protocols.EVERYDAY_CASES)
CALIBRATION_CASES = ("clean", "jpeg60", "blur1.0+noise5", "camera")


def default_calibration_folder() -> Path:
    """Six 192x192 crops of natural photos shipped with the package (BSDS500 test images, never used to evaluate)."""
    return Path(__file__).resolve().parents[1] / "assets" / "calibration"


def cache_root() -> Path:
    return Path(os.environ.get("KDSR_CACHE") or Path.home() / ".cache" / "kdsr")


def split_graphs_for(source: str | os.PathLike) -> Path:
    """The split ONNX folder of a model: ``source`` itself when it is one, else a cached export of the bundled
    model or checkpoint file (built on first use, atomically: a temp folder renamed into place)."""
    from kdsr.bundled import model_file

    if Path(source).is_dir():
        return read_split_folder(source)[0]
    path = model_file(source)
    if not path.is_file():
        raise KDSRError(f"unknown model '{source}': not a bundled model, checkpoint or split ONNX folder")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    folder = cache_root() / "onnx-split" / f"{path.stem}-{digest}"
    if not all((folder / name).is_file() for name in (*SPLIT_GRAPHS, SPLIT_CONFIG)):
        from kdsr.checkpoint import load_model
        from kdsr.export.onnx import export_onnx_split

        folder.parent.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            export_onnx_split(load_model(path), building)
            shutil.rmtree(folder, ignore_errors=True)
            building.rename(folder)
        finally:
            shutil.rmtree(building, ignore_errors=True)
    return folder


def _openvino():
    try:
        import openvino as ov
    except ImportError:
        raise KDSRError("the openvino backend needs OpenVINO: pip install 'kdsr[openvino]'") from None
    return ov


def _compile(core, model, precision: str):
    hint = PRECISION_HINTS[precision]
    return core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint} if hint else {})


def calibration_pairs(folder: str | os.PathLike | None, encoder, scale: int) -> list[tuple[dict, np.ndarray]]:
    """(generator inputs {"lr", "d"}, HR uint8) for each HR image of ``folder`` (default: the package's) and each of
    :data:`CALIBRATION_CASES`; ``encoder`` maps an LR tensor to the IDR (``.d``). Fixed seeds: the same folder always
    gives the same pairs."""
    import torch

    from kdsr.evaluation.protocols import everyday_lr
    from kdsr.image_io import list_images, read_rgb8
    from kdsr.image_tensor import image_to_tensor

    folder = Path(folder) if folder else default_calibration_folder()
    if not folder.is_dir():
        raise KDSRError(f"{folder}: calibration folder not found")
    pairs = []
    for index, path in enumerate(list_images(folder)):
        hr = read_rgb8(path)
        h, w = (v - v % scale for v in hr.shape[:2])
        if min(h, w) < 16 * scale:
            raise KDSRError(f"{path}: too small to calibrate with (at least {16 * scale} pixels a side)")
        hr = hr[:h, :w]
        for case in CALIBRATION_CASES:
            generator = torch.Generator().manual_seed(index)
            lr = everyday_lr(image_to_tensor(hr), case, scale, generator).float()
            d = encoder(lr).d
            pairs.append(({"lr": lr.numpy(), "d": d.float().numpy()}, hr))
    if not pairs:
        raise KDSRError(f"{folder}: no images to calibrate with")
    return pairs


def _mean_psnr(infer, pairs) -> float:
    from kdsr.metrics.psnr_ssim import psnr

    values = []
    for feeds, hr in pairs:
        sr = next(iter(infer(feeds).values()))[0].transpose(1, 2, 0)
        values.append(psnr((np.clip(sr, 0, 1) * 255).round().astype(np.uint8), hr))
    return float(np.mean(values))


def quantize_generator(generator_path: str | os.PathLike, pairs, max_drop: float = INT8_MAX_DROP):
    """The generator graph quantised to INT8 by NNCF with accuracy control: mean Y PSNR over ``pairs`` (see
    :func:`calibration_pairs`) may fall at most ``max_drop`` dB below the float graph's. Returns an ``ov.Model``."""
    ov = _openvino()
    try:
        import nncf
    except ImportError:
        raise KDSRError("INT8 needs NNCF: pip install 'kdsr[openvino]'") from None
    model = ov.Core().read_model(str(generator_path))
    dataset = nncf.Dataset([feeds for feeds, _ in pairs])
    validation = nncf.Dataset(pairs)
    return nncf.quantize_with_accuracy_control(
        model,
        calibration_dataset=dataset,
        validation_dataset=validation,
        validation_fn=lambda compiled, items: _mean_psnr(compiled, list(items)),
        max_drop=max_drop,
        drop_type=nncf.DropType.ABSOLUTE,
        subset_size=len(pairs),
    )


class OpenVinoGraphs(SplitGraphs):
    """Split graphs compiled by OpenVINO for the CPU at a pinned precision (``fp32`` or ``bf16``), or with the
    generator quantised to INT8 (``int8``; built on first use and cached, see :func:`quantize_generator`)."""

    def __init__(
        self,
        source: str | os.PathLike,
        precision: str = "fp32",
        calibration: str | os.PathLike | None = None,
        max_drop: float = INT8_MAX_DROP,
    ) -> None:
        ov = _openvino()
        if precision not in PRECISION_HINTS:
            raise KDSRError(f"the openvino backend runs {', '.join(PRECISION_HINTS)}, not {precision}")
        folder, kdsr_config = read_split_folder(split_graphs_for(source))
        core = ov.Core()
        models = [core.read_model(str(folder / name)) for name in SPLIT_GRAPHS]
        if precision == "int8":
            models[2] = core.read_model(str(_int8_generator(folder, kdsr_config, calibration, max_drop)))
        compiled = [_compile(core, model, precision) for model in models]

        def infer(model):
            return lambda feeds: [value for value in model(feeds).values()]

        super().__init__(*(infer(model) for model in compiled), kdsr_config)
        self.precision = precision


def _int8_generator(folder: Path, kdsr_config, calibration, max_drop: float) -> Path:
    """The cached INT8 generator IR of a split folder, keyed by the graph, the calibration images, ``max_drop`` and
    the OpenVINO and NNCF versions (any change rebuilds it); built atomically on first use."""
    ov = _openvino()
    try:
        import nncf
    except ImportError:
        raise KDSRError("INT8 needs NNCF: pip install 'kdsr[openvino]'") from None
    from kdsr.image_io import list_images

    calibration_folder = Path(calibration) if calibration else default_calibration_folder()
    if not calibration_folder.is_dir():
        raise KDSRError(f"{calibration_folder}: calibration folder not found")
    key = hashlib.sha256((folder / SPLIT_GRAPHS[2]).read_bytes())
    for path in list_images(calibration_folder):
        key.update(path.read_bytes())
    key.update(f"{max_drop}|{ov.__version__}|{nncf.__version__}".encode())
    target = cache_root() / "openvino-int8" / key.hexdigest()[:16]
    xml = target / "generator.xml"
    if xml.is_file() and xml.with_suffix(".bin").is_file():
        return xml
    graphs = OpenVinoGraphs(folder, "fp32")
    pairs = calibration_pairs(calibration_folder, graphs.encoder, kdsr_config.scale)
    quantized = quantize_generator(folder / SPLIT_GRAPHS[2], pairs, max_drop)
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        ov.save_model(quantized, str(building / "generator.xml"))
        shutil.rmtree(target, ignore_errors=True)
        building.rename(target)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return xml
