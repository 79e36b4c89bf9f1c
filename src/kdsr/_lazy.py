"""Module attributes that import their module on first use (PEP 562), so that ``import kdsr`` stays light."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable


def lazy_getattr(module: str, table: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` that imports ``table[name]`` and caches the attribute in ``module``'s namespace."""

    def __getattr__(name: str) -> object:
        if name not in table:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(table[name]), name)
        setattr(sys.modules[module], name, value)
        return value

    return __getattr__
