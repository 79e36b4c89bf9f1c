"""The energy variant of KD-IDE: what it computes, that every runtime path honours it, and its training recipe."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from kdsr.checkpoint import load_model, save_model
from kdsr.degradations import classic
from kdsr.errors import CheckpointError, KDSRError
from kdsr.inference.tiling import estimate_idr
from kdsr.models import KDSRConfig, pack_teacher_input
from kdsr.models.encoder import standardise
from tests.conftest import tiny_model


def test_standardise_removes_brightness_and_contrast():
    x = torch.rand(3, 3, 12, 10)
    z = standardise(x)
    assert z.flatten(1).mean(dim=1).abs().max() < 1e-5
    torch.testing.assert_close(standardise(0.6 * x + 0.2), z, rtol=0.1, atol=0.01)  # the floor keeps a small share
    assert torch.isfinite(standardise(torch.full((1, 3, 4, 4), 0.5))).all()  # a flat image stays finite


def test_energy_student_ignores_contrast_and_pools_log_energy():
    model = tiny_model(encoder="energy")
    x = torch.rand(2, 3, 24, 20) * 0.5 + 0.2
    with torch.no_grad():
        idr = model.encode(x)
        same = model.encode((x - 0.2) * 1.5 + 0.1)  # another brightness and contrast, same structure
        encoder = model.encoder
        features = encoder.E[:-1](standardise(x))
        expected = encoder.from_pooled(features.square().mean(dim=(2, 3)))
        pooled = torch.log(features.square().mean(dim=(2, 3)) + 1e-4)
    torch.testing.assert_close(idr.d, expected.d)
    torch.testing.assert_close(idr.d_prime, encoder.mlp(pooled))
    torch.testing.assert_close(same.d, idr.d, rtol=0, atol=2e-3)


def test_energy_teacher_sees_the_lr_and_the_residual_to_the_box_downscaled_hr():
    lr, hr = torch.rand(2, 3, 6, 5), torch.rand(2, 3, 24, 20)
    packed = pack_teacher_input(lr, hr, 4, residual=True)
    std = lr.flatten(1).std(dim=1)[:, None, None, None] + 0.01
    torch.testing.assert_close(packed[:, :3], standardise(lr))
    torch.testing.assert_close(packed[:, 3:], (lr - F.avg_pool2d(hr, 4)) / std)
    teacher = tiny_model(teacher=True, encoder="energy")
    assert teacher.E.E[0].weight.shape[1] == 6 and teacher(lr, hr).shape == hr.shape


def test_tiled_idr_equals_whole_image_idr():
    model = tiny_model(encoder="energy")
    lr = torch.rand(1, 3, 37, 45)
    with torch.no_grad():
        whole = model.encode(lr)
        tiled = estimate_idr(model, lr, tile=16)
    torch.testing.assert_close(tiled.d, whole.d, rtol=0, atol=1e-5)


def test_checkpoint_says_which_encoder_and_official_loading_is_untouched(tmp_path):
    energy, official = tiny_model(encoder="energy"), tiny_model()
    assert "E_st.energy" in energy.state_dict() and "E_st.energy" not in official.state_dict()
    save_model(energy, tmp_path / "e.safetensors")
    loaded = load_model(tmp_path / "e.safetensors")
    assert loaded.config.encoder == "energy"
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), energy(x), rtol=0, atol=0)
    state = official.state_dict()
    torch.save(state, tmp_path / "official.pt")  # an official .pt: no marker, the official encoder
    assert load_model(tmp_path / "official.pt").config.encoder == "official"
    teacher = tiny_model(teacher=True, encoder="energy")
    save_model(teacher, tmp_path / "t.safetensors")
    assert load_model(tmp_path / "t.safetensors").config == teacher.config
    state = {k: v.contiguous() for k, v in energy.state_dict().items() if k != "E_st.energy"}
    meta = {"kdsr_format": "1", "kdsr_config": json.dumps(dataclasses.asdict(energy.config))}
    save_file(state, str(tmp_path / "bad.safetensors"), metadata=meta)
    with pytest.raises(CheckpointError, match="encoder"):  # the marker and the metadata disagree
        load_model(tmp_path / "bad.safetensors")


def test_unknown_encoder_is_refused():
    with pytest.raises(ValueError, match="encoder"):
        KDSRConfig(8, 2, 1, encoder="fancy")


def test_one_graph_onnx_export_standardises_inside(tmp_path):
    pytest.importorskip("onnxruntime")
    from kdsr.export.onnx import export_onnx
    from kdsr.inference.onnx_runtime import OnnxStudent

    model = tiny_model(encoder="energy")
    export_onnx(model, tmp_path / "m.onnx")
    lr = torch.rand(1, 3, 20, 24)
    with torch.no_grad():
        expected = model(lr)
    torch.testing.assert_close(OnnxStudent(tmp_path / "m.onnx")(lr), expected, rtol=0, atol=1e-4)


def test_classic_labels_follow_the_draws():
    hr = torch.rand(4, 3, 32, 32)
    sampling = classic.ClassicSampling(per_image=True, noise_max=10)
    lr, labels = classic.random_degrade_with_labels(hr, sampling, 4, torch.Generator().manual_seed(3))
    assert torch.equal(lr, classic.random_degrade(hr, sampling, 4, torch.Generator().manual_seed(3)))
    generator = torch.Generator().manual_seed(3)
    _, params = classic.sample_kernels(sampling, 4, generator)
    noise = torch.rand(4, generator=generator) * 10
    torch.testing.assert_close(labels[:, 1], params["sigma"])
    torch.testing.assert_close(labels[:, 2], noise)
    assert (labels[:, 0] == classic.BLUR_NOISE_CASE).all() and (labels[:, 3] == 100).all()


def _train_config(data_dir, *overrides):
    from kdsr.train import load_config

    tiny = ["model.n_feats=8", "model.n_blocks=2", "model.n_resblocks=1", "data.patch_size=8", "data.batch_size=4"]
    return load_config(None, [f"data.train=[{data_dir}]", *tiny, "device=cpu", "log_every=1", *overrides])


@pytest.mark.parametrize(
    ("stage", "warmup", "steps"),
    [
        # a teacher from a student: its G under a fresh energy teacher encoder
        (["stage=teacher"], 3, 5),
        # distill.fresh_encoder: a trained student's G under a fresh energy student encoder, no teacher
        (["stage=student", "distill.fresh_encoder=true", "distill.weight=0"], 2, 3),
    ],
    ids=["teacher", "student"],
)
def test_a_generator_under_a_fresh_energy_encoder_that_warms_up_on_the_head_alone(data_dir, tmp_path, stage, warmup,
                                                                                   steps):  # fmt: skip
    """The encoder learns the degradation head's loss alone for ``warmup`` steps (the generator is not run and stays
    the init student's), then encoder, head and generator train jointly with L1."""
    from kdsr.train import train

    student = tiny_model(seed=4)
    save_model(student, tmp_path / "student.safetensors")
    overrides = [
        *stage,
        "model.encoder=energy",
        f"distill.init={tmp_path / 'student.safetensors'}",
        "degradation.classic.per_image=true",
        "distill.degradation_weight=0.5",
        f"distill.warmup_steps={warmup}",
    ]
    train(_train_config(data_dir, *overrides, f"optim.steps={warmup}"), tmp_path / "warm")
    warm = load_model(tmp_path / "warm" / "last.safetensors")
    assert warm.config.teacher == (stage[0] == "stage=teacher") and warm.config.encoder == "energy"
    for key, value in student.G.state_dict().items():  # the warm-up never touched the generator
        assert torch.equal(warm.G.state_dict()[key], value), key
    train(_train_config(data_dir, *overrides, f"optim.steps={steps}"), tmp_path / "joint")
    log = [json.loads(line) for line in (tmp_path / "joint" / "log.jsonl").read_text().splitlines()]
    assert [("l1" in r) for r in log] == [False] * warmup + [True] * (steps - warmup)
    assert all(r["degradation"] > 0 for r in log)
    joint = load_model(tmp_path / "joint" / "last.safetensors")
    assert not torch.equal(joint.G.head[0].weight, student.G.head[0].weight)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["distill.warmup_steps=5"], "warmup_steps"),  # a teacher warm-up needs the head
        (["stage=student", "distill.warmup_steps=5", "distill.weight=0", "distill.init=x"], "needs distill.teacher"),
        (["stage=student", "distill.fresh_encoder=true", "distill.teacher=x"], "fresh_encoder"),
        (["stage=gan", "distill.warmup_steps=5", "distill.init=x", "distill.teacher=x", "gan.vgg_weights=x"], "warm"),
        (["model.encoder=fancy"], "model.encoder"),
        (["distill.degradation_weight=1", "degradation.classic.per_image=false"], "per_image"),
    ],
)
def test_recipe_settings_are_checked(data_dir, overrides, match):
    with pytest.raises(KDSRError, match=match):
        _train_config(data_dir, *overrides)
