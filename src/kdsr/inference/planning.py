"""Planning a run before any heavy import: which files are inputs, what each output is called, and what would be
refused (an output that is an input, two inputs with one output name, existing outputs). numpy and the standard
library only, so that a mistake is answered before torch or OpenCV load."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from kdsr.constants import (
    ALPHA_EXTENSIONS,
    IMAGE_EXTENSIONS,
    INPUT_IMAGE_EXTENSIONS,
    MARKED_EXTENSIONS,
    VIDEO_EXTENSIONS,
)
from kdsr.errors import KDSRError, shortened
from kdsr.image_io import has_output_mark, visible_files
from kdsr.outputs import path_key


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def collect_inputs(source: str | Path, recursive: bool = False) -> list[Path]:
    """A single file, or every visible regular file of a folder (sorted), with ``recursive`` of its sub-folders too
    (hidden files and folders left out)."""
    source = Path(source)
    if source.is_file():
        return [source]
    if source.is_dir():
        files = visible_files(source, recursive)
        if not files:
            hint = "" if recursive or not _sub_folders(source) else " (only sub-folders: -r takes them)"
            raise KDSRError(f"{source}: folder has no files{hint}")
        return files
    raise KDSRError(f"{source}: no such file or folder")


def _sub_folders(folder: Path) -> list[Path]:
    """The visible sub-folders of a folder, sorted."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def output_path(
    source: Path, output: Path, single_file: bool, suffix: str, ext: str, has_alpha: bool, root: Path | None = None
) -> Path:
    """Where the result for ``source`` goes: ``output`` itself when it names a file of the input's kind (image or
    video) for a single input, else ``output/<stem>_<suffix>.<ext>`` (``ext`` "auto" keeps the input's; alpha forces
    a format that keeps it; a video keeps its container), in the sub-folder that mirrors ``source``'s under ``root``
    (recursive runs)."""
    kind = VIDEO_EXTENSIONS if is_video(source) else IMAGE_EXTENSIONS
    if single_file and output.suffix.lower() in kind:
        return output
    if root is not None:
        output = output / source.parent.relative_to(root)
    if is_video(source):
        name = f"{source.stem}_{suffix}" if suffix else source.stem
        return output / f"{name}{source.suffix.lower()}"
    extension = source.suffix.lower() if ext == "auto" else "." + ext.lower().lstrip(".")
    if extension not in IMAGE_EXTENSIONS:
        extension = ".png"
    if has_alpha and extension not in ALPHA_EXTENSIONS:
        extension = ".png"
    name = f"{source.stem}_{suffix}" if suffix else source.stem
    return output / f"{name}{extension}"


def _written_by_kdsr(path: Path) -> bool:
    """Whether a file named like an output is an earlier run's: marked by kdsr (PNG, JPEG, WebP), or of a format
    that cannot carry the mark (TIFF, BMP, video), where the name alone decides."""
    return path.suffix.lower() not in MARKED_EXTENSIONS or has_output_mark(path)


@dataclasses.dataclass
class Plan:
    """What a run will do, decided before any work: (input, output) jobs and the inputs it leaves alone."""

    jobs: list[tuple[Path, Path]]
    skipped: list[tuple[Path, str]]


def plan_outputs(
    source: str | Path,
    output: str | Path,
    *,
    suffix: str = "out",
    ext: str = "auto",
    overwrite: bool = False,
    skip_existing: bool = False,
    recursive: bool = False,
) -> Plan:
    """Name every output up front and refuse what would lose data: two inputs with one output name, an output that
    is an input, or (without ``overwrite``/``skip_existing``) an output that exists. Files that are this run's own
    outputs of an earlier run (``x_out.png`` beside ``x.png``) are not inputs."""
    if overwrite and skip_existing:
        raise KDSRError("--overwrite and --skip-existing exclude each other")
    inputs = collect_inputs(source, recursive)
    single = Path(source).is_file()
    root = Path(source) if recursive and not single else None
    inside_output: list[Path] = []
    if root is not None and Path(output).resolve().is_relative_to(root.resolve()):  # outputs are never inputs
        inside_output = [p for p in inputs if p.resolve().is_relative_to(Path(output).resolve())]
        inputs = [p for p in inputs if p not in inside_output]
    output = Path(output)
    kind, formats = ("a video", VIDEO_EXTENSIONS) if single and is_video(inputs[0]) else ("an image", IMAGE_EXTENSIONS)
    if single and output.suffix and output.suffix.lower() not in formats and not output.is_dir():
        raise KDSRError(
            f"{output}: '{output.suffix}' is not {kind} format ({', '.join(formats)}); "
            "to write into a folder of that name, create it first"
        )
    if output.exists() and not output.is_dir() and not (single and output.suffix.lower() in formats):
        raise KDSRError(f"{output}: exists and is not a folder")
    media = INPUT_IMAGE_EXTENSIONS + VIDEO_EXTENSIONS  # a folder run reads what a single-file run reads
    other = [] if single else [p for p in inputs if p.suffix.lower() not in media]
    inputs = [p for p in inputs if p not in other]
    targets = {path: output_path(path, output, single, suffix, ext, False, root) for path in inputs}
    same = [p for p, t in targets.items() if path_key(p) == path_key(t)]
    if same:
        raise KDSRError(f"{same[0]}: output would overwrite the input; choose another -o or --suffix")
    planned = {path_key(t): path for path, t in targets.items()}
    named_like_outputs = [p for p in inputs if path_key(p) in planned]
    earlier = [p for p in named_like_outputs if _written_by_kdsr(p)]
    foreign = [p for p in named_like_outputs if p not in earlier]
    if foreign and not skip_existing:
        p = foreign[0]
        raise KDSRError(
            f"{p}: has the output name of {planned[path_key(p)].name} but kdsr did not write it (no kdsr mark in its "
            "metadata), so it is an input and is never replaced; choose another --suffix or -o, or move it"
        )
    skipped = [(p, f"{p}: an output of {planned[path_key(p)].name} (earlier run)") for p in earlier]
    skipped += [(p, f"{p}: not an image or video (by its extension)") for p in other]
    skipped += [(p, f"{p}: inside the output folder {output}, so not read as an input") for p in inside_output]
    if not single and not recursive:
        subs = [p for p in _sub_folders(Path(source)) if path_key(p) != path_key(output)]  # not the output itself
        skipped += [(p, f"{p}: a sub-folder, left out (-r takes sub-folders)") for p in subs]
    jobs = [(p, t) for p, t in targets.items() if p not in earlier]
    groups: dict[str, list[Path]] = {}
    for path, target in jobs:
        groups.setdefault(path_key(target), []).append(path)
    collisions = [
        f"{', '.join(p.name for p in group)} -> {targets[group[0]].name}" for group in groups.values() if len(group) > 1
    ]
    if collisions:
        raise KDSRError(
            f"inputs would share an output name ({shortened(collisions, 4, '; ')}); use --ext auto, another --suffix, "
            "or rename them"
        )
    existing = [t for _, t in jobs if t.exists()]
    if existing and skip_existing:
        skipped += [(p, f"{p}: its output {t} exists (--skip-existing)") for p, t in jobs if t.exists()]
        jobs = [(p, t) for p, t in jobs if not t.exists()]
    elif existing and not overwrite:
        raise KDSRError(
            f"{len(existing)} output file(s) exist ({shortened([str(t) for t in existing], 4, '; ')}); "
            "use --overwrite to replace them or --skip-existing to keep them"
        )
    return Plan(jobs, skipped)
