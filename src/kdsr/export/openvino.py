"""OpenVINO runtime for the split graphs (the ``openvino`` extra): the same tiling path as torch and ONNX, with
OpenVINO's CPU plugin, which reaches a larger share of the CPU's peak.

INT8 (the ``openvino`` extra with NNCF) quantises the generator graph after training with NNCF's accuracy-controlled
post-training quantisation: calibrated on HR photos (the package's six calibration crops, or the user's folder)
turned into everyday and Gaussian-blur LR inputs, and layers go back to float until no input case loses more than
``max_drop`` dB of PSNR against the HR compared with the fp32 graph. The encoder graphs stay in float (they run once
per image on a bounded view).

A model given by name or file is exported to split ONNX graphs once and cached under ``$KDSR_CACHE`` (default
``~/.cache/kdsr``), keyed by the model file's SHA-256, so the next run starts at once. The precision is pinned with
``INFERENCE_PRECISION_HINT``, so that fp32 means fp32 (the CPU plugin's default on bf16-capable CPUs is bf16).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from kdsr.atomic import atomic_folder
from kdsr.errors import KDSRError
from kdsr.export.onnx import SPLIT_CONFIG, SPLIT_GRAPHS, SplitGraphs, read_split_folder
from kdsr.models.kdsr import KDSRConfig

#: precision name -> OpenVINO inference precision hint (int8: the float layers at the plugin's default)
PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": None}
#: default PSNR budget (dB) of the INT8 generator against the fp32 one on the worst calibration case: 0.02 on six
#: calibration photos kept kdsr-iso-x4 within 0.05 dB on Set5 and Set14 (0.05 did not: -0.09 on Set5)
INT8_MAX_DROP = 0.02
#: the inputs the calibration pairs are made with: everyday cases (kdsr.evaluation.protocols.EVERYDAY_CASES) and
#: two of the paper's Gaussian8 blurs, so that every bundled model meets inputs it was trained for
CALIBRATION_CASES = ("clean", "jpeg60", "blur1.0+noise5", "camera", "gaussian2.0", "gaussian3.0")


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

        with atomic_folder(folder) as building:
            export_onnx_split(load_model(path), building)
    return folder


def _openvino():
    try:
        import openvino as ov
    except ImportError:
        raise KDSRError("the openvino backend needs OpenVINO: pip install 'kdsr[openvino]'") from None
    return ov


def _nncf():
    try:
        import nncf
    except ImportError:
        raise KDSRError("INT8 needs NNCF: pip install 'kdsr[openvino]'") from None
    return nncf


def _calibration_folder(calibration: str | os.PathLike | None) -> Path:
    """The folder of HR calibration photos: the caller's, or the package's."""
    folder = Path(calibration) if calibration else default_calibration_folder()
    if not folder.is_dir():
        raise KDSRError(f"{folder}: calibration folder not found")
    return folder


def _infer(compiled):
    """A compiled OpenVINO model as a :class:`SplitGraphs` ``infer`` callable (feeds -> outputs in order)."""
    return lambda feeds: list(compiled(feeds).values())


def _compile(core, model, precision: str):
    hint = PRECISION_HINTS[precision]
    return core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint} if hint else {})


def _calibration_lr(hr, case: str, scale: int, generator):
    from kdsr.degradations.classic import degrade
    from kdsr.degradations.kernels import isotropic_gaussian
    from kdsr.evaluation.protocols import everyday_lr

    if case.startswith("gaussian"):
        return degrade(hr, isotropic_gaussian(float(case.removeprefix("gaussian"))), scale, 0.0, generator)
    return everyday_lr(hr, case, scale, generator)


class CalibrationPair(NamedTuple):
    """Generator inputs {"lr", "d"} made from an HR photo by one of :data:`CALIBRATION_CASES`, and the HR (uint8)."""

    feeds: dict
    hr: np.ndarray
    case: str


def calibration_pairs(folder: str | os.PathLike | None, encoder, scale: int) -> list[CalibrationPair]:
    """One pair for each HR image of ``folder`` (default: the package's) and each of :data:`CALIBRATION_CASES`;
    ``encoder`` maps an LR tensor to the IDR (``.d``). Fixed seeds: the same folder always gives the same pairs."""
    import torch

    from kdsr.image_io import list_images, read_rgb8
    from kdsr.image_tensor import image_to_tensor

    folder = _calibration_folder(folder)
    pairs = []
    for index, path in enumerate(list_images(folder)):
        hr = read_rgb8(path)
        h, w = (v - v % scale for v in hr.shape[:2])
        if min(h, w) < 16 * scale:
            raise KDSRError(f"{path}: too small to calibrate with (at least {16 * scale} pixels a side)")
        hr = hr[:h, :w]
        for case in CALIBRATION_CASES:
            lr = _calibration_lr(image_to_tensor(hr), case, scale, torch.Generator().manual_seed(index)).float()
            pairs.append(CalibrationPair({"lr": lr.numpy(), "d": encoder(lr).d.float().numpy()}, hr, case))
    if not pairs:
        raise KDSRError(f"{folder}: no images to calibrate with")
    return pairs


def case_psnr(infer, pairs: list[CalibrationPair]) -> dict[str, float]:
    """Mean Y PSNR (dB, 4-pixel border) of the generator ``infer`` (feeds -> outputs) over the pairs of each case."""
    from kdsr.metrics.psnr_ssim import psnr

    values: dict[str, list[float]] = {}
    for pair in pairs:
        sr = next(iter(infer(pair.feeds).values()))[0].transpose(1, 2, 0)
        values.setdefault(pair.case, []).append(psnr((np.clip(sr, 0, 1) * 255).round().astype(np.uint8), pair.hr))
    return {case: float(np.mean(v)) for case, v in values.items()}


def quantize_generator(generator_path: str | os.PathLike, pairs, max_drop: float = INT8_MAX_DROP):
    """The generator graph quantised to INT8 by NNCF with accuracy control: on every case of ``pairs`` (see
    :func:`calibration_pairs`) the mean PSNR may fall at most ``max_drop`` dB below the fp32 graph's; layers that
    cost more go back to float. Returns an ``ov.Model``."""
    ov, nncf = _openvino(), _nncf()
    core = ov.Core()
    model = core.read_model(str(generator_path))
    reference = case_psnr(_compile(core, model, "fp32"), pairs)
    mean_reference = float(np.mean(list(reference.values())))

    def worst_case_change(compiled, items) -> float:
        """The float graph's mean PSNR less the largest loss of any case (NNCF also divides by the metric, so it
        must not be 0)."""
        changes = [value - reference[case] for case, value in case_psnr(compiled, list(items)).items()]
        return mean_reference + min(changes)

    return nncf.quantize_with_accuracy_control(
        model,
        calibration_dataset=nncf.Dataset([pair.feeds for pair in pairs]),
        validation_dataset=nncf.Dataset(pairs),
        validation_fn=worst_case_change,
        max_drop=max_drop,
        drop_type=nncf.DropType.ABSOLUTE,
        subset_size=len(pairs),
    )


#: An OpenVINO export (``kdsr export --format openvino``): the split graphs as IR, and the architecture.
IR_GRAPHS = tuple(name.replace(".onnx", ".xml") for name in SPLIT_GRAPHS)
#: What an OpenVINO export holds beyond the graphs: {"int8": whether the generator is quantised}.
IR_INFO = "openvino.json"


def _graph_files(source: str | os.PathLike) -> tuple[list[Path], object, bool]:
    """(the three graph files, the architecture, whether the generator is already INT8) of an OpenVINO export
    folder, a split ONNX folder, or a bundled model / checkpoint (exported to split ONNX on first use)."""
    folder = Path(source)
    if folder.is_dir() and any((folder / name).is_file() for name in IR_GRAPHS):
        missing = [name for name in (*IR_GRAPHS, SPLIT_CONFIG, IR_INFO) if not (folder / name).is_file()]
        if missing:
            raise KDSRError(f"{folder}: not an OpenVINO export (missing {', '.join(missing)})")
        try:
            kdsr_config = KDSRConfig(**json.loads((folder / SPLIT_CONFIG).read_text()))
            quantized = bool(json.loads((folder / IR_INFO).read_text())["int8"])
        except (ValueError, TypeError, KeyError) as e:
            raise KDSRError(f"{folder}: unreadable OpenVINO export ({type(e).__name__}: {e})") from None
        return [folder / name for name in IR_GRAPHS], kdsr_config, quantized
    folder, kdsr_config = read_split_folder(split_graphs_for(source))
    return [folder / name for name in SPLIT_GRAPHS], kdsr_config, False


class OpenVinoGraphs(SplitGraphs):
    """Split graphs compiled by OpenVINO for the CPU at a pinned precision (``fp32`` or ``bf16``), or with the
    generator quantised to INT8 (``int8``; built on first use and cached, see :func:`quantize_generator`). An
    OpenVINO export whose generator is INT8 runs as it is, with its float layers at ``precision``."""

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
        core = ov.Core()
        models, kdsr_config, quantized = _read_graphs(core, source, precision == "int8", calibration, max_drop)
        super().__init__(*(_infer(_compile(core, model, precision)) for model in models), kdsr_config)
        self.precision = "int8" if quantized else precision


def _read_graphs(core, source, int8: bool, calibration, max_drop: float) -> tuple[list, KDSRConfig, bool]:
    """(the three ``ov.Model`` graphs, the architecture, whether the generator is INT8) of a source as
    :func:`_graph_files` takes it; with ``int8`` a float generator is replaced by its cached INT8 version."""
    files, kdsr_config, quantized = _graph_files(source)
    models = [core.read_model(str(path)) for path in files]
    if int8 and not quantized:
        models[2] = core.read_model(str(_int8_generator(files, kdsr_config, calibration, max_drop)))
    return models, kdsr_config, int8 or quantized


def _int8_generator(files: list[Path], kdsr_config, calibration, max_drop: float) -> Path:
    """The cached INT8 generator IR of the split graphs ``files``, keyed by the generator graph, the calibration
    images, ``max_drop`` and the OpenVINO and NNCF versions (any change rebuilds it); built atomically on first use."""
    ov, nncf = _openvino(), _nncf()
    from kdsr.image_io import list_images

    calibration_folder = _calibration_folder(calibration)
    key = hashlib.sha256(files[2].read_bytes())
    if files[2].suffix == ".xml":
        key.update(files[2].with_suffix(".bin").read_bytes())
    for path in list_images(calibration_folder):
        key.update(path.read_bytes())
    key.update(f"{max_drop}|{ov.__version__}|{nncf.__version__}".encode())
    target = cache_root() / "openvino-int8" / key.hexdigest()[:16]
    xml = target / "generator.xml"
    if xml.is_file() and xml.with_suffix(".bin").is_file():
        return xml
    core = ov.Core()
    features, head = (_compile(core, core.read_model(str(path)), "fp32") for path in files[:2])
    graphs = SplitGraphs(_infer(features), _infer(head), None, kdsr_config)
    pairs = calibration_pairs(calibration_folder, graphs.encoder, kdsr_config.scale)
    quantized = quantize_generator(files[2], pairs, max_drop)
    with atomic_folder(target) as building:
        ov.save_model(quantized, str(building / "generator.xml"), compress_to_fp16=False)
    return xml


def export_openvino(
    source: str | os.PathLike,
    folder: str | os.PathLike,
    int8: bool = False,
    calibration: str | os.PathLike | None = None,
    max_drop: float = INT8_MAX_DROP,
) -> Path:
    """Write a model's split graphs as OpenVINO IR (``features.xml``, ``head.xml``, ``generator.xml`` with their
    ``.bin`` weights in fp32, ``kdsr_config.json``, ``openvino.json``) into ``folder``, the generator quantised to INT8
    when ``int8``; the folder appears whole or not at all. ``kdsr upscale --backend openvino -n FOLDER`` runs it."""
    ov = _openvino()
    folder = Path(folder)
    if folder.exists():
        raise KDSRError(f"{folder}: already exists (an OpenVINO export is written as a new folder)")
    models, kdsr_config, quantized = _read_graphs(ov.Core(), source, int8, calibration, max_drop)
    with atomic_folder(folder, replace=False) as building:
        for model, name in zip(models, IR_GRAPHS, strict=True):
            ov.save_model(model, str(building / name), compress_to_fp16=False)
        (building / SPLIT_CONFIG).write_text(json.dumps(dataclasses.asdict(kdsr_config)))
        (building / IR_INFO).write_text(json.dumps({"int8": quantized}))
    return folder
