"""The split ONNX graphs of a student model file written from its weights, without torch or the onnx package.

A KDSR student is a fixed stack of a few op types (Conv, LeakyReLU, Add, MatMul, Reshape, DepthToSpace, Gemm, Log,
Mul), so its three graphs (:data:`~kdsr.inference.graph_files.SPLIT_GRAPHS`: the encoder's feature map, its head,
the generator) are written here directly as ONNX protobuf from the safetensors weights, the same computation as
:func:`kdsr.export.onnx.export_onnx_split` (a test holds the two within 1e-5 for every encoder variant and scale).
This is what lets the core install (no torch) run a bundled model or any of our model files on first use, and what
builds the graphs shipped in the wheel.

Protobuf fields used (onnx.proto): ModelProto ir_version 1, producer_name 2, producer_version 3, graph 7,
opset_import 8, metadata_props 14; GraphProto node 1, name 2, initializer 5, input 11, output 12; NodeProto input 1,
output 2, name 3, op_type 4, attribute 5; AttributeProto name 1, f 2, i 3, s 4, ints 8, type 20; TensorProto dims 1,
data_type 2, name 8, raw_data 9; ValueInfoProto name 1, type 2; TypeProto tensor_type 1; TypeProto.Tensor
elem_type 1, shape 2; TensorShapeProto dim 1; Dimension dim_value 1, dim_param 2.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
from pathlib import Path

import numpy as np

from kdsr.architecture import ENERGY_FLOOR, LRELU_SLOPE, KDSRConfig
from kdsr.errors import CheckpointError

OPSET = 17
IR_VERSION = 8
_FLOAT, _INT64 = 1, 7  # TensorProto.DataType
_ATTR_FLOAT, _ATTR_INT, _ATTR_STRING, _ATTR_INTS = 1, 2, 3, 7  # AttributeProto.AttributeType


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64s as two's complement, ten bytes
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _bytes(field: int, data: bytes | str) -> bytes:
    data = data.encode() if isinstance(data, str) else data
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _tensor(name: str, array: np.ndarray) -> bytes:
    data_type = _INT64 if array.dtype == np.int64 else _FLOAT
    array = array.astype("<i8" if data_type == _INT64 else "<f4")
    dims = b"".join(_int(1, d) for d in array.shape)
    return dims + _int(2, data_type) + _bytes(8, name) + _bytes(9, np.ascontiguousarray(array).tobytes())


def _value_info(name: str, dims: tuple) -> bytes:
    shape = b"".join(_bytes(1, _bytes(2, d) if isinstance(d, str) else _int(1, d)) for d in dims)
    tensor_type = _int(1, _FLOAT) + _bytes(2, shape)
    return _bytes(1, name) + _bytes(2, _bytes(1, tensor_type))


def _attribute(name: str, value) -> bytes:
    if isinstance(value, float):
        return _bytes(1, name) + _varint(2 << 3 | 5) + struct.pack("<f", value) + _int(20, _ATTR_FLOAT)
    if isinstance(value, int):
        return _bytes(1, name) + _int(3, value) + _int(20, _ATTR_INT)
    if isinstance(value, str):
        return _bytes(1, name) + _bytes(4, value) + _int(20, _ATTR_STRING)
    return _bytes(1, name) + b"".join(_int(8, v) for v in value) + _int(20, _ATTR_INTS)


class _Graph:
    """Nodes and initializers of one graph, named in order."""

    def __init__(self, name: str) -> None:
        self.name, self.nodes, self.initializers = name, [], []

    def weight(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(_tensor(name, array))
        return name

    def node(self, op: str, inputs: list[str], output: str | None = None, **attributes) -> str:
        output = output or f"{op}_{len(self.nodes)}"
        body = b"".join(_bytes(1, i) for i in inputs) + _bytes(2, output) + _bytes(3, f"{op}_{len(self.nodes)}")
        body += _bytes(4, op) + b"".join(_bytes(5, _attribute(k, v)) for k, v in attributes.items())
        self.nodes.append(body)
        return output

    def model(self, inputs: dict[str, tuple], outputs: dict[str, tuple], config: KDSRConfig) -> bytes:
        graph = b"".join(_bytes(1, node) for node in self.nodes) + _bytes(2, self.name)
        graph += b"".join(_bytes(5, tensor) for tensor in self.initializers)
        graph += b"".join(_bytes(11, _value_info(k, v)) for k, v in inputs.items())
        graph += b"".join(_bytes(12, _value_info(k, v)) for k, v in outputs.items())
        metadata = _bytes(1, "kdsr_config") + _bytes(2, json.dumps(dataclasses.asdict(config)))
        return (
            _int(1, IR_VERSION) + _bytes(2, "kdsr") + _bytes(3, "onnx_writer") + _bytes(7, graph)
            + _bytes(8, _int(2, OPSET)) + _bytes(14, metadata)
        )  # fmt: skip


class _Weights:
    """A student's tensors by key, each taken once; a missing key or wrong shape is a :class:`CheckpointError`."""

    def __init__(self, tensors: dict[str, np.ndarray], where: str) -> None:
        self.tensors, self.where, self.used = tensors, where, {"E_st.energy"}  # the energy variant's marker buffer

    def __call__(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        if key not in self.tensors:
            raise CheckpointError(f"{self.where}: missing weight {key}")
        array = self.tensors[key]
        self.used.add(key)
        if tuple(array.shape) != shape:
            raise CheckpointError(f"{self.where}: {key} has shape {tuple(array.shape)}, expected {shape}")
        return np.asarray(array, np.float32)


def _conv(g: _Graph, w: _Weights, x: str, key: str, cin: int, cout: int, size: int = 3) -> str:
    weight = g.weight(f"{key}.weight", w(f"{key}.weight", (cout, cin, size, size)))
    bias = g.weight(f"{key}.bias", w(f"{key}.bias", (cout,)))
    pad = size // 2
    return g.node("Conv", [x, weight, bias], kernel_shape=[size, size], pads=[pad] * 4, strides=[1, 1])


def _lrelu(g: _Graph, x: str, output: str | None = None) -> str:
    return g.node("LeakyRelu", [x], output, alpha=LRELU_SLOPE)


def _features(w: _Weights, config: KDSRConfig) -> _Graph:
    """The encoder's conv stack up to the pooling (squared for the energy variant): ``KDIDE.feature_map``."""
    g, c, r = _Graph("features"), config.n_feats, config.n_resblocks
    x = _lrelu(g, _conv(g, w, "lr", "E_st.E.0", 3, c))
    for i in range(r):
        key = f"E_st.E.{2 + i}.body"
        inner = _conv(g, w, _lrelu(g, _conv(g, w, x, f"{key}.0", c, c)), f"{key}.2", c, c)
        x = g.node("Add", [x, inner])
    for index, (cin, cout) in zip((2 + r, 4 + r, 6 + r), ((c, 2 * c), (2 * c, 2 * c), (2 * c, 4 * c)), strict=True):
        x = _lrelu(g, _conv(g, w, x, f"E_st.E.{index}", cin, cout))
    if config.variant.energy_pool:
        g.node("Mul", [x, x], "features")
    else:
        g.node("Identity", [x], "features")
    return g


def _linear(g: _Graph, w: _Weights, x: str, key: str, cin: int, cout: int, output: str | None = None) -> str:
    weight = g.weight(f"{key}.weight", w(f"{key}.weight", (cout, cin)))
    bias = g.weight(f"{key}.bias", w(f"{key}.bias", (cout,)))
    return _lrelu(g, g.node("Gemm", [x, weight, bias], transB=1), output)


def _head(w: _Weights, config: KDSRConfig) -> _Graph:
    """Pooled features -> (d, d_prime): ``KDIDE.from_pooled``."""
    g, c = _Graph("head"), config.n_feats
    x = "pooled"
    if config.variant.energy_pool:
        x = g.node("Log", [g.node("Add", [x, g.weight("energy_floor", np.array(ENERGY_FLOOR, np.float32))])])
    x = _linear(g, w, x, "E_st.mlp.0", 4 * c, 4 * c)
    d_prime = _linear(g, w, x, "E_st.mlp.2", 4 * c, 4 * c, "d_prime")
    _linear(g, w, d_prime, "E_st.compress.0", 4 * c, c, "d")
    return g


def _generator(w: _Weights, config: KDSRConfig) -> _Graph:
    """(lr, d) -> sr: ``KDSRGenerator.forward`` (mean shift, head, IDR-DCRBs, conv, residual, sub-pixel tail)."""
    g, c = _Graph("generator"), config.n_feats
    h = _conv(g, w, _conv(g, w, "lr", "G.sub_mean", 3, 3, 1), "G.head.0", 3, c)
    kernel_shape = g.weight("depthwise_kernel_shape", np.array([-1, 1, 3, 3], np.int64))
    x = h
    for i in range(config.n_blocks):
        key = f"G.body.0.body.{i}"
        first = g.weight(f"{key}.da_conv1.kernel.0.weight", w(f"{key}.da_conv1.kernel.0.weight", (c, c)).T)
        second = g.weight(f"{key}.da_conv1.kernel.2.weight", w(f"{key}.da_conv1.kernel.2.weight", (9 * c, c)).T)
        kernels = g.node("MatMul", [_lrelu(g, g.node("MatMul", ["d", first])), second])
        kernels = g.node("Reshape", [kernels, kernel_shape])
        dynamic = g.node("Conv", [x, kernels], group=c, kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1])
        x = g.node("Add", [x, _conv(g, w, _lrelu(g, dynamic), f"{key}.conv1", c, c)])
    x = g.node("Add", [_conv(g, w, x, "G.body.1", c, c), h])
    factors = [3] if config.scale == 3 else [2] * (config.scale.bit_length() - 1)
    for index, factor in enumerate(factors):
        x = _conv(g, w, x, f"G.tail.0.{2 * index}", c, factor * factor * c)
        x = g.node("DepthToSpace", [x], blocksize=factor, mode="CRD")
    x = _conv(g, w, x, "G.tail.1", c, 3)
    weight = g.weight("G.add_mean.weight", w("G.add_mean.weight", (3, 3, 1, 1)))
    bias = g.weight("G.add_mean.bias", w("G.add_mean.bias", (3,)))
    g.node("Conv", [x, weight, bias], "sr", kernel_shape=[1, 1], pads=[0, 0, 0, 0], strides=[1, 1])
    return g


