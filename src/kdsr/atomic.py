"""Atomic file and folder writes: write to a temp file (or folder) beside the target, then rename, so that no reader
ever sees a half-written one and an interrupted write leaves the old one (or nothing) in place."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temp path next to ``path``; on success it is renamed to ``path`` with the usual permissions."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temporaries(folder: str | os.PathLike, names: list[str]) -> None:
    """Delete the hidden temp files that :func:`atomic_path` left in ``folder`` for these file names when a run was
    killed before it could rename or remove them (``.<name>.<random>.tmp``)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    wanted = set(names)
    for tmp in folder.glob(".*.tmp"):
        if tmp.name[1:].rsplit(".", 2)[0] in wanted and tmp.is_file():
            tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes | memoryview) -> None:
    """Write ``data`` (bytes or any buffer) as the file ``path``, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike, replace: bool = True) -> Iterator[Path]:
    """Yield a new temp folder beside ``path``; on success it is renamed to ``path`` (with ``replace``, an old folder
    there is removed first; without, a folder that appeared meanwhile is never touched), on failure it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield building
        if replace:
            shutil.rmtree(path, ignore_errors=True)
        building.rename(path)
    finally:
        shutil.rmtree(building, ignore_errors=True)
