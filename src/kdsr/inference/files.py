"""Upscaling files and folders: output naming, per-file error collection, progress over files."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch

from kdsr.errors import ImageError, KDSRError
from kdsr.image_io import ALPHA_EXTENSIONS, IMAGE_EXTENSIONS, read_image, write_image
from kdsr.inference.upscaler import Upscaler


@dataclasses.dataclass
class BatchResult:
    written: list[Path] = dataclasses.field(default_factory=list)
    failed: list[tuple[Path, str]] = dataclasses.field(default_factory=list)


def collect_inputs(source: str | Path) -> list[Path]:
    """A single file, or every visible regular file of a folder (sorted); non-images fail later, one by one."""
    source = Path(source)
    if source.is_file():
        return [source]
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise KDSRError(f"{source}: folder has no files")
        return files
    raise KDSRError(f"{source}: no such file or folder")


def output_path(source: Path, output: Path, single_file: bool, suffix: str, ext: str, has_alpha: bool) -> Path:
    """Where the result for ``source`` goes: ``output`` itself when it names an image file for a single input,
    else ``output/<stem>_<suffix>.<ext>`` (``ext`` "auto" keeps the input's; alpha forces a format that keeps it)."""
    if single_file and output.suffix.lower() in IMAGE_EXTENSIONS:
        return output
    extension = source.suffix.lower() if ext == "auto" else "." + ext.lower().lstrip(".")
    if extension not in IMAGE_EXTENSIONS:
        extension = ".png"
    if has_alpha and extension not in ALPHA_EXTENSIONS:
        extension = ".png"
    name = f"{source.stem}_{suffix}" if suffix else source.stem
    return output / f"{name}{extension}"


def upscale_files(
    source: str | Path,
    output: str | Path,
    upscaler: Upscaler,
    *,
    suffix: str = "out",
    ext: str = "auto",
    outscale: float | None = None,
    progress: bool | None = None,
) -> BatchResult:
    """Upscale a file or every file of a folder; bad files are recorded in the result, the others still written."""
    inputs = collect_inputs(source)
    single = Path(source).is_file()
    output = Path(output)
    if progress is None:
        progress = sys.stderr.isatty()
    result = BatchResult()
    from tqdm import tqdm

    for path in tqdm(inputs, desc="images", unit="img", disable=not progress or len(inputs) < 2):
        try:
            image = read_image(path)
            target = output_path(path, output, single, suffix, ext, image.shape[2] == 4)
            if target.resolve() == path.resolve():
                raise ImageError(f"{path}: output would overwrite the input; choose another -o or --suffix")
            write_image(target, upscaler.upscale(image, outscale=outscale, progress=progress))
            result.written.append(target)
        except KDSRError as e:
            result.failed.append((path, str(e)))
        except (MemoryError, torch.OutOfMemoryError):
            result.failed.append((path, f"{path}: out of memory; use a smaller --tile"))
    return result
