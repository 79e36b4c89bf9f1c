"""Training: losses fall, KD pulls D' to the teacher's, exact resume, DDP on gloo, GAN step, config errors."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import socket
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from kdsr import load_model
from kdsr.errors import KDSRError
from kdsr.train import load_config, train
from kdsr.train.losses import feature_matching_loss, kd_loss
from kdsr.train.runstate import STATE_FILE, read_state
from kdsr.train.stages import build_networks
from tests.conftest import REPO

TINY = [
    "model.n_feats=8",
    "model.n_blocks=2",
    "model.n_resblocks=1",
    "data.patch_size=8",
    "data.batch_size=4",
    "device=cpu",
    "log_every=1",
    "checkpoint_every=1000",
]


def _config(data_dir, *overrides):
    return load_config(None, [f"data.train=[{data_dir}]", *TINY, *overrides])


def _log(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def _smoothed(values, n=5):
    return sum(values[:n]) / n, sum(values[-n:]) / n


@pytest.fixture(scope="module")
def teacher_run(data_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("teacher")
    train(_config(data_dir, "stage=teacher", "optim.steps=40", "optim.lr=2e-3"), run_dir)
    return run_dir


@pytest.fixture(scope="module")
def gan_student(data_dir, teacher_run, tmp_path_factory):
    """A one-step student for the GAN stage to fine-tune."""
    run_dir = tmp_path_factory.mktemp("gan-student")
    teacher = f"distill.teacher={teacher_run / 'last.safetensors'}"
    train(_config(data_dir, "stage=student", teacher, "optim.steps=1"), run_dir)
    return run_dir / "last.safetensors"


def _gan_config(data_dir, student, *overrides):
    """The GAN stage without downloads or teacher (discriminator feature matching), tiny discriminator."""
    return _config(data_dir, "stage=gan", "gan.perceptual=discriminator", f"distill.init={student}",
                   "distill.weight=0", "gan.d_features=8", *overrides)  # fmt: skip


def test_teacher_loss_falls(teacher_run):
    l1 = [r["l1"] for r in _log(teacher_run) if "l1" in r]
    first, last = _smoothed(l1)
    assert len(l1) == 40 and last < 0.8 * first
    teacher = load_model(teacher_run / "last.safetensors")
    assert teacher.config.teacher and teacher.config.n_feats == 8


def test_student_kd_falls_and_idr_approaches_teacher(data_dir, teacher_run, tmp_path):
    teacher = load_model(teacher_run / "last.safetensors")
    config = _config(
        data_dir,
        "stage=student",
        f"distill.teacher={teacher_run / 'last.safetensors'}",
        "optim.steps=40",
        "optim.lr=2e-3",
    )
    torch.manual_seed(0)
    lr = torch.rand(4, 3, 8, 8)
    hr = F.interpolate(lr, scale_factor=4, mode="bicubic").clamp(0, 1)

    def distance(student):
        with torch.no_grad():
            return kd_loss(student.encode(lr).d_prime, teacher.encode(lr, hr).d_prime).item()

    train(config, tmp_path, stop_after=1)
    before = distance(load_model(tmp_path / "last.safetensors"))
    train(config, tmp_path, resume=True)
    student = load_model(tmp_path / "last.safetensors")
    kd = [r["kd"] for r in _log(tmp_path) if "kd" in r]
    first, last = _smoothed(kd)
    assert last < 0.7 * first
    assert distance(student) < before
    # Official stage-2 init: the student's G starts as the teacher's G, its encoder from scratch.
    initial = _config(data_dir, "stage=student", f"distill.teacher={teacher_run / 'last.safetensors'}")

    fresh, _ = build_networks(initial, torch.device("cpu"))
    assert all(
        torch.equal(a, b) for a, b in zip(fresh.G.state_dict().values(), teacher.G.state_dict().values(), strict=True)
    )


def test_resume_equals_uninterrupted(data_dir, tmp_path):
    overrides = ("stage=teacher", "optim.steps=6", "checkpoint_every=3", "optim.lr_decay_steps=4")
    train(_config(data_dir, *overrides), tmp_path / "full")
    train(_config(data_dir, *overrides), tmp_path / "cut", stop_after=3)
    assert json.loads((tmp_path / "cut" / "log.jsonl").read_text().splitlines()[-1])["step"] == 3
    train(_config(data_dir, *overrides), tmp_path / "cut", resume=True)
    full, cut = _log(tmp_path / "full"), _log(tmp_path / "cut")
    assert [r["loss"] for r in full] == [r["loss"] for r in cut]
    a, b = load_model(tmp_path / "full" / "last.safetensors"), load_model(tmp_path / "cut" / "last.safetensors")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_warmup_trains_only_the_encoder(data_dir, teacher_run, tmp_path):
    config = _config(
        data_dir,
        "stage=student",
        f"distill.teacher={teacher_run / 'last.safetensors'}",
        "optim.steps=2",
        "distill.warmup_steps=2",
        "distill.loss=l2",
    )
    train(config, tmp_path)
    teacher, student = load_model(teacher_run / "last.safetensors"), load_model(tmp_path / "last.safetensors")
    assert all(
        torch.equal(a, b) for a, b in zip(student.G.state_dict().values(), teacher.G.state_dict().values(), strict=True)
    )
    assert all("l1" not in r for r in _log(tmp_path))


def _torchrun(nodes: int, command: list[str], env: dict) -> list[subprocess.CompletedProcess]:
    """``command`` under torchrun on 2 processes: one node with two, or two "nodes" of one process each on this
    machine that meet through the c10d rendezvous on 127.0.0.1 (as two hosts of a cluster would)."""
    with socket.socket() as probe:  # a free port for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run = [sys.executable, "-m", "torch.distributed.run"]
    if nodes == 1:
        return [subprocess.run([*run, "--nproc_per_node=2", f"--master_port={port}", *command],
                               capture_output=True, text=True, env=env, timeout=300)]  # fmt: skip
    rendezvous = ["--nnodes=2", "--nproc_per_node=1", "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}"]
    agents = [
        subprocess.Popen([*run, *rendezvous, "--rdzv_id=kdsr-test", *command], env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(nodes)
    ]  # fmt: skip
    outputs = [a.communicate(timeout=300) for a in agents]  # reads the pipes while waiting: no deadlock
    return [subprocess.CompletedProcess(a.args, a.returncode, *out) for a, out in zip(agents, outputs, strict=True)]


@pytest.mark.slow
@pytest.mark.parametrize("nodes", [1, 2], ids=["one-node", "two-nodes"])
def test_ddp_two_process_gloo_matches_single_process_first_step(data_dir, tmp_path, nodes):
    from kdsr.data import HRPatches
    from kdsr.data.patches import load_rgb_folder
    from kdsr.degradations.sampling import sample_lr
    from kdsr.train.loop import step_seed

    cfg = tmp_path / "ddp.yaml"
    cfg.write_text(f"stage: teacher\ndata: {{train: [{data_dir}]}}\noptim: {{steps: 1, lr: 1.0e-3}}\n")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    for result in _torchrun(nodes, ["-m", "kdsr", "train", str(cfg), *TINY, "-o", str(tmp_path / "run")], env):
        assert result.returncode == 0, result.stderr[-2000:]
    assert _log(tmp_path / "run")[0]["world_size"] == 2
    ddp_model = load_model(tmp_path / "run" / "last.safetensors")

    # The same first step by hand in one process: each rank's batch and degradation, gradients averaged.
    config = load_config(cfg, TINY)
    model, _ = build_networks(config, torch.device("cpu"))
    dataset = HRPatches(load_rgb_folder(config.data.train), 32, config.seed)
    grads = []
    for rank in (0, 1):
        hr = torch.stack([dataset[rank * 4 + j] for j in range(4)])
        lr = sample_lr(config.degradation, hr, 4, torch.Generator().manual_seed(step_seed(config.seed, 0, rank)))
        model.zero_grad()
        F.l1_loss(model(lr, hr), hr).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999))
    for p, g0, g1 in zip(model.parameters(), *grads, strict=True):
        p.grad = (g0 + g1) / 2
    optimizer.step()
    for a, b in zip(model.state_dict().values(), ddp_model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_gan_step_with_random_vgg_weights(data_dir, teacher_run, tmp_path, precision):
    from kdsr.models.vgg import VGG19Features

    student_dir = tmp_path / "student"
    train(
        _config(data_dir, "stage=student", f"distill.teacher={teacher_run / 'last.safetensors'}", "optim.steps=1"),
        student_dir,
    )
    torch.manual_seed(0)
    torch.save(VGG19Features().state_dict(), tmp_path / "vgg19.pth")
    config = _config(
        data_dir,
        "stage=gan",
        f"distill.teacher={teacher_run / 'last.safetensors'}",
        f"distill.init={student_dir / 'last.safetensors'}",
        f"gan.vgg_weights={tmp_path / 'vgg19.pth'}",
        "gan.d_features=8",
        "optim.steps=2",
        "ema_decay=0.999",
        f"precision={precision}",
    )
    train(config, tmp_path / "gan")
    record = _log(tmp_path / "gan")[-1]
    assert {"l1", "kd", "perceptual", "gan", "d_real", "d_fake"} <= set(record)
    assert all(torch.isfinite(torch.tensor(v)) for v in record.values())
    state = read_state(tmp_path / "gan" / "state.pt", torch.device("cpu"))
    assert {"ema", "disc", "optimizer_d", "scaler_d"} <= set(state)
    assert bool(state["scaler_d"]) == (precision == "fp16")  # the discriminator's loss is scaled under fp16 too


def test_gan_stage_without_downloads_or_teacher_uses_discriminator_feature_matching(
    data_dir, teacher_run, gan_student, tmp_path
):
    from kdsr.models.discriminator import UNetDiscriminatorSN
    from kdsr.train.losses import feature_matching_loss

    disc = UNetDiscriminatorSN(features=8).eval()
    x, y = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    logits, features = disc(x, return_features=True)
    assert torch.equal(logits, disc(x)) and len(features) == 9
    assert feature_matching_loss(features, features).item() == 0
    other = disc(y, return_features=True)[1]
    expected = sum((a - b).abs().mean() for a, b in zip(features, other, strict=True)) / 9
    assert torch.allclose(feature_matching_loss(features, other), expected)
    train(_gan_config(data_dir, gan_student, "optim.steps=2"), tmp_path / "gan")
    record = _log(tmp_path / "gan")[-1]
    assert {"l1", "perceptual", "gan", "d_real", "d_fake"} <= set(record) and "kd" not in record
    assert record["perceptual"] > 0
    with pytest.raises(KDSRError, match="gan.perceptual must be"):
        _config(data_dir, "stage=gan", "gan.perceptual=lpips", f"distill.init={teacher_run / 'last.safetensors'}",
                "distill.weight=0")  # fmt: skip


def test_gan_stage_usm_targets_sharpen_the_l1_and_perceptual_targets_only(data_dir, gan_student):
    from kdsr.degradations.sharpen import unsharp_mask
    from kdsr.train.stages import build_stage

    g = torch.Generator().manual_seed(0)
    hr = torch.rand(2, 3, 32, 32, generator=g)
    hr[..., 16:] *= 0.2
    lr = F.avg_pool2d(hr, 4)
    for usm in (False, True):
        config = _gan_config(data_dir, gan_student, f"gan.usm_targets={str(usm).lower()}")
        stage = build_stage(config, torch.device("cpu"))
        stage.disc.eval()  # spectral norm's power iteration would change the discriminator between calls
        losses, sr = stage.losses(lr, hr, step=0)
        target = unsharp_mask(hr) if usm else hr
        assert torch.allclose(losses["l1"], F.l1_loss(sr, target))
        fake, real = (stage.disc(x, return_features=True)[1] for x in (sr, target))
        assert torch.allclose(losses["perceptual"], feature_matching_loss(fake, real))
    assert not torch.allclose(unsharp_mask(hr), hr)


def test_gan_discriminator_warmup_leaves_the_generator_alone(data_dir, gan_student, tmp_path):
    with pytest.raises(KDSRError, match="d_warmup_steps"):
        _gan_config(data_dir, gan_student, "gan.d_warmup_steps=2", "optim.steps=2")
    config = _gan_config(data_dir, gan_student, "gan.d_warmup_steps=2", "optim.steps=3")
    run = tmp_path / "gan"
    train(dataclasses.replace(config, optim=dataclasses.replace(config.optim, steps=2)), run)  # the warm-up only
    initial = load_model(gan_student).state_dict()
    warmed = read_state(run / STATE_FILE, torch.device("cpu"))
    assert all(torch.equal(initial[k], v) for k, v in warmed["model"].items())
    assert any(not torch.equal(a, b) for a, b in zip(warmed["disc"].values(), _fresh_disc_state(config), strict=True))
    train(config, run, resume=True)
    records = _log(run)
    assert all({"d_real", "d_fake"} <= set(r) for r in records)
    assert ["gan" in r for r in records] == [False, False, True]  # the generator's losses start after the warm-up
    trained = read_state(run / STATE_FILE, torch.device("cpu"))["model"]
    assert any(not torch.equal(initial[k], v) for k, v in trained.items())


def _fresh_disc_state(config):
    from kdsr.models.discriminator import UNetDiscriminatorSN

    torch.manual_seed(config.seed + 1)
    return list(UNetDiscriminatorSN(features=config.gan.d_features).state_dict().values())


def test_missing_vgg_weights_say_how_to_get_them(data_dir, teacher_run, tmp_path):
    config = _config(
        data_dir,
        "stage=gan",
        f"distill.teacher={teacher_run / 'last.safetensors'}",
        f"distill.init={teacher_run / 'last.safetensors'}",
        f"gan.vgg_weights={tmp_path / 'nope.pth'}",
    )
    with pytest.raises(KDSRError, match="vgg19-dcbb9e9d.pth"):
        train(config, tmp_path / "gan")


def test_divergence_guard(data_dir, tmp_path):
    config = _config(data_dir, "stage=teacher", "optim.steps=30", "optim.lr=1e30", "optim.max_bad_steps=2")
    with pytest.raises(KDSRError, match="diverged"):
        train(config, tmp_path)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["optim.stepz=3"], "unknown key"),
        (["optim.steps=many"], "must be int"),
        (["stage=pupil"], "stage must be"),
        (["stage=student"], "distill.teacher"),
        (["distill.loss=cosine"], "distill.loss"),
        (["optim"], "expected key.sub=value"),
        (["log_every=0"], "log_every"),
        (["checkpoint_every=0"], "checkpoint_every"),
        (["val.every=0"], "val.every"),
        (["model.preset=nope"], "model.preset"),
    ],
)
def test_config_errors(data_dir, overrides, message):
    with pytest.raises(KDSRError, match=message):
        _config(data_dir, *overrides)


def test_empty_override_clears_a_string_option(data_dir):
    config = _config(data_dir, "val.data=../shared/data/Set5", "val.data=")
    assert config.val.data == ""


def test_shipped_configs_parse():
    for path in sorted((REPO / "configs").glob("*.yaml")):
        config = load_config(path)
        assert config.data.train


def test_cli_train_and_plot(data_dir, tmp_path):
    from kdsr.cli import main

    cfg = tmp_path / "t.yaml"
    cfg.write_text(f"data: {{train: [{data_dir}]}}\noptim: {{steps: 3}}\nval: {{data: {data_dir}, every: 3}}\n")
    assert main(["train", str(cfg), *TINY, "-o", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "best.safetensors").is_file()
    if shutil.which("true") and pytest.importorskip("matplotlib"):
        assert main(["plot", str(tmp_path / "run")]) == 0
        assert (tmp_path / "run" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["train", str(cfg), "--resume", str(tmp_path / "missing")]) == 1


def test_degradation_settings_are_typed(data_dir):
    config = _config(
        data_dir,
        "degradation.kind=realworld",
        "degradation.realworld.noise_range=[1, 10]",
        "degradation.classic.per_image=true",
    )
    assert config.degradation.realworld.noise_range == (1.0, 10.0) and config.degradation.classic.per_image
    for bad, message in [
        ("degradation.realworld.noise_rang=[1, 2]", "unknown key"),
        ("degradation.realworld.sinc_prob=2.0", "sinc_prob"),
        ("degradation.classic.mode=blurry", "mode"),
    ]:
        with pytest.raises(KDSRError, match=message):
            _config(data_dir, bad)


def test_teacher_stage_can_start_from_trained_weights(data_dir, teacher_run, tmp_path):

    config = _config(data_dir, "stage=teacher", f"distill.init={teacher_run / 'last.safetensors'}")
    model, _ = build_networks(config, torch.device("cpu"))
    trained = load_model(teacher_run / "last.safetensors")
    assert all(
        torch.equal(a, b) for a, b in zip(model.state_dict().values(), trained.state_dict().values(), strict=True)
    )


def test_student_init_from_a_student_continues_it_whole(data_dir, teacher_run, tmp_path):
    teacher = f"distill.teacher={teacher_run / 'last.safetensors'}"
    train(_config(data_dir, "stage=student", teacher, "optim.steps=3"), tmp_path / "first")
    first = load_model(tmp_path / "first" / "last.safetensors")
    config = _config(data_dir, "stage=student", teacher, f"distill.init={tmp_path / 'first' / 'last.safetensors'}")
    student, _ = build_networks(config, torch.device("cpu"))
    for key, value in first.state_dict().items():
        assert torch.equal(student.state_dict()[key], value), key
    # a teacher as init still gives a fresh student encoder and the teacher's G
    fresh, frozen = build_networks(_config(data_dir, "stage=student", teacher), torch.device("cpu"))
    for key, value in frozen.G.state_dict().items():
        assert torch.equal(fresh.G.state_dict()[key], value), key
    assert not torch.equal(fresh.state_dict()["E_st.E.0.weight"], student.state_dict()["E_st.E.0.weight"])


def test_student_init_with_another_architecture_is_refused(data_dir, teacher_run, tmp_path):
    other = tmp_path / "other"
    teacher = f"distill.teacher={teacher_run / 'last.safetensors'}"
    train(_config(data_dir, "stage=teacher", "optim.steps=1", "model.n_feats=16"), tmp_path / "t16")
    train(
        _config(
            data_dir,
            "stage=student",
            f"distill.teacher={tmp_path / 't16' / 'last.safetensors'}",
            "optim.steps=1",
            "model.n_feats=16",
        ),
        other,
    )
    config = _config(data_dir, "stage=student", teacher, f"distill.init={other / 'last.safetensors'}", "optim.steps=1")
    with pytest.raises(KDSRError, match="architecture differs"):
        train(config, tmp_path / "run")


def test_a_skipped_last_step_still_saves_the_final_checkpoint(data_dir, tmp_path, monkeypatch):
    import kdsr.train.loop as loop

    degrade = loop.sample_lr

    def nan_on_the_last_step(sampling, hr, scale, generator):
        lr = degrade(sampling, hr, scale, generator)
        return lr * float("nan") if len(_log_steps(tmp_path / "run")) == 2 else lr

    monkeypatch.setattr(loop, "sample_lr", nan_on_the_last_step)
    train(_config(data_dir, "optim.steps=3"), tmp_path / "run")
    assert read_state(tmp_path / "run" / "state.pt", torch.device("cpu"))["step"] == 3


def _log_steps(run_dir):
    path = run_dir / "log.jsonl"
    return [json.loads(line)["step"] for line in path.read_text().splitlines()] if path.is_file() else []


def test_validation_keeps_the_models_mode(data_dir):
    from kdsr.train.loop import _validate
    from tests.conftest import tiny_model

    config = _config(data_dir, f"val.data={data_dir}")
    for training in (False, True):
        model = tiny_model().train(training)
        _validate(config, model, torch.device("cpu"))
        assert model.training == training  # an EMA model (eval) stays in eval mode


def test_everyday_validation_logs_each_case_gain(data_dir):
    from kdsr.degradations.recipes import EVERYDAY_CASES
    from kdsr.train.loop import _validate
    from tests.conftest import tiny_model

    config = _config(data_dir, f"val.data={data_dir}", "val.protocol=everyday")
    metrics = _validate(config, tiny_model(), torch.device("cpu"))
    gains = [metrics[f"val_gain_{case}"] for case in EVERYDAY_CASES]
    assert metrics["val_min_gain"] == min(gains)
    assert metrics["val_gain"] == pytest.approx(sum(gains) / len(gains))


def _degrade(config, hr, generator):
    from kdsr.degradations.sampling import sample_lr

    return sample_lr(config.degradation, hr, config.data.scale, generator)


def test_degradation_groups_share_one_draw(data_dir):

    hr = torch.rand(1, 3, 32, 32).expand(4, -1, -1, -1).contiguous()  # four copies of one patch
    for kind in ("classic", "mixture", "realworld"):
        grouped = _degrade(_config(data_dir, f"degradation.kind={kind}", "degradation.group=2"), hr, _gen())
        torch.testing.assert_close(grouped[0], grouped[1], rtol=0, atol=0)
        torch.testing.assert_close(grouped[2], grouped[3], rtol=0, atol=0)
        assert not torch.equal(grouped[1], grouped[2]), kind
    alone = _degrade(_config(data_dir, "degradation.kind=mixture"), hr, _gen())
    assert not torch.equal(alone[0], alone[1])


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_teacher_with_group_idr_uses_the_group_mean(data_dir, tmp_path):
    from tests.conftest import tiny_model

    teacher = tiny_model(teacher=True)
    lr, hr = torch.rand(4, 3, 8, 8), torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        sr, idr = teacher(lr, hr, return_idr=True, idr_groups=2)
        mean = idr.d.reshape(2, 2, -1).mean(1).repeat_interleave(2, dim=0)
        torch.testing.assert_close(sr, teacher.G(lr, mean))
        assert not torch.equal(sr, teacher(lr, hr))
    overrides = ("stage=teacher", "degradation.group=2", "distill.group_idr=true", "optim.steps=2")
    train(_config(data_dir, *overrides), tmp_path / "run")
    assert [r["step"] for r in _log(tmp_path / "run") if "loss" in r] == [1, 2]


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["degradation.group=3"], "divide data.batch_size"),
        (["degradation.group=0"], "divide data.batch_size"),
        (["stage=teacher", "distill.group_idr=true"], "needs degradation.group > 1"),
    ],
)
def test_group_settings_are_checked(data_dir, overrides, message):
    with pytest.raises(KDSRError, match=message):
        _config(data_dir, *overrides)


def test_group_contrast_loss_rewards_degradation_not_content():
    from kdsr.train.losses import group_contrast_loss

    torch.manual_seed(0)
    content = torch.randn(16, 32)
    degradation = torch.randn(4, 32).repeat_interleave(4, dim=0)
    by_content = group_contrast_loss(content, 4)
    by_degradation = group_contrast_loss(degradation + 0.01 * content, 4)
    assert by_degradation.item() == pytest.approx(math.log(3), abs=1e-3)  # the minimum: 3 positives, far negatives
    assert by_content > by_degradation + 1
    shifted = group_contrast_loss(degradation + 0.01 * content + 100, 4)  # a shared offset costs nothing
    assert shifted.item() == pytest.approx(by_degradation.item(), abs=1e-3)
    features = content.clone().requires_grad_(True)
    group_contrast_loss(features, 4).backward()
    assert features.grad.abs().sum() > 0


def test_teacher_with_contrast_loss_logs_it(data_dir, tmp_path):
    overrides = ("stage=teacher", "degradation.group=2", "distill.contrast_weight=0.01", "optim.steps=2")
    train(_config(data_dir, *overrides), tmp_path / "run")
    assert all("contrast" in r for r in _log(tmp_path / "run") if "loss" in r)
    with pytest.raises(KDSRError, match="contrast_weight is for the teacher stage"):
        _config(data_dir, "distill.contrast_weight=0.01")


def test_strip_groups_share_parameters_but_not_noise(data_dir):
    from kdsr.degradations.classic import quantize
    from kdsr.degradations.resize import imresize

    hr = torch.rand(1, 3, 32, 32).expand(4, -1, -1, -1).contiguous()  # four copies of one patch
    clean = quantize(imresize(hr[:1], 1 / 4))[0][:, :, 2:6]  # columns the seams do not reach
    config = _config(data_dir, "degradation.kind=mixture", "degradation.group=2", "degradation.group_mode=strip")
    config.degradation.mixture = dataclasses.replace(config.degradation.mixture, probs=(0.5, 0, 0, 0, 0.5), box_prob=0)
    seen = set()
    for seed in range(8):
        lr = _degrade(config, hr, _gen(seed))
        assert lr.shape == (4, 3, 8, 8)
        for a, b in ((0, 1), (2, 3)):
            a_clean, b_clean = (torch.equal(lr[i][:, :, 2:6], clean) for i in (a, b))
            assert a_clean == b_clean  # one case per group (clean or real-world), never mixed
            assert a_clean or not torch.equal(lr[a], lr[b])  # real-world members: independent noise
            seen.add(a_clean)
    assert seen == {True, False}
    with pytest.raises(KDSRError, match="group_mode"):
        _config(data_dir, "degradation.group_mode=other")


def test_degradation_head_loss_is_low_for_the_right_answer():
    from kdsr.train.losses import DegradationHead, degradation_head_loss

    head = DegradationHead(4, 5).eval()  # running statistics 0 and 1: the read-out sees D itself
    labels = torch.tensor([[0, 0, 0, 100], [1, 0, 0, 40], [4, math.nan, math.nan, math.nan]])
    d = torch.eye(3, 4)
    with torch.no_grad():
        head.linear.weight.zero_()
        head.linear.bias.zero_()
        head.linear.weight[[0, 1, 4], [0, 1, 2]] = 50  # each input's own case
        head.linear.weight[7, 1] = 60 / 70  # JPEG strength of the second input
    right = degradation_head_loss(head, d, labels)
    assert right.item() < 1e-6
    wrong = degradation_head_loss(head, d, labels[[1, 0, 2]])
    assert wrong.item() > 10  # swapped cases, and strengths 0 and 60/70 exchanged
    d = d.clone().requires_grad_(True)
    degradation_head_loss(head, d, labels[[1, 0, 2]]).backward()
    assert d.grad.abs().sum() > 0  # the loss reaches the IDR


@pytest.mark.parametrize("stage", ["teacher", "student"])
def test_degradation_head_trains_and_resumes_exactly(data_dir, teacher_run, tmp_path, stage):
    overrides = [
        f"stage={stage}",
        "degradation.kind=mixture",
        "distill.degradation_weight=0.5",
        "optim.steps=6",
        "checkpoint_every=3",
        *([f"distill.teacher={teacher_run / 'last.safetensors'}"] if stage == "student" else []),
    ]
    train(_config(data_dir, *overrides), tmp_path / "full")
    train(_config(data_dir, *overrides), tmp_path / "cut", stop_after=3)
    train(_config(data_dir, *overrides), tmp_path / "cut", resume=True)
    full, cut = _log(tmp_path / "full"), _log(tmp_path / "cut")
    assert all(r["degradation"] > 0 for r in full)
    assert [r["loss"] for r in full] == [r["loss"] for r in cut]
    assert "degradation_head" in read_state(tmp_path / "full" / STATE_FILE, torch.device("cpu"))


def test_degradation_head_without_it_sees_the_same_data(data_dir):
    """The head changes the losses, never the batches: a run with it and one without see the same LR."""
    from kdsr.degradations.sampling import sample_lr_with_labels

    config = _config(data_dir, "degradation.kind=mixture")
    hr = torch.rand(4, 3, 32, 32)
    lr, labels = sample_lr_with_labels(config.degradation, hr, 4, _gen(5))
    assert torch.equal(lr, _degrade(config, hr, _gen(5))) and labels.shape == (4, 4)


@pytest.mark.parametrize(
    "overrides",
    [
        ["distill.degradation_weight=1"],  # classic with one draw per batch: the head would see no difference
        ["degradation.kind=mixture", "degradation.group=2", "distill.degradation_weight=1"],
        ["degradation.kind=mixture", "distill.degradation_weight=-1"],
    ],
)
def test_degradation_head_settings_are_checked(data_dir, overrides):
    with pytest.raises(KDSRError, match="degradation_weight"):
        _config(data_dir, *overrides)


def test_degradation_head_learns_at_its_own_rate(data_dir, teacher_run, tmp_path):
    from kdsr.train.stages import build_stage

    config = _config(data_dir, "degradation.kind=mixture", "distill.degradation_weight=1", "stage=teacher")
    config.distill.degradation_lr_scale = 50.0
    groups = build_stage(config, torch.device("cpu")).param_groups()
    assert [g["lr_scale"] for g in groups] == [1.0, 50.0]
    assert sum(p.numel() for p in groups[1]["params"]) == (8 + 1) * (5 + 3)  # linear C=8 -> 5 cases + 3 values
    train(config, tmp_path / "run", stop_after=1)
    state = read_state(tmp_path / "run" / STATE_FILE, torch.device("cpu"))
    assert [g["lr"] for g in state["optimizer"]["param_groups"]] == [config.optim.lr, 50 * config.optim.lr]


def test_degradation_head_standardises_a_small_idr():
    """A D that barely varies (as the trained encoders' does) reaches the read-out at unit scale."""
    from kdsr.train.losses import DegradationHead

    head = DegradationHead(4, 5).train()
    d = 0.38 + 0.006 * torch.randn(16, 4)
    assert head.norm(d).std(dim=0).mean().item() == pytest.approx(1.0, abs=0.05)


def test_low_frequency_loss_holds_colours_and_leaves_detail_free():
    from kdsr.train.losses import low_frequency_loss

    y, x = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    target = (0.5 + 0.2 * torch.sin(x / 9) * torch.cos(y / 7)).expand(1, 3, 32, 32)
    detail = target + 0.1 * (-1.0) ** (x + y)  # zero-mean within every 4x4 block: LR-scale content unchanged
    tinted = target + torch.tensor([0.02, 0.0, -0.02]).view(1, 3, 1, 1)
    assert low_frequency_loss(detail, target, 4).item() < 1e-7 < F.l1_loss(detail, target).item()
    assert low_frequency_loss(tinted, target, 4).item() == pytest.approx(0.04 / 3, rel=1e-4)
    output = target.clone().requires_grad_(True)
    low_frequency_loss(output + 0.01, target, 4).backward()
    assert output.grad is not None and output.grad.abs().sum() > 0


def test_spectrum_loss_asks_for_the_targets_frequencies_not_their_alignment():
    import numpy as np

    from kdsr.train.losses import spectrum_loss

    y, x = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    stripes = (0.5 + 0.3 * torch.cos(2 * math.pi * (x / 4 + y / 16))).expand(1, 3, 32, 32)
    shifted = (0.5 + 0.3 * torch.cos(2 * math.pi * (x / 4 + y / 16) + math.pi)).expand(1, 3, 32, 32)
    flat = torch.full_like(stripes, 0.5)
    grid = stripes + 0.05 * (-1.0) ** (x + y)  # a pixel checkerboard the target does not have
    assert spectrum_loss(stripes, stripes).item() == 0
    assert spectrum_loss(shifted, stripes) < 0.1 * spectrum_loss(flat, stripes)  # L1 would rank these the other way
    assert F.l1_loss(shifted, stripes) > F.l1_loss(flat, stripes)
    assert spectrum_loss(grid, stripes) > 3 * spectrum_loss(shifted, stripes)  # and the grid worse than the shift
    assert F.l1_loss(grid, stripes) < F.l1_loss(shifted, stripes)
    # one 16-pixel tile: an independent numpy computation (Hann-tapered tile, orthonormal FFT magnitudes)
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(1, 1, 16, 16, generator=g), torch.rand(1, 1, 16, 16, generator=g)
    hann = np.outer(np.hanning(16), np.hanning(16))
    amp = [np.abs(np.fft.rfft2(t[0, 0].double().numpy() * hann, norm="ortho")) for t in (a, b)]
    assert spectrum_loss(a, b).item() == pytest.approx(np.abs(amp[0] - amp[1]).mean(), rel=1e-5)
    output = flat.clone().requires_grad_(True)
    spectrum_loss(output, stripes).backward()
    assert output.grad.abs().sum() > 0


def test_gan_stage_with_the_spectrum_loss(data_dir, gan_student, tmp_path):
    from kdsr.train.losses import spectrum_loss
    from kdsr.train.stages import build_stage

    config = _gan_config(data_dir, gan_student, "gan.perceptual=spectrum", "gan.perceptual_weight=3")
    stage = build_stage(config, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    hr = torch.rand(2, 3, 32, 32, generator=g)
    losses, sr = stage.losses(F.avg_pool2d(hr, 4), hr, step=0)
    assert torch.allclose(losses["perceptual"], 3 * spectrum_loss(sr, hr))
    train(dataclasses.replace(config, optim=dataclasses.replace(config.optim, steps=2)), tmp_path / "gan")
    assert _log(tmp_path / "gan")[-1]["perceptual"] > 0


def test_subpixel_uniformity_loss_finds_detail_locked_to_the_upsamplers_grid():
    from kdsr.train.losses import subpixel_uniformity_loss

    g = torch.Generator().manual_seed(0)
    photo_like = F.avg_pool2d(torch.rand(2, 3, 66, 66, generator=g), 3, stride=1)  # detail anywhere, 64x64
    x = torch.arange(64.0)
    locked = photo_like * (1 + 0.3 * (x % 4 == 0).float())  # every fourth column brighter: a sub-pixel grid
    even = subpixel_uniformity_loss(photo_like, 4)
    assert even < 0.1
    assert subpixel_uniformity_loss(locked, 4) > 3 * even
    assert subpixel_uniformity_loss(0.5 * photo_like + 0.2, 4).item() == pytest.approx(even.item(), rel=1e-4)
    output = locked.clone().requires_grad_(True)
    subpixel_uniformity_loss(output, 4).backward()
    assert output.grad.abs().sum() > 0


def test_gan_stage_logs_the_subpixel_and_low_frequency_losses_when_weighted(data_dir, gan_student, tmp_path):
    from kdsr.train.losses import subpixel_uniformity_loss
    from kdsr.train.stages import build_stage

    config = _gan_config(data_dir, gan_student, "gan.subpixel_weight=0.5")
    stage = build_stage(config, torch.device("cpu"))
    hr = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    losses, sr = stage.losses(F.avg_pool2d(hr, 4), hr, step=0)
    assert torch.allclose(losses["subpixel"], 0.5 * subpixel_uniformity_loss(sr, 4))
    unweighted = build_stage(_gan_config(data_dir, gan_student), torch.device("cpu"))
    assert not {"subpixel", "lowfreq"} & set(unweighted.losses(F.avg_pool2d(hr, 4), hr, step=0)[0])
    from kdsr.train.losses import low_frequency_loss

    stage = build_stage(_gan_config(data_dir, gan_student, "gan.lowfreq_weight=10"), torch.device("cpu"))
    losses, sr = stage.losses(F.avg_pool2d(hr, 4), hr, step=0)
    assert torch.allclose(losses["lowfreq"], 10 * low_frequency_loss(sr, hr, 4))


def _teacher_set(path, n=6, patch=8, scale=4, seed=0):
    """A teacher-target set as scripts/teacher_targets.py writes it: its teacher is the HR brightened by 0.1 on the
    right half (a colour shift, no new structure) and, on the left half, the HR with extra fine detail."""
    import numpy as np

    g = np.random.default_rng(seed)
    hr = F.avg_pool2d(torch.from_numpy(g.random((n, 3, patch * scale + 2, patch * scale + 2))).float(), 3, stride=1)
    hr = hr * 0.6 + 0.2
    detail = torch.from_numpy(g.random(hr.shape)).float() * 0.04 - 0.02
    teacher = hr.clone()
    teacher[..., : patch * scale // 2] += detail[..., : patch * scale // 2]
    teacher[..., patch * scale // 2 :] += 0.1
    byte = lambda t: (t.clamp(0, 1) * 255).round().byte().numpy()  # noqa: E731
    np.savez(path, lr=byte(F.avg_pool2d(hr, scale)), hr=byte(hr), teacher=byte(teacher), case=np.zeros(n, np.int64))
    return hr, teacher


def test_teacher_targets_take_the_teachers_detail_where_it_agrees_and_the_hrs_colours(tmp_path):
    from kdsr.data.teacher_targets import SPLIT_SIGMA, TeacherTargets, _gaussian

    hr, teacher = _teacher_set(tmp_path / "set.npz")
    targets = TeacherTargets(tmp_path / "set.npz", 8, 4, tolerance=0.04)
    target = targets.target.float() / 255
    hr8 = (hr * 255).round() / 255
    # right half: the teacher's shift of 0.1 is beyond the tolerance, so the target is the HR there
    assert (target[..., 20:] - hr8[..., 20:]).abs().max() < 2 / 255
    # left half: the HR's low frequencies, the teacher's high frequencies
    t8 = (teacher * 255).round() / 255
    high = lambda x: x - _gaussian(x, SPLIT_SIGMA)  # noqa: E731
    left = (slice(None), slice(None), slice(4, 28), slice(4, 12))
    from_teacher = (high(target)[left] - high(t8)[left]).abs().mean()
    assert from_teacher < 0.25 * (high(target)[left] - high(hr8)[left]).abs().mean()
    assert 0.3 < targets.trusted < 0.6
    lr, drawn = targets.sample(4, torch.Generator().manual_seed(1))
    assert lr.shape == (4, 3, 8, 8) and drawn.shape == (4, 3, 32, 32)
    assert torch.allclose(F.avg_pool2d(drawn, 4), lr, atol=0.03)  # flips and transposes applied to both alike


def test_gan_stage_mixes_teacher_targets_into_its_batches(data_dir, gan_student, tmp_path):
    from kdsr.train.stages import build_stage

    _teacher_set(tmp_path / "set.npz", n=3)
    config = _gan_config(data_dir, gan_student, f"gan.teacher_targets={tmp_path / 'set.npz'}", "gan.teacher_share=0.5")
    stage = build_stage(config, torch.device("cpu"))
    lr, hr = torch.zeros(4, 3, 8, 8), torch.zeros(4, 3, 32, 32)
    mixed_lr, mixed_hr = stage.mix_in(lr, hr, torch.Generator().manual_seed(0))
    assert torch.equal(mixed_lr[:2], lr[:2]) and mixed_lr[2:].min() > 0.1 and mixed_hr[2:].min() > 0.1
    train(dataclasses.replace(config, optim=dataclasses.replace(config.optim, steps=2)), tmp_path / "gan")
    assert _log(tmp_path / "gan")[-1]["l1"] > 0
    with pytest.raises(KDSRError, match="not 4-pixel patches"):
        build_stage(_gan_config(data_dir, gan_student, f"gan.teacher_targets={tmp_path / 'set.npz'}",
                                "data.patch_size=4"), torch.device("cpu"))  # fmt: skip
    with pytest.raises(KDSRError, match="teacher_targets is for the gan stage"):
        _config(data_dir, "stage=teacher", f"gan.teacher_targets={tmp_path / 'set.npz'}")


def test_gan_stage_can_keep_the_whole_encoder(data_dir, gan_student, tmp_path):
    """gan.freeze_encoder: the fine-tune runs under the initial model's IDR exactly (what `--detail` blends need)."""
    config = _gan_config(data_dir, gan_student, "gan.freeze_encoder=true", "optim.steps=2")
    train(config, tmp_path / "gan")
    initial, trained = load_model(gan_student).state_dict(), read_state(tmp_path / "gan" / STATE_FILE, "cpu")["model"]
    assert all(torch.equal(initial[k], v) for k, v in trained.items() if k.startswith("E_st."))
    assert any(not torch.equal(initial[k], v) for k, v in trained.items() if k.startswith("G."))
