"""Networks: official parameter counts, key layout, and the exact official computation."""

from __future__ import annotations

import json

import pytest
import torch

from kdsr.architecture import ENCODER_VARIANTS
from kdsr.models import PRESETS, KDSRConfig, build_model, create_model, list_models, pack_teacher_input
from tests.conftest import official_keys, tiny_model

# Official totals (student, teacher), which include the 24 frozen mean-shift values we keep as buffers.
OFFICIAL_PARAMS = {
    "kdsr-m": (5_795_099, 5_822_747),
    "kdsr-l": (14_191_003, 14_246_299),
    "kdsr-gan": (18_846_107, 18_901_403),
}


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("teacher", [False, True])
def test_every_preset_builds_and_runs(name, teacher):
    torch.manual_seed(0)
    model = create_model(name, teacher=teacher).eval()
    lr = torch.rand(2, 3, 6, 5)
    with torch.no_grad():
        if teacher:
            sr, idr = model(lr, torch.rand(2, 3, 24, 20), return_idr=True)
        else:
            sr, idr = model(lr, return_idr=True)
    c = PRESETS[name].config.n_feats
    assert sr.shape == (2, 3, 24, 20)
    assert idr.d.shape == (2, c) and idr.d_prime.shape == (2, 4 * c)
    assert torch.isfinite(sr).all()
    buffers = sum(b.numel() for b in model.buffers())
    assert buffers == 24
    if name in OFFICIAL_PARAMS:
        params = sum(p.numel() for p in model.parameters())
        assert params + buffers == OFFICIAL_PARAMS[name][teacher]
        assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("name", ["kdsr-m", "kdsr-l", "kdsr-gan"])
@pytest.mark.parametrize("teacher", [False, True])
def test_state_dict_matches_official_keys_and_order(name, teacher):
    expected = official_keys(name, teacher)
    with torch.device("meta"):
        ours = {k: tuple(v.shape) for k, v in create_model(name, teacher=teacher).state_dict().items()}
    assert list(ours.items()) == list(expected.items())


def test_small_official_config_param_counts():
    # the official classes, instantiated: the 16/3/2 configuration has 87,899 / 94,811 parameters with the mean shift.
    for teacher, total in ((False, 87_899), (True, 94_811)):
        model = create_model("kdsr-s", teacher=teacher, n_feats=16, n_blocks=3, n_resblocks=2)
        assert sum(p.numel() for p in model.parameters()) + 24 == total


def test_create_model_rejects_unknown_names_and_fields():
    with pytest.raises(KeyError, match="unknown model preset"):
        create_model("kdsr-xxl")
    with pytest.raises(TypeError, match="unknown config field"):
        create_model("kdsr-s", width=3)
    with pytest.raises(ValueError):
        KDSRConfig(16, 3, 2, scale=5)


@pytest.mark.parametrize("teacher", [False, True])
def test_forward_equals_reference_implementation(teacher):
    """Our networks against tests/reference.py, the official formulation written independently (grouped dynamic conv,
    MeanShift convs), on the same state dict."""
    from tests.reference import ReferenceStudent, ReferenceTeacher

    model = tiny_model(teacher=teacher, n_feats=8, n_blocks=3, n_resblocks=2)
    reference = (ReferenceTeacher if teacher else ReferenceStudent)(8, 3, 2).eval()
    reference.load_state_dict(model.state_dict())
    torch.manual_seed(1)
    lr, hr = torch.rand(2, 3, 7, 9), torch.rand(2, 3, 28, 36)
    with torch.no_grad():
        sr, idr = model(lr, hr, return_idr=True) if teacher else model(lr, return_idr=True)
        encoder = reference.E if teacher else reference.E_st
        ref_d, (ref_dp,) = encoder(pack_teacher_input(lr, hr, 4) if teacher else lr)
        ref_sr = reference(lr, hr) if teacher else reference(lr)
    torch.testing.assert_close(idr.d, ref_d, rtol=0, atol=1e-6)
    torch.testing.assert_close(idr.d_prime, ref_dp, rtol=0, atol=1e-6)
    torch.testing.assert_close(sr, ref_sr, rtol=0, atol=1e-5)