def read_student(path: str | os.PathLike) -> tuple[KDSRConfig, dict[str, np.ndarray]]:
    """The architecture and tensors (numpy) of one of our student model files; a :class:`CheckpointError` for a
    file that is not one (a teacher, another format, a damaged header)."""
    from safetensors import SafetensorError, safe_open

    from kdsr.model_check import check_model_file, declared_config

    check_model_file(path)
    try:
        with safe_open(str(path), "np") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (OSError, SafetensorError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors model file ({e})") from None
    config = declared_config(metadata, path)
    if config is None:
        raise CheckpointError(f"{path}: not a kdsr model file (no kdsr_config in its header)")
    if config.teacher:
        raise CheckpointError(f"{path}: a teacher model; only students run on an LR alone")
    return config, tensors


def write_split_graphs(path: str | os.PathLike, folder: str | os.PathLike) -> KDSRConfig:
    """Write the split graphs of the student model file ``path`` and their config into ``folder`` (which the caller
    makes atomic, as :func:`kdsr.atomic.atomic_folder` does); the model's architecture is returned."""
    from kdsr.inference.graph_files import SPLIT_CONFIG, SPLIT_GRAPHS, split_config_json

    config, tensors = read_student(path)
    weights, c, folder = _Weights(tensors, str(path)), config.n_feats, Path(folder)
    spatial, wide = (1, 3, "height", "width"), (1, 4 * c, "height", "width")
    graphs = (
        _features(weights, config).model({"lr": spatial}, {"features": wide}, config),
        _head(weights, config).model({"pooled": (1, 4 * c)}, {"d": (1, c), "d_prime": (1, 4 * c)}, config),
        _generator(weights, config).model(
            {"lr": spatial, "d": (1, c)}, {"sr": (1, 3, "out_height", "out_width")}, config
        ),
    )
    unexpected = sorted(set(tensors) - weights.used)
    if unexpected:
        raise CheckpointError(f"{path}: weights its architecture does not have ({', '.join(unexpected[:3])} ...)")
    folder.mkdir(parents=True, exist_ok=True)
    for name, graph in zip(SPLIT_GRAPHS, graphs, strict=True):
        (folder / name).write_bytes(graph)
    (folder / SPLIT_CONFIG).write_bytes(split_config_json(config))
    return config
