"""The torch-free writer of the split graphs (kdsr.export.onnx_writer): the same computation as torch's split export
for every encoder variant and scale, valid ONNX, and a clear error for files it cannot write."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from kdsr.architecture import ENCODERS, SCALES
from kdsr.checkpoint import save_model
from kdsr.errors import CheckpointError
from kdsr.export.onnx import export_onnx_split
from kdsr.export.onnx_writer import write_split_graphs
from kdsr.inference.graph_files import SPLIT_CONFIG, SPLIT_GRAPHS
from tests.conftest import tiny_model

ort = pytest.importorskip("onnxruntime")


def _feeds(c: int, seed: int) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    lr = rng.random((1, 3, 11, 14), np.float32)
    return {
        "features.onnx": {"lr": lr},
        "head.onnx": {"pooled": rng.random((1, 4 * c), np.float32) + 0.05},
        "generator.onnx": {"lr": lr, "d": rng.standard_normal((1, c)).astype(np.float32)},
    }


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("encoder", ENCODERS)
def test_written_graphs_compute_what_torch_exports(tmp_path, encoder, scale):
    model = tiny_model(encoder=encoder, scale=scale, n_resblocks=2)
    save_model(model, tmp_path / "m.safetensors")
    config = write_split_graphs(tmp_path / "m.safetensors", tmp_path / "written")
    export_onnx_split(model, tmp_path / "exported")
    assert config == model.config
    assert (tmp_path / "written" / SPLIT_CONFIG).read_bytes() == (tmp_path / "exported" / SPLIT_CONFIG).read_bytes()
    for name, feeds in _feeds(model.config.n_feats, scale).items():
        ours = ort.InferenceSession(str(tmp_path / "written" / name)).run(None, feeds)
        theirs = ort.InferenceSession(str(tmp_path / "exported" / name)).run(None, feeds)
        assert [a.shape for a in ours] == [b.shape for b in theirs]
        assert max(float(np.abs(a - b).max()) for a, b in zip(ours, theirs, strict=True)) < 1e-5


def test_written_graphs_are_valid_onnx_and_match_the_network(tmp_path):
    onnx = pytest.importorskip("onnx")
    model = tiny_model(encoder="energy")
    save_model(model, tmp_path / "m.safetensors")
    write_split_graphs(tmp_path / "m.safetensors", tmp_path / "g")
    for name in SPLIT_GRAPHS:
        graph = onnx.load(tmp_path / "g" / name)
        onnx.checker.check_model(graph, full_check=True)
        assert {p.key for p in graph.metadata_props} == {"kdsr_config"}
    lr = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        idr = model.encode(lr)
        expected = model.super_resolve(lr, idr.d).numpy()
    sr = ort.InferenceSession(str(tmp_path / "g" / "generator.onnx")).run(None, {"lr": lr.numpy(), "d": idr.d.numpy()})
    assert np.abs(sr[0] - expected).max() < 1e-5


def test_files_it_cannot_write_are_one_line_errors(tmp_path):
    save_model(tiny_model(teacher=True), tmp_path / "teacher.safetensors")
    with pytest.raises(CheckpointError, match="a teacher model"):
        write_split_graphs(tmp_path / "teacher.safetensors", tmp_path / "a")
    save_file({"x": np.zeros(3, np.float32)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(CheckpointError, match="not a kdsr model file"):
        write_split_graphs(tmp_path / "plain.safetensors", tmp_path / "b")
    from safetensors import safe_open

    save_model(tiny_model(), tmp_path / "m.safetensors")
    with safe_open(str(tmp_path / "m.safetensors"), "np") as f:
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()  # noqa: SIM118
    save_file({k: v for k, v in tensors.items() if k != "G.head.0.bias"}, str(tmp_path / "m1.safetensors"), metadata)
    with pytest.raises(CheckpointError, match="missing weight G.head.0.bias"):
        write_split_graphs(tmp_path / "m1.safetensors", tmp_path / "c")
    save_file({**tensors, "G.extra": np.zeros(1, np.float32)}, str(tmp_path / "m2.safetensors"), metadata)
    with pytest.raises(CheckpointError, match="does not have .G.extra"):
        write_split_graphs(tmp_path / "m2.safetensors", tmp_path / "d")
    assert not any((tmp_path / folder).exists() for folder in "abcd")


def test_only_files_numpy_reads_take_the_torch_free_writer(tmp_path):
    """fp16 files of ours are written without torch (their graphs in fp32); bfloat16 ones, which numpy cannot read,
    and other formats go through torch's export instead."""
    from kdsr.inference.graph_cache import writes_without_torch

    for dtype, expected in ((torch.float32, True), (torch.float16, True), (torch.bfloat16, False)):
        save_model(tiny_model().to(dtype), tmp_path / "m.safetensors")
        assert writes_without_torch(tmp_path / "m.safetensors") is expected
    torch.save(tiny_model().state_dict(), tmp_path / "official.pth")
    (tmp_path / "damaged.safetensors").write_bytes(b"\x10" + bytes(20))
    assert not writes_without_torch(tmp_path / "official.pth") and not writes_without_torch(
        tmp_path / "damaged.safetensors"
    )
    save_model(tiny_model().half(), tmp_path / "half.safetensors")
    write_split_graphs(tmp_path / "half.safetensors", tmp_path / "g")
    feeds = _feeds(8, 0)["generator.onnx"]
    assert ort.InferenceSession(str(tmp_path / "g" / "generator.onnx")).run(None, feeds)[0].dtype == np.float32
