"""Steering the IDR in readable units (--assume / --denoise), its IDR map, and the counterfactual training pairs that
teach a generator to follow its IDR."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from kdsr.checkpoint import save_model
from kdsr.degradations.classic import blur, quantize
from kdsr.degradations.counterfactual import (
    CounterfactualConfig,
    blur_noise_pairs,
    counterfactual_pairs,
    jpeg_pairs,
)
from kdsr.degradations.kernels import isotropic_gaussian
from kdsr.degradations.resize import imresize
from kdsr.errors import CheckpointError, KDSRError
from kdsr.image_tensor import image_to_tensor
from kdsr.readout.steering import IDRMap, Steerer, Steering, parse_assume, read_idr_map
from tests.conftest import random_estimator as _head
from tests.conftest import random_idr_map as _map
from tests.conftest import steerable_model, synthetic_image, tiny_model


def _hr(batch: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.cat([image_to_tensor(synthetic_image(64, 64, seed=seed + i)) for i in range(batch)])


def test_telling_the_truth_gives_the_ordinary_pair():
    hr = _hr()
    config = CounterfactualConfig(fraction=1.0, truth_prob=1.0)
    for make in (blur_noise_pairs, jpeg_pairs):
        pairs = make(hr, config, 4, torch.Generator().manual_seed(0))
        torch.testing.assert_close(pairs.told, pairs.lr)
        torch.testing.assert_close(pairs.target, hr)


def test_a_lesser_blur_is_told_with_the_rest_of_it_in_the_target():
    """Blurring the target by the told sigma and downscaling gives the LR (Gaussians compose)."""
    hr = _hr()
    config = CounterfactualConfig(fraction=1.0, truth_prob=0.0, blur_range=(1.5, 3.0), noise_range=(0.0, 0.0))
    pairs = blur_noise_pairs(hr, config, 4, torch.Generator().manual_seed(1))
    assert (pairs.target - hr).abs().mean() > 2 / 255  # the target keeps some blur
    # the told sigma is not returned: find it as the one whose degradation of the target reproduces the LR
    for i in range(len(hr)):
        errors = []
        for told in np.arange(0.2, 3.01, 0.05):
            again = quantize(imresize(blur(pairs.target[i : i + 1], isotropic_gaussian(float(told))[0]), 1 / 4))
            errors.append(float((again - pairs.lr[i : i + 1]).abs().mean()) * 255)
        assert min(errors) < 0.6, errors  # within rounding of the 8-bit grid


def test_kept_noise_is_in_the_target_and_removed_noise_in_the_told_lr():
    hr = _hr()
    config = CounterfactualConfig(fraction=1.0, truth_prob=0.0, blur_range=(0.2, 0.2), noise_range=(20.0, 30.0))
    pairs = blur_noise_pairs(hr, config, 4, torch.Generator().manual_seed(2))
    kept = pairs.lr - pairs.told  # the blur is told exactly here: the difference is the kept noise field
    assert kept.std() * 255 > 3
    error = ((pairs.target - hr) - imresize(kept, 4)).abs() * 255  # rounding, and clipping at 0 and 255
    assert error.mean() < 1.0 and (error < 2.5).float().mean() > 0.95


def test_a_higher_jpeg_quality_is_told_with_the_blocking_kept():
    hr = _hr()
    config = CounterfactualConfig(fraction=1.0, truth_prob=0.0, jpeg_range=(25.0, 30.0))
    pairs = jpeg_pairs(hr, config, 4, torch.Generator().manual_seed(3))
    clean = quantize(imresize(hr, 1 / 4))
    assert (pairs.told - clean).abs().mean() < (pairs.lr - clean).abs().mean()  # told: less compressed
    inside = (pairs.target > 0) & (pairs.target < 1)  # not clipped
    kept = (hr + imresize(pairs.lr - pairs.told, 4))[inside]
    torch.testing.assert_close(pairs.target[inside], kept, rtol=0, atol=1e-5)
    assert inside.float().mean() > 0.95


def test_jpeg_pairs_told_uncompressed_at_the_asked_share():
    hr = _hr(8)
    clean = quantize(imresize(hr, 1 / 4))
    plain = CounterfactualConfig(fraction=1.0, truth_prob=0.0)
    assert not any(
        v["jpeg_quality"] == 100 for v in jpeg_pairs(hr, plain, 4, torch.Generator().manual_seed(4)).told_values
    )
    config = CounterfactualConfig(fraction=1.0, truth_prob=0.0, jpeg_clean_prob=1.0)
    pairs = jpeg_pairs(hr, config, 4, torch.Generator().manual_seed(4))
    assert all(v["jpeg_quality"] == 100 for v in pairs.told_values)
    assert torch.equal(pairs.told, clean)  # told "uncompressed": the clean LR's IDR, the whole blocking kept
    inside = (pairs.target > 0) & (pairs.target < 1)
    torch.testing.assert_close(pairs.target[inside], (hr + imresize(pairs.lr - clean, 4))[inside], rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="jpeg_clean_prob"):
        CounterfactualConfig(jpeg_clean_prob=2.0)


def test_counterfactual_batches_split_by_jpeg_share_and_repeat_per_seed():
    hr = _hr(5)
    config = CounterfactualConfig(fraction=1.0, jpeg_share=0.4)
    a = counterfactual_pairs(hr, config, 4, torch.Generator().manual_seed(7))
    b = counterfactual_pairs(hr, config, 4, torch.Generator().manual_seed(7))
    assert a.lr.shape == (5, 3, 16, 16) and a.target.shape == hr.shape
    torch.testing.assert_close(a.target, b.target)
    with pytest.raises(ValueError, match="fraction"):
        CounterfactualConfig(fraction=1.5)


def test_assume_and_denoise_are_parsed_and_checked():
    assert parse_assume("noise=10, jpeg=60") == {"noise": 10.0, "jpeg": 60.0}
    steering = Steering.from_options("noise=10,blur=1.5", 0.5)
    assert dict(steering.assume) == {"noise": 10.0, "blur_sigma": 1.5} and steering.active
    assert not Steering.from_options(None, None).active
    for bad, message in [("nose=3", "unknown degradation"), ("noise", "bad --assume"), ("noise=80", "noise must")]:
        with pytest.raises(KDSRError, match=message):
            Steering.from_options(bad)
    with pytest.raises(KDSRError, match="denoise must"):
        Steering.from_options(None, 2.5)


def test_the_told_degradation_follows_assume_then_denoise():
    estimate = {"blur_sigma": 1.0, "noise": 12.0, "jpeg_quality": 60.0}
    assert Steering().told(estimate) == estimate
    assert Steering.from_options(None, 0).told(estimate) == {"blur_sigma": 1.0, "noise": 0.0, "jpeg_quality": 100.0}
    assert Steering.from_options(None, 1.5).told(estimate) == {"blur_sigma": 1.0, "noise": 18.0, "jpeg_quality": 40.0}
    told = Steering.from_options("noise=20,jpeg=80", 0.5).told(estimate)
    assert told == {"blur_sigma": 1.0, "noise": 10.0, "jpeg_quality": 90.0}
    assert Steering.from_options(None, 2).told({"jpeg_quality": 30.0})["jpeg_quality"] == 1.0  # clipped


def test_the_idr_map_round_trips_and_refuses_broken_text():
    idr_map = _map(8)
    again = IDRMap.from_json(idr_map.to_json())
    degradation = {"blur_sigma": 1.0, "noise": 5.0, "jpeg_quality": 70.0}
    np.testing.assert_array_equal(again.predict(degradation), idr_map.predict(degradation))
    broken = json.loads(idr_map.to_json())
    broken["coef"] = broken["coef"][0]
    for text in ("{", json.dumps(broken), json.dumps({**json.loads(idr_map.to_json()), "targets": ["x", "y", "z"]})):
        with pytest.raises(CheckpointError):
            IDRMap.from_json(text)


def test_steering_moves_the_idr_by_the_maps_difference_and_stating_the_estimate_changes_nothing():
    head, idr_map = _head(32), _map(8)
    d, d_prime = np.linspace(-1, 1, 8).astype(np.float32), np.linspace(0, 1, 32).astype(np.float32)
    estimated = head.predict(d_prime)
    same = Steerer(head, idr_map, Steering.from_options({k: estimated[v] for k, v in
                                                         (("noise", "noise"), ("jpeg", "jpeg_quality"))}))  # fmt: skip
    np.testing.assert_allclose(same.steer(d, d_prime).d, d, atol=1e-6)
    moved = Steerer(head, idr_map, Steering.from_options(None, 0)).steer(d, d_prime)
    expected = d + idr_map.predict(moved.used) - idr_map.predict(moved.estimated)
    np.testing.assert_allclose(moved.d, expected, atol=1e-5)
    assert moved.used["noise"] == 0 and moved.used["jpeg_quality"] == 100
    assert "estimated" in moved.describe() and "restored as" in moved.describe()
    blur_only = IDRMap(["blur_sigma"], [[0.0, 0.0]] * 8, [0.0] * 8, {})
    with pytest.raises(KDSRError, match="IDR map knows"):
        Steerer(head, blur_only, Steering.from_options("noise=3"))
    with pytest.raises(KDSRError, match="denoise has nothing to act on"):
        Steerer(head, blur_only, Steering.from_options(None, 0.5))
    assert Steerer(head, blur_only, Steering.from_options("blur=2")).steer(d, d_prime).used == {"blur_sigma": 2.0}


@pytest.fixture(scope="module")
def steerable(tmp_path_factory):
    return steerable_model(tmp_path_factory.mktemp("steer") / "tiny.safetensors")


def test_the_upscaler_steers_and_stating_the_estimate_reproduces_the_blind_output(steerable):
    from kdsr.inference.upscaler import Upscaler

    assert read_idr_map(steerable) is not None
    image = synthetic_image(24, 32)
    blind = Upscaler(str(steerable), backend="torch", precision="fp32").upscale(image)
    keep = Upscaler(str(steerable), backend="torch", precision="fp32", denoise=0)
    moved = keep.upscale(image)
    assert np.abs(moved.astype(int) - blind.astype(int)).max() > 0
    estimate = keep.last_steering.estimated
    stated = Upscaler(str(steerable), backend="torch", precision="fp32",
                      assume={"noise": estimate["noise"], "jpeg": estimate["jpeg_quality"],
                              "blur": estimate["blur_sigma"]})  # fmt: skip
    assert np.abs(stated.upscale(image).astype(int) - blind.astype(int)).max() == 0
    plain = steerable.with_name("plain.safetensors")  # the same network without estimator or map
    save_model(tiny_model(encoder="energy"), plain)
    with pytest.raises(KDSRError, match="need a model with a degradation estimator and an IDR map"):
        Upscaler(str(plain), backend="torch", denoise=0)
    with pytest.raises(KDSRError, match="pass its name or path"):
        Upscaler(tiny_model(encoder="energy"), backend="torch", denoise=0)


def test_the_torch_free_path_steers_as_torch_does(steerable, tmp_path, monkeypatch):
    pytest.importorskip("openvino")
    pytest.importorskip("onnx")
    from kdsr.inference.fastpath import open_fast_upscaler
    from kdsr.inference.upscaler import Upscaler

    monkeypatch.setenv("KDSR_CACHE", str(tmp_path / "cache"))
    image = synthetic_image(40, 48, seed=3)
    settings = {"tile": 32, "tile_pad": 6, "tile_overlap": 4, "idr_view": 40}
    Upscaler(str(steerable), backend="openvino", **settings)  # builds the graphs
    # one compiled pipeline, re-steered as the web page does (two OpenVINO compilations alive in one test process
    # made a later SIGTERM test crash the process)
    fast = open_fast_upscaler(str(steerable), "openvino", "fp32", **settings, denoise=0.0)
    for steering in ({"denoise": 0.0}, {"assume": "noise=25,jpeg=40", "denoise": 1.5}):
        fast.steerer = Steerer.for_model(str(steerable), Steering.from_options(**steering))
        reference = Upscaler(str(steerable), backend="torch", precision="fp32", **settings, **steering)
        ours, theirs = fast.upscale(image), reference.upscale(image)
        assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1
        assert fast.last_steering.used == pytest.approx(reference.last_steering.used, abs=0.05)


def test_cli_assume_and_denoise(steerable, tmp_path, capsys):
    from kdsr.cli import main
    from kdsr.image_io import read_image, write_image

    write_image(tmp_path / "in.png", synthetic_image(20, 24))
    common = ["upscale", "-i", str(tmp_path / "in.png"), "-n", str(steerable), "--backend", "torch"]
    assert main([*common, "-o", str(tmp_path / "blind.png")]) == 0
    assert main([*common, "-o", str(tmp_path / "keep.png"), "--denoise", "0", "-v"]) == 0
    assert "restored as" in capsys.readouterr().err
    blind, keep = read_image(tmp_path / "blind.png"), read_image(tmp_path / "keep.png")
    assert np.abs(blind.astype(int) - keep.astype(int)).max() > 0
    assert main([*common, "-o", str(tmp_path / "x.png"), "--assume", "nose=3"]) == 1
    assert "unknown degradation 'nose'" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_training_with_counterfactual_pairs_runs_and_keeps_the_encoders_d_prime(data_dir, tmp_path):
    pytest.importorskip("yaml")
    from kdsr.checkpoint import load_model
    from kdsr.train.config import load_config
    from kdsr.train.loop import train

    student = tmp_path / "student.safetensors"
    save_model(tiny_model(encoder="energy"), student)
    overrides = [
        "stage=student", f"data.train=[{data_dir}]", "data.patch_size=8", "data.batch_size=4", "optim.steps=2",
        "degradation.kind=mixture", "counterfactual.fraction=0.5", "distill.weight=0", f"distill.init={student}",
        "distill.freeze_encoder=true", "checkpoint_every=2", "model.encoder=energy",
    ]  # fmt: skip
    config = load_config(None, overrides)
    train(config, tmp_path / "run")
    trained, before = load_model(tmp_path / "run" / "last.safetensors"), load_model(student)
    for key, value in before.E_st.state_dict().items():  # D' (what the estimator reads) is kept; D may move
        if not key.startswith("compress."):
            torch.testing.assert_close(trained.E_st.state_dict()[key], value)
    assert any(not torch.equal(a, b) for a, b in zip(trained.G.parameters(), before.G.parameters(), strict=True))
    with pytest.raises(KDSRError, match="counterfactual.fraction is for the student stage"):
        load_config(None, [*overrides, "stage=teacher"])


def test_the_counterfactual_extra_losses_weigh_the_jpeg_pairs_and_the_told_idrs_change(data_dir, tmp_path):
    """jpeg_weight counts the JPEG pairs' L1 again; the difference loss compares what the told IDR changes in the
    output with what the told degradation keeps, the output with the LRs' own IDR held fixed."""
    pytest.importorskip("yaml")
    from kdsr.train.config import load_config
    from kdsr.train.stages import ToldPairs, build_stage

    student = tmp_path / "student.safetensors"
    save_model(tiny_model(encoder="energy"), student)
    config = load_config(None, [
        "stage=student", f"data.train=[{data_dir}]", "distill.weight=0", f"distill.init={student}",
        "model.encoder=energy", "degradation.kind=mixture", "counterfactual.fraction=0.5",
        "counterfactual.jpeg_share=0.5", "counterfactual.jpeg_weight=3", "counterfactual.difference_weight=2",
    ])  # fmt: skip
    stage = build_stage(config, torch.device("cpu"))
    hr = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    pairs = counterfactual_pairs(hr[:2], config.counterfactual, 4, torch.Generator().manual_seed(1))
    lr = torch.cat([pairs.lr, imresize(hr[2:], 1 / 4)])
    batch_hr = torch.cat([pairs.target, hr[2:]])
    losses, sr = stage.losses(lr, batch_hr, 0, None, ToldPairs(pairs.told, hr[:2]))
    with torch.no_grad():
        own = stage.model(lr[:2])
    expected_jpeg = 2 * torch.nn.functional.l1_loss(sr[:1], batch_hr[:1]) * (1 / 4)  # one JPEG pair of four
    expected_difference = 2 * torch.nn.functional.l1_loss(sr[:2] - own, pairs.target - hr[:2]) * (2 / 4)
    torch.testing.assert_close(losses["l1_jpeg"], expected_jpeg)
    torch.testing.assert_close(losses["difference"], expected_difference)
    losses["difference"].backward()  # the told branch trains; the own-IDR output is a fixed reference
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in stage.model.G.parameters())


