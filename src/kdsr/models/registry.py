"""The architecture presets (:mod:`kdsr.architecture`) as networks: :func:`create_model` (random weights)."""

from __future__ import annotations

import dataclasses

from kdsr.architecture import PRESETS, KDSRConfig
from kdsr.models.kdsr import KDSRStudent, KDSRTeacher


def list_models() -> list[str]:
    """Names of the architecture presets."""
    return list(PRESETS)


def create_model(name: str, teacher: bool = False, **overrides: int) -> KDSRStudent | KDSRTeacher:
    """Build a randomly initialised preset, as the student (default) or the teacher.

    ``overrides`` replace config fields, e.g. ``create_model("kdsr-s", n_blocks=2)``.
    """
    if name not in PRESETS:
        raise KeyError(f"unknown model preset {name!r}; choose from {', '.join(PRESETS)}")
    unknown = set(overrides) - {f.name for f in dataclasses.fields(KDSRConfig)}
    if unknown:
        raise TypeError(f"unknown config field(s): {', '.join(sorted(unknown))}")
    config = dataclasses.replace(PRESETS[name].config, teacher=teacher, **overrides)
    return build_model(config)


def build_model(config: KDSRConfig) -> KDSRStudent | KDSRTeacher:
    """Build the student or teacher network described by ``config``."""
    return KDSRTeacher(config) if config.teacher else KDSRStudent(config)


def preset_name(config: KDSRConfig) -> str | None:
    """The preset whose architecture equals ``config`` (ignoring the role), if any."""
    for preset in PRESETS.values():
        if dataclasses.replace(preset.config, teacher=config.teacher) == config:
            return preset.name
    return None
