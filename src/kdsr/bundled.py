"""The trained models shipped inside the package, found without loading them (no torch)."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

#: Bundled model used when none is named, and the untrained preset used when the package has none.
DEFAULT_MODEL = "kdsr-real-x4"
FALLBACK_MODEL = "kdsr-s"


def bundled_models() -> dict[str, Path]:
    """Trained models shipped inside the package, by name (the file stem)."""
    folder = resources.files("kdsr") / "weights"
    if not folder.is_dir():
        return {}
    return {Path(f.name).stem: Path(str(f)) for f in folder.iterdir() if f.name.endswith(".safetensors")}


def model_file(source: str | os.PathLike) -> Path:
    """The file behind a bundled model's name, or ``source`` itself as a path."""
    return bundled_models().get(str(source), Path(source))


def default_model_name() -> str:
    """The bundled real-world model when present, else the untrained small preset."""
    return DEFAULT_MODEL if DEFAULT_MODEL in bundled_models() else FALLBACK_MODEL
