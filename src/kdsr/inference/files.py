"""Upscaling files and folders: per-file error collection, progress over files (the plan: :mod:`.planning`).
Torch-free itself, so that the torch-free path (:mod:`.fastpath`) runs it."""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kdsr.atomic import remove_stale_temporaries
from kdsr.errors import ImageError, KDSRError
from kdsr.image_io import ALPHA_EXTENSIONS, DEFAULT_MAX_PIXELS, read_image, read_image_metadata, write_image
from kdsr.inference.layout import fit_size
from kdsr.inference.planning import Plan, is_video, plan_outputs
from kdsr.outputs import path_key

if TYPE_CHECKING:  # the torch-free path passes a FastUpscaler and never imports these
    from kdsr.inference.fastpath import FastUpscaler
    from kdsr.inference.upscaler import Upscaler
    from kdsr.inference.video import VideoSettings


@dataclasses.dataclass
class BatchResult:
    written: list[Path] = dataclasses.field(default_factory=list)
    failed: list[tuple[Path, str]] = dataclasses.field(default_factory=list)
    skipped: list[tuple[Path, str]] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    frames: int = 0  # video frames written

    def summary(self) -> str:
        """One line: what was written, skipped and failed, in how long, how fast."""
        line = f"{len(self.written)} written, {len(self.skipped)} skipped, {len(self.failed)} failed in "
        line += f"{self.seconds:.1f} s"
        videos = sum(is_video(p) for p in self.written)
        if self.seconds <= 0 or not self.written or (videos and videos < len(self.written)):
            return line  # a rate over images and videos together would mean nothing
        if videos:
            return line + f" ({self.frames / self.seconds:.2f} frames/s)"
        return line + f" ({len(self.written) / self.seconds:.2f} images/s)"


@dataclasses.dataclass(frozen=True)
class ImageJob:
    """How one image is upscaled and written (the CLI's options); ``taken``: path keys (:func:`path_key`) that an
    output renamed to PNG for its alpha must not land on (the run's inputs and other outputs)."""

    outscale: float | None = None
    overwrite: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    quality: int = 95
    width: int | None = None
    height: int | None = None
    taken: frozenset | set = frozenset()


def taken_paths(plan: Plan) -> frozenset:
    """The path keys of a run's inputs and planned outputs: where no output renamed for its alpha may land."""
    return frozenset({path_key(p) for p, _ in (*plan.jobs, *plan.skipped)} | {path_key(t) for _, t in plan.jobs})


def upscale_image_file(
    path: Path,
    target: Path,
    upscaler: Upscaler | FastUpscaler,
    job: ImageJob,
    progress: bool = False,
    on_image: Callable[[Path, np.ndarray], None] | None = None,
) -> Path:
    """Read, upscale and write one image (atomically, with the input's ICC profile and EXIF); returns the path
    written (a PNG when the input has alpha and the target's format cannot hold it). Raises
    :class:`~kdsr.errors.KDSRError` (or OSError, MemoryError) for this image only."""
    image = read_image(path, max_pixels=job.max_pixels)
    if on_image is not None:
        on_image(path, image)
    if target.exists() and not job.overwrite:  # appeared while this run was working
        raise ImageError(f"{target}: exists now; not replaced (use --overwrite)")
    if image.shape[2] == 4 and target.suffix.lower() not in ALPHA_EXTENSIONS:  # alpha: PNG instead
        target = target.with_suffix(".png")
        if path_key(target) in job.taken or (target.exists() and not job.overwrite):
            raise ImageError(f"{path}: has alpha, so it would be written as {target}, which is taken")
    size = fit_size(image.shape[1], image.shape[0], job.width, job.height)
    out = upscaler.upscale(image, outscale=job.outscale, progress=progress, size=size)
    metadata = read_image_metadata(path, size=(out.shape[1], out.shape[0]))
    write_image(target, out, quality=job.quality, metadata=metadata)
    return target


def failure_message(error: BaseException, path: Path, target: Path) -> str:
    """The one line a failed image gets in the run's summary."""
    if isinstance(error, KDSRError):
        return str(error)
    if isinstance(error, OSError):  # read-only folder, disk full: the temp file is gone, nothing half-written remains
        return f"{target}: cannot write ({error.strerror or error})"
    return f"{path}: out of memory; use a smaller --tile"


def upscale_files(
    source: str | Path,
    output: str | Path,
    upscaler: Upscaler | FastUpscaler,
    *,
    suffix: str = "out",
    ext: str = "auto",
    outscale: float | None = None,
    progress: bool | None = None,
    overwrite: bool = False,
    skip_existing: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    on_image: Callable[[Path, np.ndarray], None] | None = None,
    video: VideoSettings | None = None,
    quality: int = 95,
    width: int | None = None,
    height: int | None = None,
    recursive: bool = False,
    plan: Plan | None = None,
) -> BatchResult:
    """Upscale a file or every file of a folder; bad files are recorded in the result, the others still written.
    ``on_image`` is called with each input's path and pixels once it is read (``kdsr upscale -v``). Outputs keep
    the input's ICC profile and EXIF (orientation reset, sizes updated); ``quality`` is for JPEG and WebP outputs;
    ``width``/``height`` set the final size (see :func:`fit_size`) instead of ``outscale``.

    Inputs are never written and existing files are replaced only with ``overwrite`` (see :func:`plan_outputs`);
    ``plan``: the run's plan when the caller made it already (the CLI, before loading the model); the planning
    arguments (``suffix``, ``ext``, ``skip_existing``, ``recursive``) are then the plan's."""
    if plan is None:
        plan = plan_outputs(
            source, output, suffix=suffix, ext=ext, overwrite=overwrite, skip_existing=skip_existing,
            recursive=recursive,
        )  # fmt: skip
    if progress is None:
        progress = sys.stderr.isatty()
    result = BatchResult(skipped=list(plan.skipped))
    for folder in {t.parent for _, t in plan.jobs}:
        remove_stale_temporaries(folder, [t.name for _, t in plan.jobs])
    from tqdm import tqdm

    settings = video.options if video is not None else {}
    options = ImageJob(outscale, overwrite, max_pixels, quality, width, height, taken=taken_paths(plan))
    started = time.perf_counter()
    for path, target in tqdm(plan.jobs, desc="files", unit="file", disable=not progress or len(plan.jobs) < 2):
        try:
            if is_video(path):
                from kdsr.inference.video import upscale_video

                result.frames += upscale_video(
                    path, target, upscaler, outscale=outscale, progress=progress, max_pixels=max_pixels,
                    width=width, height=height, **settings,
                )  # fmt: skip
                result.written.append(target)
                continue
            result.written.append(upscale_image_file(path, target, upscaler, options, progress, on_image))
        except (KDSRError, OSError, *_out_of_memory_errors()) as e:
            result.failed.append((path, failure_message(e, path, target)))
    result.seconds = time.perf_counter() - started
    return result


def _out_of_memory_errors() -> tuple[type[BaseException], ...]:
    """MemoryError, and torch's out-of-memory error when torch runs (the torch-free path never imports it)."""
    torch = sys.modules.get("torch")
    return (MemoryError, torch.OutOfMemoryError) if torch is not None else (MemoryError,)
