"""KDSR in hosts that load models through spandrel but have no plug-in hook (chaiNNer): a start-up file (``.pth``)
in the host's Python that registers KDSR with spandrel the moment the host imports spandrel, and costs nothing
before (no torch, no spandrel, no kdsr model code at start-up: one small finder on ``sys.meta_path``).

Run with the host's Python::

    python -m kdsr.integrations.spandrel_hook install    # writes kdsr-spandrel.pth into its site-packages
    python -m kdsr.integrations.spandrel_hook remove
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import sysconfig
import warnings
from pathlib import Path

#: the start-up file's name and its one line (``site`` runs lines that begin with ``import``)
PTH_NAME = "kdsr-spandrel.pth"
PTH_LINE = "import kdsr.integrations.spandrel_hook as _kdsr_hook; _kdsr_hook.install()\n"


class _RegisterAfterSpandrel(importlib.abc.MetaPathFinder):
    """Finds nothing itself: when ``spandrel`` is about to be imported, wraps its loader so that KDSR is registered
    once spandrel's own module has run; then leaves ``sys.meta_path``."""

    def find_spec(self, name, path=None, target=None):
        if name != "spandrel":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)  # the other finders' answer (this one is gone: no recursion)
        if spec is None or spec.loader is None:
            return spec
        run_spandrel = spec.loader.exec_module

        def exec_module(module) -> None:
            run_spandrel(module)
            try:
                import kdsr.integrations.spandrel  # noqa: F401 - registers KDSR in spandrel.MAIN_REGISTRY
            except Exception as e:  # noqa: BLE001 - the host's spandrel must load whatever happens to kdsr
                warnings.warn(f"kdsr: KDSR is not registered with spandrel ({type(e).__name__}: {e})", stacklevel=2)

        spec.loader.exec_module = exec_module
        return spec


def install() -> None:
    """Register KDSR with spandrel when it is imported (at once if it is already)."""
    if "spandrel" in sys.modules:
        import kdsr.integrations.spandrel  # noqa: F401
    elif not any(isinstance(finder, _RegisterAfterSpandrel) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterSpandrel())


def pth_path() -> Path:
    """Where this Python reads start-up files from (its site-packages)."""
    return Path(sysconfig.get_paths()["purelib"]) / PTH_NAME


def main(argv: list[str] | None = None) -> int:
    from kdsr.atomic import atomic_write_bytes

    command = (argv if argv is not None else sys.argv[1:])[:1]
    target = pth_path()
    if command == ["install"]:
        atomic_write_bytes(target, PTH_LINE.encode())
        print(f"{target}: KDSR is registered with spandrel whenever this Python imports it")
    elif command == ["remove"]:
        target.unlink(missing_ok=True)
        print(f"{target}: removed")
    else:
        print("usage: python -m kdsr.integrations.spandrel_hook install|remove", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
