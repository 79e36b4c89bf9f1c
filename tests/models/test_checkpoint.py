"""Checkpoints: our safetensors format, official classic/BasicSR files, detection and strictness."""

from __future__ import annotations

import json
import pickle
import warnings

import pytest
import torch

from kdsr import load_model, save_model
from kdsr.checkpoint import infer_config, read_metadata
from kdsr.errors import CheckpointError, UntrainedModelWarning
from kdsr.models import KDSRConfig
from tests.conftest import tiny_model


def _same_outputs(a, b):
    lr = torch.rand(1, 3, 5, 6, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        if a.config.teacher:
            hr = torch.rand(1, 3, 20, 24)
            return torch.equal(a(lr, hr), b(lr, hr))
        return torch.equal(a(lr), b(lr))


@pytest.mark.parametrize("teacher", [False, True])
def test_safetensors_round_trip_describes_itself(tmp_path, teacher):
    model = tiny_model(teacher=teacher, n_blocks=3, n_resblocks=2)
    path = tmp_path / "m.safetensors"
    save_model(model, path, metadata={"summary": "test model"})
    meta = read_metadata(path)
    assert json.loads(meta["kdsr_config"]) == {
        "n_feats": 8,
        "n_blocks": 3,
        "n_resblocks": 2,
        "scale": 4,
        "teacher": teacher,
        "encoder": "official",
    }
    assert meta["kdsr_role"] == ("teacher" if teacher else "student") and meta["summary"] == "test model"
    loaded = load_model(path)
    assert loaded.config == model.config and not loaded.training
    assert _same_outputs(model, loaded)
    assert not list(tmp_path.glob(".*tmp")), "temp file left behind"


@pytest.mark.parametrize(
    "config",
    [
        KDSRConfig(8, 2, 1),
        KDSRConfig(16, 3, 2, teacher=True),
        KDSRConfig(8, 1, 3, scale=2),
        KDSRConfig(8, 2, 0, scale=3),
    ],
)
def test_official_classic_pt_is_detected_from_shapes(tmp_path, config):
    from kdsr.models import build_model

    torch.manual_seed(0)
    model = build_model(config).eval()
    path = tmp_path / "model_ST_last.pt"
    torch.save(model.state_dict(), path)  # the official trainers save the bare OrderedDict
    assert infer_config(torch.load(path, weights_only=True)) == config
    loaded = load_model(path)
    assert loaded.config == config and _same_outputs(model, loaded)


def test_basicsr_pth_prefers_ema_and_strips_module_prefix(tmp_path):
    ema, plain = tiny_model(seed=1), tiny_model(seed=2)
    path = tmp_path / "KDSRS-GAN.pth"
    torch.save(
        {
            "params": {f"module.{k}": v for k, v in plain.state_dict().items()},
            "params_ema": {f"module.{k}": v for k, v in ema.state_dict().items()},
        },
        path,
    )
    loaded = load_model(path)
    assert _same_outputs(ema, loaded) and not _same_outputs(plain, loaded)
    torch.save({"params": plain.state_dict()}, path)
    assert _same_outputs(plain, load_model(path))


def test_convert_writes_our_format(tmp_path):
    from kdsr.cli import main

    model = tiny_model(teacher=True)
    torch.save(model.state_dict(), tmp_path / "teacher.pt")
    assert main(["convert", str(tmp_path / "teacher.pt"), str(tmp_path / "teacher.safetensors")]) == 0
    assert read_metadata(tmp_path / "teacher.safetensors")["kdsr_role"] == "teacher"
    assert _same_outputs(model, load_model(tmp_path / "teacher.safetensors"))


def _mutated(tmp_path, mutate):
    sd = dict(tiny_model().state_dict())
    mutate(sd)
    path = tmp_path / "bad.pt"
    torch.save(sd, path)
    return path


def test_missing_key_is_named(tmp_path):
    path = _mutated(tmp_path, lambda sd: sd.pop("G.body.1.bias"))
    with pytest.raises(CheckpointError, match=r"missing keys: G\.body\.1\.bias"):
        load_model(path)


def test_unexpected_key_is_named(tmp_path):
    path = _mutated(tmp_path, lambda sd: sd.__setitem__("G.extra.weight", torch.zeros(1)))
    with pytest.raises(CheckpointError, match=r"unexpected keys: G\.extra\.weight"):
        load_model(path)


def test_shape_mismatch_is_named(tmp_path):
    path = _mutated(tmp_path, lambda sd: sd.__setitem__("G.tail.1.bias", torch.zeros(4)))
    with pytest.raises(CheckpointError, match=r"shape mismatch: G\.tail\.1\.bias"):
        load_model(path)


def test_student_and_teacher_keys_cannot_be_mixed(tmp_path):
    # The official stage-4 init loads a teacher file into a student with strict=False; we refuse silently-random nets.
    student, teacher = tiny_model(), tiny_model(teacher=True)
    sd = {**student.state_dict(), **{k: v for k, v in teacher.state_dict().items() if k.startswith("E.")}}
    path = tmp_path / "mixed.pt"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match="unexpected keys: E.E.0.weight"):
        load_model(path)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty file"),
        (b"this is not a checkpoint at all", "cannot read checkpoint"),
        (b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage", "not a readable safetensors"),
    ],
)
def test_corrupt_files_give_clear_errors(tmp_path, content, message):
    path = tmp_path / "broken.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_model(path)


def test_not_a_kdsr_state_dict(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(8, 3, 3, 3)}, path)
    with pytest.raises(CheckpointError, match="not a KDSR checkpoint"):
        load_model(path)


class _Payload:
    def __reduce__(self):
        return (print, ("code executed",))


def test_pickles_with_code_are_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"G.head.0.weight": _Payload()}, f)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_model(path)
    assert "code executed" not in capsys.readouterr().out


def test_unknown_name_lists_known_models():
    with pytest.raises(CheckpointError, match="unknown model 'nope'.*kdsr-m"):
        load_model("nope")


def test_preset_name_warns_untrained_and_is_deterministic():
    state = torch.random.get_rng_state()
    with pytest.warns(UntrainedModelWarning):
        a = load_model("kdsr-s")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = load_model("kdsr-s")
    assert torch.equal(torch.random.get_rng_state(), state), "loading a preset must not disturb the global RNG"
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