def test_teacher_packing_is_colour_major_pixel_unshuffle():
    lr, hr = torch.rand(1, 3, 2, 3), torch.rand(1, 3, 8, 12)
    packed = pack_teacher_input(lr, hr, 4)
    assert packed.shape == (1, 51, 2, 3)
    torch.testing.assert_close(packed[:, :3], lr)
    for c in range(3):
        for i in range(4):
            for j in range(4):
                torch.testing.assert_close(packed[0, 3 + c * 16 + i * 4 + j], hr[0, c, i::4, j::4])
    with pytest.raises(ValueError, match="4x the LR size"):
        pack_teacher_input(lr, hr[:, :, :7], 4)


def test_batch_samples_are_independent():
    model = tiny_model()
    lr = torch.rand(3, 3, 6, 6)
    with torch.no_grad():
        batched = model(lr)
        single = torch.cat([model(lr[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("scale", "golden"),
    [  # mean, std and the first output pixel of the seeded tiny model, recorded when x2 and x3 were checked
        (2, (0.388090, 0.113740, (0.417807, 0.407455, 0.331699))),
        (3, (0.408381, 0.118374, (0.389363, 0.577558, 0.303959))),
        (4, (0.455215, 0.093781, (0.361126, 0.523314, 0.337843))),
    ],
)
def test_scales(scale, golden):
    model = tiny_model(scale=scale)
    torch.manual_seed(1)
    with torch.no_grad():
        out = model(torch.rand(1, 3, 5, 4))
    assert out.shape == (1, 3, 5 * scale, 4 * scale)
    mean, std, first = golden
    assert out.mean().item() == pytest.approx(mean, abs=1e-5) and out.std().item() == pytest.approx(std, abs=1e-5)
    assert out[0, :, 0, 0].tolist() == pytest.approx(first, abs=1e-5)


def test_gradients_reach_every_parameter():
    model = tiny_model().train()
    sr, idr = model(torch.rand(2, 3, 8, 8), return_idr=True)
    (sr.mean() + idr.d_prime.mean()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert any(p.grad.abs().sum() > 0 for p in model.E_st.parameters())


def test_student_rejects_teacher_config_and_vice_versa():
    from kdsr.models import KDSRStudent, KDSRTeacher

    with pytest.raises(ValueError):
        KDSRStudent(KDSRConfig(8, 1, 1, teacher=True))
    with pytest.raises(ValueError):
        KDSRTeacher(KDSRConfig(8, 1, 1))


def test_models_say_what_they_support():
    from kdsr.devices import resolve_dtype
    from kdsr.models.kdsr import Capabilities

    for teacher in (False, True):
        capabilities = create_model("kdsr-s", teacher=teacher).capabilities
        assert capabilities.global_idr and capabilities.size_multiple == 1
        assert capabilities.supports_half and capabilities.supports_bfloat16
    cuda = torch.device("cuda")  # resolve_dtype only reads the device type
    assert resolve_dtype("auto", cuda, Capabilities()) == torch.float16
    assert resolve_dtype("auto", cuda, Capabilities(supports_half=False)) == torch.float32
    assert resolve_dtype("auto", torch.device("cpu"), Capabilities()) == torch.float32


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("teacher", [False, True])
@pytest.mark.parametrize("variant", sorted(ENCODER_VARIANTS))
def test_every_encoder_variant_builds_runs_and_is_read_back_from_its_weights(variant, teacher, scale):
    """The contract of an entry of kdsr.architecture.ENCODER_VARIANTS (timm's way: every entry, no new test code):
    the network builds and runs at every scale, student and teacher; its state dict says its architecture back
    (infer_config, as spandrel detects from keys and shapes); and a split export's config says what a runtime must do
    to the input."""
    from kdsr.checkpoint import infer_config
    from kdsr.inference.graph_files import split_config_json, standardises_input

    config = KDSRConfig(8, 2, 1, scale=scale, teacher=teacher, encoder=variant)
    model = build_model(config).eval()
    torch.manual_seed(0)
    lr = torch.rand(2, 3, 10, 12)
    with torch.no_grad():
        sr, idr = (
            model(lr, torch.rand(2, 3, 10 * scale, 12 * scale), return_idr=True)
            if teacher
            else model(lr, return_idr=True)
        )
    assert sr.shape == (2, 3, 10 * scale, 12 * scale) and idr.d.shape == (2, 8) and idr.d_prime.shape == (2, 32)
    assert infer_config(model.state_dict()) == config
    exported = json.loads(split_config_json(config))
    assert standardises_input(exported) == ENCODER_VARIANTS[variant].standardised_input
    assert model.encoder.standardise_input == (ENCODER_VARIANTS[variant].standardised_input and not teacher)
