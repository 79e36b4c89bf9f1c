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


class RunLog:
    """``log.jsonl`` of a run folder: the training loop appends to it, ``kdsr plot`` and the scripts read it."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOG_FILE

    def append(self, record: dict) -> None:
        """Append one record as one line, in a single write, flushed to disk."""
        data = (json.dumps(record) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _parse(self) -> tuple[list[dict], int]:
        """(records, number of unreadable lines)."""
        records, bad = [], 0
        for line in self.path.read_bytes().decode("utf-8", "replace").splitlines():
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

    def records(self) -> list[dict]:
        """Every complete record; unreadable (half-written) lines are skipped with a warning."""
        if not self.path.is_file():
            raise KDSRError(f"{self.run_dir}: no {LOG_FILE}")
        records, bad = self._parse()
        if bad:
            warnings.warn(
                f"{self.path}: skipped {bad} unreadable line(s) (a run that crashed while writing)", stacklevel=2
            )
        return records

    def cut(self, step: int) -> None:
        """Keep only the complete records up to ``step`` (the checkpoint a run resumes from); rewritten atomically."""
        if not self.path.is_file():
            return
        records, _ = self._parse()
        kept = [r for r in records if r["step"] <= step]
        atomic_write_bytes(self.path, "".join(json.dumps(r) + "\n" for r in kept).encode())