def test_map_told_steps_move_the_own_idr_as_the_dials_do(data_dir, tmp_path):
    """counterfactual.map_share: a step's pairs are super-resolved with their own IDR moved by the model's IDR map
    from the estimated to the told degradation: the Steerer's arithmetic with --assume set to the told values."""
    pytest.importorskip("yaml")
    from kdsr.train.config import load_config
    from kdsr.train.stages import ToldPairs, build_stage

    model_path = steerable_model(tmp_path / "steerable.safetensors")
    overrides = [
        "stage=student", f"data.train=[{data_dir}]", "distill.weight=0", f"distill.init={model_path}",
        "model.encoder=energy", "degradation.kind=mixture", "counterfactual.fraction=0.5", "counterfactual.map_share=1",
    ]  # fmt: skip
    stage = build_stage(load_config(None, overrides), torch.device("cpu"))
    hr = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    pairs = counterfactual_pairs(hr[:2], stage.config.counterfactual, 4, torch.Generator().manual_seed(1))
    assert [sorted(v) for v in pairs.told_values] == [["jpeg_quality", "noise"], ["blur_sigma", "noise"]]
    lr = torch.cat([pairs.lr, imresize(hr[2:], 1 / 4)])
    told = ToldPairs(pairs.told, hr[:2], pairs.told_values, by_map=True)
    offset = stage._told_idr(lr, told)["idr_offset"]
    with torch.no_grad():
        own = stage.model.encode(lr)
    for k in range(2):
        steering = Steering.from_options({key: pairs.told_values[k][name] for key, name in
                                          (("noise", "noise"), ("jpeg", "jpeg_quality"), ("blur", "blur_sigma"))
                                          if name in pairs.told_values[k]})  # fmt: skip
        steerer = Steerer(_head(4 * 8), _map(8), steering)
        expected = steerer.steer(own.d[k].numpy(), own.d_prime[k].numpy()).d - own.d[k].numpy()
        np.testing.assert_allclose(offset[k].numpy(), expected, atol=1e-5)
    with torch.no_grad():
        steered = stage.model(lr, idr_offset=offset)
        reference = stage.model.G(lr, torch.cat([own.d[:2] + offset, own.d[2:]]))
    torch.testing.assert_close(steered, reference)
    with pytest.raises(KDSRError, match="map_share needs distill.init with a degradation estimator"):
        student = tmp_path / "plain.safetensors"
        save_model(tiny_model(encoder="energy"), student)
        build_stage(load_config(None, [*overrides[:3], f"distill.init={student}", *overrides[4:]]),
                    torch.device("cpu"))  # fmt: skip


