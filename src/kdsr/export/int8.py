"""INT8 for the OpenVINO runtime (the ``openvino`` extra with NNCF): the generator graph quantised after training
with NNCF's accuracy-controlled post-training quantisation, calibrated on HR photos (the package's six calibration
crops, or the user's folder) turned into everyday and Gaussian-blur LR inputs; layers go back to float until no
input case loses more than ``max_drop`` dB of PSNR against the HR compared with the fp32 graph. The encoder graphs
stay in float (they run once per image on a bounded view). The result is cached beside the split graphs.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from kdsr.atomic import atomic_folder
from kdsr.errors import KDSRError
from kdsr.inference.graph_files import cache_root
from kdsr.inference.onnx_runtime import SplitGraphs, architecture
from kdsr.inference.openvino_core import as_infer, compile_graph, openvino_module

#: default PSNR budget (dB) of the INT8 generator against the fp32 one on the worst calibration case: 0.02 on six
#: calibration photos kept kdsr-iso-x4 within 0.05 dB on Set5 and Set14 (0.05 did not: -0.09 on Set5)
INT8_MAX_DROP = 0.02
#: the named cases (kdsr.degradations.recipes.NAMED_CASES) the calibration pairs are made with: everyday ones and
#: two of the paper's Gaussian8 blurs, so that every bundled model meets inputs it was trained for
CALIBRATION_CASES = ("clean", "jpeg60", "blur1.0+noise5", "camera", "gaussian2.0", "gaussian3.0")


def _calibration_folder(calibration: str | os.PathLike | None) -> Path:
    """The folder of HR calibration photos: the caller's, or the package's."""
    folder = Path(calibration) if calibration else default_calibration_folder()
    if not folder.is_dir():
        raise KDSRError(f"{folder}: calibration folder not found")
    return folder


def _nncf():
    try:
        import nncf
    except ImportError:
        raise KDSRError("INT8 needs NNCF: pip install 'kdsr[openvino]'") from None
    return nncf


def default_calibration_folder() -> Path:
    """Six 192x192 crops of natural photos shipped with the package (BSDS500 test images, never used to evaluate)."""
    return Path(__file__).resolve().parents[1] / "assets" / "calibration"


def _calibration_lr(hr, case: str, scale: int, generator):
    from kdsr.degradations.recipes import named_lr

    return named_lr(hr, case, scale, generator)


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
    ov, nncf = openvino_module(), _nncf()
    core = ov.Core()
    model = core.read_model(str(generator_path))
    reference = case_psnr(compile_graph(core, model, "fp32"), pairs)
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


def int8_generator(files: list[Path], config: dict, calibration, max_drop: float | None = None) -> Path:
    """The cached INT8 generator IR of the split graphs ``files``, keyed by the generator graph, the calibration
    images, ``max_drop`` and the OpenVINO and NNCF versions (any change rebuilds it); built atomically on first use."""
    ov, nncf = openvino_module(), _nncf()
    from kdsr.image_io import list_images

    max_drop = INT8_MAX_DROP if max_drop is None else max_drop
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
    features, head = (compile_graph(core, core.read_model(str(path)), "fp32") for path in files[:2])
    kdsr_config = architecture(config, files[0].parent)
    graphs = SplitGraphs(as_infer(features), as_infer(head), None, kdsr_config)
    pairs = calibration_pairs(calibration_folder, graphs.encoder, kdsr_config.scale)
    quantized = quantize_generator(files[2], pairs, max_drop)
    with atomic_folder(target) as building:
        ov.save_model(quantized, str(building / "generator.xml"), compress_to_fp16=False)
    return xml
