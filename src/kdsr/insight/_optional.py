"""The ``insight`` extra (scikit-learn, matplotlib), imported when needed with a one-line error when it is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from kdsr.errors import KDSRError


def require(module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise KDSRError(
            f"this needs {module.split('.')[0]} (scikit-learn and matplotlib): pip install 'kdsr[insight]'"
        ) from None
