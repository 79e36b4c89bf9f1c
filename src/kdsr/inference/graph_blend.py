"""The split graphs of a ``--detail`` blend made from the two models' shipped graphs, without torch or the onnx
package: ESRGAN's network interpolation applied to the graphs' float32 weights where they lie in the files.

Two graphs exported from one architecture are the same bytes but for their weights, so the blend is the faithful
graph with each float32 initializer replaced by ``(1 - D) * faithful + D * sharp``. The initializers are found by
reading the ONNX protobuf (ModelProto.graph = field 7, GraphProto.initializer = 5, TensorProto: data_type = 2,
float_data = 4, raw_data = 9; FLOAT = 1). A pair whose bytes differ anywhere else (another export, weights folded
into something non-linear) is refused: the caller then exports the blend with torch.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from kdsr.atomic import atomic_folder
from kdsr.inference.graph_files import SPLIT_CONFIG, SPLIT_GRAPHS

_FLOAT = 1  # TensorProto.DataType.FLOAT


def _varint(buffer: bytes, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = buffer[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def _fields(buffer: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, start, end) of each field of the message in ``buffer[start:end]``; for a varint
    the value is ``end``."""
    at = start
    while at < end:
        key, at = _varint(buffer, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _varint(buffer, at)
            yield number, wire, at, value
        elif wire == 1:
            yield number, wire, at, at + 8
            at += 8
        elif wire == 2:
            length, at = _varint(buffer, at)
            yield number, wire, at, at + length
            at += length
        elif wire == 5:
            yield number, wire, at, at + 4
            at += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def _only(buffer: bytes, start: int, end: int, number: int) -> Iterator[tuple[int, int]]:
    for field, wire, a, b in _fields(buffer, start, end):
        if field == number and wire == 2:
            yield a, b


def float_ranges(buffer: bytes) -> list[tuple[int, int]]:
    """Byte ranges of the float32 values of every FLOAT initializer of an ONNX model (raw_data or float_data)."""
    ranges = []
    for graph in _only(buffer, 0, len(buffer), 7):
        for tensor in _only(buffer, *graph, 5):
            fields = list(_fields(buffer, *tensor))
            data_type = next((value for number, wire, _, value in fields if number == 2 and wire == 0), None)
            if data_type != _FLOAT:
                continue
            ranges += [(a, b) for number, wire, a, b in fields if number in (4, 9) and wire == 2]
    return ranges


def blend_graph(faithful: bytes, sharp: bytes, detail: float) -> bytes | None:
    """The faithful graph with its float32 weights blended towards the sharp graph's; None when the two differ
    anywhere but in those weights."""
    if len(faithful) != len(sharp):
        return None
    try:
        ranges = float_ranges(faithful)
        if ranges != float_ranges(sharp):
            return None
    except (ValueError, IndexError):  # not a protobuf this reader follows
        return None
    a, b = np.frombuffer(faithful, np.uint8), np.frombuffer(sharp, np.uint8)
    weights = np.zeros(len(a), bool)
    for start, end in ranges:
        weights[start:end] = True
    if not np.array_equal(a[~weights], b[~weights]):
        return None
    out = bytearray(faithful)
    for start, end in ranges:
        x = np.frombuffer(faithful, "<f4", (end - start) // 4, start)
        y = np.frombuffer(sharp, "<f4", (end - start) // 4, start)
        out[start:end] = ((1 - detail) * x.astype(np.float64) + detail * y).astype("<f4").tobytes()
    return bytes(out)


def blend_split_graphs(faithful: Path, sharp: Path, detail: float, target: Path) -> bool:
    """Write the blend of two split-graph folders into ``target`` (atomically); False, and nothing written, when a
    graph pair cannot be blended."""
    blended = {}
    for name in SPLIT_GRAPHS:
        graph = blend_graph((faithful / name).read_bytes(), (sharp / name).read_bytes(), detail)
        if graph is None:
            return False
        blended[name] = graph
    with atomic_folder(target) as building:
        for name, graph in blended.items():
            (building / name).write_bytes(graph)
        (building / SPLIT_CONFIG).write_bytes((faithful / SPLIT_CONFIG).read_bytes())
    return True