def test_the_conditioning_layers_can_learn_faster(data_dir, tmp_path):
    """optim.conditioning_lr_scale puts the encoder's D' -> D compression in a parameter group of its own."""
    pytest.importorskip("yaml")
    from kdsr.train.config import load_config
    from kdsr.train.stages import build_stage

    student = tmp_path / "student.safetensors"
    save_model(tiny_model(encoder="energy"), student)
    overrides = [
        "stage=student", f"data.train=[{data_dir}]", "distill.weight=0", f"distill.init={student}",
        "model.encoder=energy", "optim.conditioning_lr_scale=10",
    ]  # fmt: skip
    stage = build_stage(load_config(None, overrides), torch.device("cpu"))
    plain, conditioning = stage.param_groups()
    assert conditioning["lr_scale"] == 10 and plain["lr_scale"] == 1
    compress = {id(p) for name, p in stage.model.named_parameters() if name.startswith("E_st.compress.")}
    assert {id(p) for p in conditioning["params"]} == compress and len(compress) == 2  # its weight and bias
    assert not compress & {id(p) for p in plain["params"]}
    with pytest.raises(KDSRError, match="conditioning_lr_scale"):
        load_config(None, [*overrides, "optim.conditioning_lr_scale=0"])
    stage = build_stage(load_config(None, [*overrides, "optim.kernel_lr_scale=5"]), torch.device("cpu"))
    plain, conditioning, kernels = stage.param_groups()
    assert (plain["lr_scale"], conditioning["lr_scale"], kernels["lr_scale"]) == (1, 10, 5)
    makers = {id(p) for name, p in stage.model.named_parameters() if ".da_conv1.kernel." in name}
    assert {id(p) for p in kernels["params"]} == makers and len(makers) == 2 * 2  # two blocks, two layers each
    assert not makers & {id(p) for p in plain["params"]} and not makers & {id(p) for p in conditioning["params"]}
    with pytest.raises(KDSRError, match="kernel_lr_scale"):
        load_config(None, [*overrides, "optim.kernel_lr_scale=-1"])


def test_the_map_holds_degradations_within_its_fitted_ranges():
    ranges = {"sigma": [0.2, 4.0], "noise": [0.0, 30.0], "jpeg": [30.0, 95.0], "jpeg_prob": 0.5}
    idr_map = dataclasses.replace(_map(8), fitted_on={"ranges": ranges})
    clipped = idr_map.clip({"blur_sigma": 0.1, "noise": 45.0, "jpeg_quality": 10.0})
    assert clipped == {"blur_sigma": 0.2, "noise": 30.0, "jpeg_quality": 30.0}
    assert idr_map.clip({"jpeg_quality": 100.0}) == {"jpeg_quality": 100.0}  # uncompressed is in range
    assert _map(8).clip({"noise": 45.0}) == {"noise": 45.0}  # no recorded ranges: as given
