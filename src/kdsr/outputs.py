"""The one writing rule of every command that writes a file or a folder of files: never over an input, never over
an existing file without ``--overwrite``, said in one line before any work (the writes themselves are atomic:
:mod:`kdsr.atomic`)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from kdsr.errors import KDSRError


def path_key(path: Path) -> str:
    """A path as the file system may see it: resolved and case-folded (macOS and Windows ignore case)."""
    return str(path.resolve()).casefold()


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: the same :func:`path_key`, or the same inode (a hard link)."""
    if path_key(a) == path_key(b):
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output(
    output: str | os.PathLike,
    inputs: Iterable[str | os.PathLike] = (),
    *,
    overwrite: bool = False,
    folder: bool = False,
) -> Path:
    """Refuse, with a one-line :class:`KDSRError`, an output that is an input (or, for a ``folder`` output, contains
    one or lies inside one), and an output that exists unless ``overwrite``. Returns the output as a ``Path``."""
    output = Path(output)
    for source in map(Path, inputs):
        if same_file(output, source):
            raise KDSRError(f"{output}: is the input {source}; choose another output")
        resolved_out, resolved_in = output.resolve(), source.resolve()
        if folder and (resolved_in.is_relative_to(resolved_out) or resolved_out.is_relative_to(resolved_in)):
            raise KDSRError(f"{output}: would mix outputs with the inputs in {source}; choose another output folder")
    if output.exists() and not overwrite:
        kind = "folder" if output.is_dir() else "file"
        raise KDSRError(f"{output}: the {kind} exists; not replaced (use --overwrite to replace it)")
    return output


def check_outputs(outputs: Iterable[str | os.PathLike], inputs: Iterable[str | os.PathLike], overwrite: bool) -> None:
    """:func:`check_output` for several files at once; every existing one is named in the one line."""
    inputs = list(inputs)
    existing = []
    for output in map(Path, outputs):
        check_output(output, inputs, overwrite=True)
        if output.exists() and not overwrite:
            existing.append(str(output))
    if existing:
        listed = "; ".join(existing[:4]) + (f"; ... ({len(existing)} in all)" if len(existing) > 4 else "")
        raise KDSRError(f"{len(existing)} output(s) exist ({listed}); not replaced (use --overwrite to replace them)")
