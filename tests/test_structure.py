"""The package's layering, checked on the source: library modules never import the command line."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "kdsr"


def _imported_modules(path: Path) -> set[str]:
    """Every module a source file imports (absolute names), at any depth (lazy imports inside functions too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


LIBRARY = sorted(p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] not in ("cli", "__main__.py"))


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_library_modules_do_not_import_the_command_line(path):
    assert not {m for m in _imported_modules(path) if m == "kdsr.cli" or m.startswith("kdsr.cli.")}


INFERENCE = sorted((PACKAGE / "inference").glob("*.py"))


@pytest.mark.parametrize("path", INFERENCE, ids=lambda p: p.name)
def test_inference_imports_the_exporters_only_to_build_a_missing_graph_cache(path):
    """Runtimes live in inference/; export/ writes files (ONNX, OpenVINO IR, the INT8 generator) and may use them.
    The one way back is the graph cache, which exports a model's graphs (and quantises its INT8 generator) once."""
    exporters = {m for m in _imported_modules(path) if m == "kdsr.export" or m.startswith("kdsr.export.")}
    assert not exporters or path.name == "graph_cache.py"


@pytest.mark.parametrize("path", INFERENCE, ids=lambda p: p.name)
def test_inference_does_not_import_insight(path):
    """insight/ fits estimators and IDR maps (torch, scikit-learn) on top of inference; what inference reads of them
    (their file format, the read-out, steering) lives in the torch-free readout/."""
    assert not {m for m in _imported_modules(path) if m == "kdsr.insight" or m.startswith("kdsr.insight.")}


def _module_graph() -> dict[str, set[str]]:
    """kdsr module -> the kdsr modules it imports (``from a import b`` counts ``a.b`` where that is a module)."""
    paths = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
             for p in PACKAGE.rglob("*.py")}  # fmt: skip
    graph = {}
    for name, path in paths.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[name] = {m for m in found if m in paths and m != name}
    return graph


def test_no_import_circle():
    import graphlib

    graph = _module_graph()
    assert "kdsr.inference.openvino_runtime" in graph["kdsr.inference.runtimes"]  # a lazy import, seen
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as circle:
        pytest.fail(f"import circle: {' -> '.join(circle.args[1])}")


def test_no_function_is_longer_than_80_lines():
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 80:
                long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}")
    assert not long


def test_the_scan_sees_lazy_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from kdsr.cli.estimate import run\n")
    assert "kdsr.cli.estimate" in _imported_modules(module)


def test_a_mistake_is_answered_before_torch_or_opencv_load(tmp_path):
    """`kdsr upscale` with a missing input or an existing output refuses before the heavy imports (issue: the first
    minutes; a call used to take 5-9 s to say a file is missing)."""
    import struct
    import subprocess
    import sys
    import zlib

    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "a_out.png").write_bytes(b"y")
    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)  # a PNG that declares 30000x30000 pixels

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    pixels = chunk(b"IDAT", zlib.compress(b"\x00" * 1000))  # far fewer than declared: never decoded anyway
    (tmp_path / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + pixels + chunk(b"IEND", b""))
    script = (
        "import sys\nfrom kdsr.cli import main\n"
        "assert main(['upscale', '-i', 'missing.png', '-o', 'x.png']) == 1\n"
        "assert main(['upscale', '-i', '.', '-o', '.']) == 1\n"  # a_out.png is not kdsr's: refused
        "assert main(['upscale', '-i', 'a.png', '-o', 'a_out.png']) == 1\n"  # exists
        "assert main(['upscale', '-i', 'a.png', '-o', 'b.png']) == 1\n"  # not an image
        "assert main(['upscale', '-i', 'bomb.png', '-o', 'c.png']) == 1\n"  # over --max-pixels, from its header
        "assert main(['export', '-n', 'nothere.pt', '-o', 'x.onnx']) == 1\n"
        "assert main(['degrade', '-i', 'missing', '-o', 'deg']) == 1\n"
        "assert main(['degrade', '-i', '.', '-o', 'deg', '--blur', 'iso', '--sigma', '0']) == 1\n"
        "print(sorted(m for m in ('torch', 'cv2') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    assert done.stderr.count("kdsr: error:") == 8 and "unknown model 'nothere.pt'" in done.stderr
    assert "a.png: not a readable image" in done.stderr and "30000x30000 is over the limit" in done.stderr


#: What the torch-free path (kdsr.inference.fastpath) runs on: importing them must not load torch.
TORCH_FREE = (
    "kdsr.architecture",
    "kdsr.detail",
    "kdsr.export",
    "kdsr.export.onnx_writer",
    "kdsr.png_stream",
    "kdsr.cli",
    "kdsr.cli.upscale",
    "kdsr.inference.fastpath",
    "kdsr.inference.files",
    "kdsr.inference.graph_cache",
    "kdsr.inference.graph_files",
    "kdsr.inference.layout",
    "kdsr.inference.opening",
    "kdsr.inference.openvino_runtime",
    "kdsr.inference.planning",
    "kdsr.inference.settings",
    "kdsr.image_ops",
    "kdsr.readout.steering",
    "kdsr.inference.tile_plan",
    "kdsr.metrics.niqe",
)


def test_the_torch_free_path_imports_no_torch():
    import subprocess
    import sys

    code = f"import sys; import {', '.join(TORCH_FREE)}; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
    listing = "import sys\nfrom kdsr.cli import main\nassert main(['models']) == 0\nprint('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", listing], capture_output=True, text=True, check=True)
    lines = result.stdout.splitlines()  # `kdsr models` lists presets and bundled models without torch
    assert lines[-1] == "False" and any(line.startswith("kdsr-s ") for line in lines)


def test_every_backend_but_torch_is_a_runtime_of_the_table():
    """--backend's choices are torch and the graph runtimes of kdsr.inference.runtimes.RUNTIMES, whose entries serve
    the torch-free and the torch pipeline alike."""
    from kdsr.constants import BACKENDS
    from kdsr.inference.runtimes import RUNTIMES

    assert BACKENDS == ("torch", *RUNTIMES)
    assert all(name == runtime.name and callable(runtime.open) for name, runtime in RUNTIMES.items())
