"""KDSR in spandrel (chaiNNer, ComfyUI): detection of each checkpoint kind, wrong files not claimed, same output."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

import numpy as np
import pytest
import torch

from kdsr.checkpoint import save_model
from kdsr.inference import Upscaler
from tests.conftest import synthetic_image, tiny_model


@pytest.fixture(scope="module")
def spandrel():
    """spandrel, imported; it imports torchvision for two unrelated architectures (LaMa, RestoreFormer), and the CPU
    torch wheel of this project's machines has no torchvision that imports, so where the real one is missing those
    two imports get a stand-in whose functions refuse to run. KDSR never touches torchvision."""
    if importlib.util.find_spec("spandrel") is None:
        pytest.skip("spandrel is not installed")
    saved = {
        name: sys.modules.get(name)
        for name in ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")
    }
    try:
        import torchvision  # noqa: F401
    except Exception:
        functional = types.ModuleType("torchvision.transforms.functional")

        def unavailable(*args, **kwargs):
            raise RuntimeError("torchvision stand-in: not available in this environment")

        functional.rotate = functional.normalize = unavailable
        functional.InterpolationMode = types.SimpleNamespace(BILINEAR="bilinear", NEAREST="nearest")
        transforms = types.ModuleType("torchvision.transforms")
        transforms.functional = functional
        package = types.ModuleType("torchvision")
        package.transforms = transforms
        sys.modules.update(
            {
                "torchvision": package,
                "torchvision.transforms": transforms,
                "torchvision.transforms.functional": functional,
            }
        )
    module = importlib.import_module("spandrel")
    importlib.import_module("kdsr.integrations.spandrel")
    yield module
    for name, value in saved.items():
        if value is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = value


@pytest.mark.parametrize("kind", ["safetensors", "energy-safetensors", "official-pt", "official-gan-pth"])
def test_kdsr_checkpoints_are_detected_and_match_the_upscaler(spandrel, tmp_path, kind):
    model = tiny_model(encoder="energy" if kind.startswith("energy") else "official")
    state = model.state_dict()
    if kind.endswith("safetensors"):
        path = tmp_path / "m.safetensors"
        save_model(model, path)
    elif kind == "official-pt":
        path = tmp_path / "KDSRsM_iso_x4.pt"
        torch.save(state, path)
    else:
        path = tmp_path / "KDSRS-GAN.pth"
        torch.save({"params_ema": state, "params": state}, path)
    descriptor = spandrel.ModelLoader().load_from_file(path)
    assert descriptor.architecture.id == "KDSR" and descriptor.purpose == "SR" and descriptor.scale == 4
    assert descriptor.tiling == spandrel.ModelTiling.INTERNAL
    assert descriptor.supports_half and descriptor.supports_bfloat16
    assert descriptor.input_channels == descriptor.output_channels == 3
    image = torch.from_numpy(synthetic_image(40, 56)).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        got = descriptor(image)
    expected = Upscaler(model, device="cpu", precision="fp32").upscale_tensor(image)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_teachers_and_other_files_are_not_claimed(spandrel, tmp_path):
    teacher = tmp_path / "teacher.pt"
    torch.save(tiny_model(teacher=True).state_dict(), teacher)
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.rand(4, 3, 3, 3)}, other)
    for path in (teacher, other):
        with pytest.raises(spandrel.UnsupportedModelError):
            spandrel.ModelLoader().load_from_file(path)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"n_feats": 16},
        {"n_blocks": 3, "n_resblocks": 2},
        {"scale": 2},
        {"encoder": "energy"},
    ],
    ids=["tiny", "wider", "deeper", "x2", "energy"],
)
def test_loads_correctly_in_spandrels_sense(spandrel, overrides):
    """spandrel's own contract for an architecture (its tests' ``assert_loads_correctly``): a model built with some
    hyperparameters and loaded back from its state dict, directly and through safetensors, is of the same class with
    the same ``hyperparameters``, and the detection condition accepts the state dict."""
    import safetensors.torch
    from spandrel.util import KeyCondition

    from kdsr.integrations.spandrel import DETECT, KDSRArch, KDSRUpscale
    from kdsr.models import KDSRConfig

    arch = KDSRArch()
    config = KDSRConfig(**{"n_feats": 8, "n_blocks": 2, "n_resblocks": 1, **overrides})
    built = KDSRUpscale(config=config)
    assert built.hyperparameters == {"config": config, "tile": 256, "idr_view": 256}
    state = built.state_dict()
    for loaded in (arch.load(state), arch.load(safetensors.torch.load(safetensors.torch.save(state)))):
        assert type(loaded.model) is KDSRUpscale
        assert loaded.model.hyperparameters == built.hyperparameters
        assert loaded.scale == config.scale
    assert isinstance(DETECT, KeyCondition) and DETECT(state) and arch.detect(state)
    tuned = KDSRUpscale(config=config, tile=96, idr_view=128)  # a host's own settings survive a save and a load
    tuned.load_state_dict({k: v for k, v in built.state_dict().items() if not k.startswith("kdsr_")})  # keeps 96
    for loaded in (arch.load(tuned.state_dict()), arch.load(safetensors.torch.load(safetensors.torch.save(
            tuned.state_dict())))):  # fmt: skip
        assert loaded.model.hyperparameters == {"config": config, "tile": 96, "idr_view": 128}
        assert (loaded.model.tile, loaded.model.idr_view) == (96, 128)


def test_the_comfyui_node_runs_the_whole_image_pipeline(spandrel, tmp_path):
    """The shipped ComfyUI node package (integrations/comfyui/kdsr-upscale) on ComfyUI's (B, H, W, C) IMAGE tensors
    gives what kdsr.Upscaler gives for each image, with one IDR per image (not per 512-px tile as ComfyUI's node)."""
    import runpy

    from tests.conftest import REPO

    model = tiny_model(encoder="energy")
    save_model(model, tmp_path / "m.safetensors")
    descriptor = spandrel.ModelLoader().load_from_file(tmp_path / "m.safetensors")
    node_file = runpy.run_path(str(REPO / "integrations" / "comfyui" / "kdsr-upscale" / "__init__.py"))
    node = node_file["NODE_CLASS_MAPPINGS"]["KDSRUpscaleImage"]()
    assert node_file["NODE_DISPLAY_NAME_MAPPINGS"]["KDSRUpscaleImage"] == "Upscale Image (KDSR, whole image)"
    images = [synthetic_image(40, 56, seed=s) for s in (0, 1)]
    batch = torch.from_numpy(np.stack(images)).float() / 255  # ComfyUI IMAGE: (B, H, W, C)
    (out,) = node.upscale(descriptor, batch)
    assert out.shape == (2, 160, 224, 3)
    upscaler = Upscaler(model, device="cpu", precision="fp32")
    for i, image in enumerate(images):
        expected = upscaler.upscale_tensor(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255)
        torch.testing.assert_close(out[i], expected[0].permute(1, 2, 0), rtol=0, atol=1e-6)
    other = types.SimpleNamespace(model=torch.nn.Identity())
    with pytest.raises(ValueError, match="needs a KDSR model"):
        node.upscale(other, batch)
    with pytest.raises(ValueError, match="need a bundled kdsr model"):
        node.upscale(descriptor, batch, denoise=0.5)


@pytest.mark.slow
def test_the_comfyui_nodes_dials_steer_a_bundled_model_as_upscaler_does(spandrel):
    """The node's denoise / noise / JPEG / blur inputs on the bundled default (loaded by spandrel, which hands over
    the weights only: the node finds the bundled twin's estimator and IDR map) give Upscaler's steered output."""
    from kdsr.bundled import bundled_models
    from kdsr.integrations.comfyui import KDSRUpscaleImage

    descriptor = spandrel.ModelLoader().load_from_file(bundled_models()["kdsr-real-x4"])
    image = synthetic_image(40, 56, seed=4)
    batch = torch.from_numpy(image[None]).float() / 255
    (blind,) = KDSRUpscaleImage().upscale(descriptor, batch)
    (steered,) = KDSRUpscaleImage().upscale(descriptor, batch, denoise=0.0, jpeg_quality=50.0)
    upscaler = Upscaler("kdsr-real-x4", device="cpu", precision="fp32", backend="torch", denoise=0.0,
                        assume={"jpeg": 50.0})  # fmt: skip
    expected = upscaler.upscale_tensor(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255)
    torch.testing.assert_close(steered[0], expected[0].permute(1, 2, 0), rtol=0, atol=1e-5)  # float order
    assert (steered - blind).abs().max() > 1 / 255


def test_the_comfyui_nodes_detail_input_runs_the_blend_of_upscale_detail(spandrel, tmp_path, monkeypatch):
    from kdsr.bundled import bundled_models
    from kdsr.integrations.comfyui import KDSRUpscaleImage

    monkeypatch.setenv("KDSR_CACHE", str(tmp_path / "cache"))
    descriptor = spandrel.ModelLoader().load_from_file(bundled_models()["kdsr-real-x4"])
    image = synthetic_image(40, 56, seed=4)
    batch = torch.from_numpy(image[None]).float() / 255
    node = KDSRUpscaleImage()
    (sharp,) = node.upscale(descriptor, batch, detail=0.6)
    upscaler = Upscaler("kdsr-real-x4", device="cpu", precision="fp32", backend="torch", detail=0.6)
    expected = upscaler.upscale_tensor(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255)
    torch.testing.assert_close(sharp[0], expected[0].permute(1, 2, 0), rtol=0, atol=1e-5)
    assert node.upscale(descriptor, batch, detail=0.6)[0].equal(sharp)  # the blend kept for the next run
    assert (node.upscale(descriptor, batch)[0] - sharp).abs().max() > 1 / 255
    (both,) = node.upscale(descriptor, batch, detail=0.6, denoise=0.0)  # the dials steer the blend too
    steered = Upscaler("kdsr-real-x4", device="cpu", precision="fp32", backend="torch", detail=0.6, denoise=0.0)
    expected = steered.upscale_tensor(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255)
    torch.testing.assert_close(both[0], expected[0].permute(1, 2, 0), rtol=0, atol=1e-5)


def test_the_comfyui_node_reports_progress_stops_on_interrupt_and_offloads(spandrel, tmp_path, monkeypatch):
    """Inside ComfyUI (its modules faked here): a progress bar over every tile of the batch, ComfyUI's interrupt
    checked between tiles, and the model moved to ComfyUI's offload device after the run, as its own upscale node."""
    from kdsr.integrations.comfyui import KDSRUpscaleImage

    class Interrupted(Exception):
        pass

    events = {"total": None, "updates": 0, "checks": 0, "stop_after": None, "moved_to": []}

    class ProgressBar:
        def __init__(self, total):
            events["total"] = total

        def update(self, n):
            events["updates"] += n

    def check():
        events["checks"] += 1
        if events["stop_after"] is not None and events["checks"] > events["stop_after"]:
            raise Interrupted

    comfy = types.ModuleType("comfy")
    management = types.SimpleNamespace(
        get_torch_device=lambda: torch.device("cpu"),
        unet_offload_device=lambda: torch.device("cpu"),
        throw_exception_if_processing_interrupted=check,
    )
    comfy.model_management, comfy.utils = management, types.SimpleNamespace(ProgressBar=ProgressBar)
    monkeypatch.setitem(sys.modules, "comfy", comfy)
    monkeypatch.setitem(sys.modules, "comfy.model_management", management)
    monkeypatch.setitem(sys.modules, "comfy.utils", comfy.utils)
    save_model(tiny_model(), tmp_path / "m.safetensors")
    descriptor = spandrel.ModelLoader().load_from_file(tmp_path / "m.safetensors")
    descriptor.model.tile = 32  # 40x56 + 2 x 8 border: 2 x 3 tiles per image
    real_to = descriptor.model.to
    monkeypatch.setattr(descriptor.model, "to", lambda *a, **k: events["moved_to"].append(a) or real_to(*a, **k))
    batch = torch.from_numpy(np.stack([synthetic_image(40, 56, seed=s) for s in (0, 1)])).float() / 255
    KDSRUpscaleImage().upscale(descriptor, batch)
    assert events["total"] == 12 and events["updates"] == 12 and events["checks"] == 12
    assert events["moved_to"][-1] == (torch.device("cpu"),)  # offloaded last
    events.update(checks=0, stop_after=3, moved_to=[])
    with pytest.raises(Interrupted):
        KDSRUpscaleImage().upscale(descriptor, batch)
    assert events["checks"] == 4 and events["moved_to"][-1] == (torch.device("cpu"),)  # offloaded on the way out


def _torchvision_stand_in(folder) -> None:
    """The stand-in of the fixture above as files, for a fresh interpreter."""
    functional = folder / "torchvision" / "transforms"
    functional.mkdir(parents=True)
    (folder / "torchvision" / "__init__.py").write_text("")
    (functional / "__init__.py").write_text("")
    (functional / "functional.py").write_text(
        "import types\n\ndef rotate(*a, **k):\n    raise RuntimeError('stand-in')\n\nnormalize = rotate\n"
        "InterpolationMode = types.SimpleNamespace(BILINEAR='bilinear', NEAREST='nearest')\n"
    )


@pytest.mark.slow
def test_the_start_up_hook_registers_kdsr_when_a_host_imports_spandrel(spandrel, tmp_path):
    """chaiNNer has no plug-in hook: kdsr-spandrel.pth in its Python registers KDSR the moment spandrel is imported,
    and imports neither torch nor spandrel nor kdsr's models at start-up."""
    import subprocess

    from kdsr.integrations.spandrel_hook import PTH_LINE, PTH_NAME

    site_dir = tmp_path / "site"
    site_dir.mkdir()
    (site_dir / PTH_NAME).write_text(PTH_LINE)
    stubs = tmp_path / "stubs"
    _torchvision_stand_in(stubs)  # first on the path: KDSR never uses torchvision, spandrel imports it
    code = (
        f"import site, sys; sys.path.insert(0, {str(stubs)!r}); site.addsitedir({str(site_dir)!r}); "
        "assert not {'torch', 'spandrel', 'kdsr.integrations.spandrel'} & set(sys.modules), 'imported at start-up'; "
        "import spandrel; "
        "assert 'KDSR' in [a.architecture.id for a in spandrel.MAIN_REGISTRY.architectures()], 'not registered'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_comfyui_node_package_meets_the_registrys_rules():
    """integrations/comfyui/kdsr-upscale/pyproject.toml as the ComfyUI registry specifies it: a node id of letters,
    digits and single - _ . (not starting with either, no "ComfyUI"), a three-number version, a publisher and a
    display name; its requirements install kdsr with the spandrel extra."""
    import re

    from tests.conftest import REPO

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    folder = REPO / "integrations" / "comfyui" / "kdsr-upscale"
    spec = tomllib.loads((folder / "pyproject.toml").read_text())
    name, version = spec["project"]["name"], spec["project"]["version"]
    assert re.fullmatch(r"[A-Za-z](?:[A-Za-z0-9]|[-_.](?=[A-Za-z0-9]))*", name) and len(name) < 100
    assert "comfyui" not in name.lower() and re.fullmatch(r"\d+\.\d+\.\d+", version)
    assert spec["tool"]["comfy"]["PublisherId"] and spec["tool"]["comfy"]["DisplayName"]
    assert spec["project"]["dependencies"] == ["kdsr[spandrel]>=0.1"]
    assert (folder / "requirements.txt").read_text().split() == spec["project"]["dependencies"]


@pytest.mark.parametrize("name", ["kdsr-real-x4", "kdsr-iso-x4"])
def test_the_upstream_contributions_network_gives_the_bundled_models_output(spandrel, name):
    """integrations/spandrel (the architecture in spandrel's own layout, torch only) holds the bundled weights as
    they are and computes what kdsr's student computes."""
    from kdsr.bundled import bundled_models
    from kdsr.checkpoint import load_model
    from tests.conftest import REPO

    path = REPO / "integrations/spandrel/libs/spandrel/spandrel/architectures/KDSR/__arch/kdsr.py"
    spec = importlib.util.spec_from_file_location("kdsr_upstream_arch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ours = load_model(bundled_models()[name]).eval()
    config = ours.config
    theirs = module.KDSR(n_feats=config.n_feats, n_blocks=config.n_blocks, n_resblocks=config.n_resblocks,
                         scale=config.scale, energy=config.encoder == "energy").eval()  # fmt: skip
    theirs.load_state_dict(ours.state_dict(), strict=True)
    lr = torch.rand(2, 3, 24, 20, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(theirs(lr), ours(lr), atol=1e-5, rtol=0)
