"""The JSON-lines log of a training run: written a whole line at a time, read back tolerantly, cut on resume.

A crash or a full disk can leave the last line half written; the reader skips such a line (with a warning) instead
of failing for ever after, and a resumed run first cuts the log back to the complete records up to its checkpoint,
so that no step appears twice.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from kdsr.atomic import atomic_write_bytes
from kdsr.errors import KDSRError

LOG_FILE = "log.jsonl"


def append_record(path: Path, record: dict) -> None:
    """Append one record as one line, in a single write, flushed to disk."""
    data = (json.dumps(record) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _parse(path: Path) -> tuple[list[dict], int]:
    """(records, number of unreadable lines) of a log file."""
    records, bad = [], 0
    for line in path.read_bytes().decode("utf-8", "replace").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
        else:
            bad += 1
    return records, bad


def read_log(run_dir: str | Path) -> list[dict]:
    """Every complete record of ``run_dir``'s log; unreadable (half-written) lines are skipped with a warning."""
    path = Path(run_dir) / LOG_FILE
    if not path.is_file():
        raise KDSRError(f"{run_dir}: no {LOG_FILE}")
    records, bad = _parse(path)
    if bad:
        warnings.warn(f"{path}: skipped {bad} unreadable line(s) (a run that crashed while writing)", stacklevel=2)
    return records


def cut_log(run_dir: str | Path, step: int) -> None:
    """Keep only the complete records up to ``step`` (the checkpoint a run resumes from); rewritten atomically."""
    path = Path(run_dir) / LOG_FILE
    if not path.is_file():
        return
    records, _ = _parse(path)
    kept = [r for r in records if r["step"] <= step]
    atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in kept).encode())
