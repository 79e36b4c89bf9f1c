"""Model files: our self-describing safetensors format, and the official KDSR checkpoints.

Our format is a safetensors file whose tensors are the official ``state_dict`` keys and whose metadata holds the
architecture (``kdsr_config``), so that a file describes itself. Official files are read with
``torch.load(weights_only=True)`` and their architecture is inferred from tensor shapes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from kdsr.atomic import atomic_path
from kdsr.bundled import bundled_models
from kdsr.errors import CheckpointError, UntrainedModelWarning, shortened
from kdsr.model_check import FORMAT_VERSION, ZIP_MAGIC, check_model_file, declared_config, unknown_model
from kdsr.models import PRESETS, KDSRConfig, KDSRStudent, KDSRTeacher, build_model, create_model, preset_name

_WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model", "net")


def save_model(
    model: KDSRStudent | KDSRTeacher,
    path: str | os.PathLike,
    metadata: dict[str, str] | None = None,
    atomic: bool = True,
) -> None:
    """Write ``model`` to ``path`` in our safetensors format, atomically (temp file, then rename).

    ``metadata`` adds string entries (e.g. a model card) to the header. ``atomic=False`` writes ``path`` directly,
    for a caller that writes into a temp file of its own.
    """
    config = model.config
    header = {
        "kdsr_format": FORMAT_VERSION,
        "kdsr_config": json.dumps(dataclasses.asdict(config)),
        "kdsr_preset": preset_name(config) or "custom",
        "kdsr_role": "teacher" if config.teacher else "student",
    }
    for key, value in (metadata or {}).items():
        if not isinstance(value, str):
            raise TypeError(f"metadata value for {key!r} must be a string")
        header[key] = value
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if not atomic:
        save_file(tensors, str(path), metadata=header)
        return
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=header)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The header metadata of a safetensors model file."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None


def load_model(source: str | os.PathLike, device: str | torch.device = "cpu") -> KDSRStudent | KDSRTeacher:
    """Load a model by bundled name, preset name (random weights, with a warning) or file path; eval mode.

    Files may be our safetensors format, or official KDSR checkpoints: classic ``.pt`` state dicts
    (``G.*`` + ``E_st.*``/``E.*``) and KDSR-GAN BasicSR ``.pth`` files (``params_ema`` preferred over ``params``).
    """
    name = str(source)
    bundled = bundled_models()
    if name in bundled:
        path = bundled[name]
    elif name in PRESETS:
        warnings.warn(
            f"'{name}' is an untrained architecture preset (random weights); its output is not a real upscale",
            UntrainedModelWarning,
            stacklevel=2,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = create_model(name)
        return model.to(device).eval()
    else:
        path = Path(source)
        if not path.is_file():
            raise unknown_model(name)
    config, state_dict = read_checkpoint(path)
    with torch.device("meta"):  # check every key and shape before a single weight is allocated
        check_state_dict(build_model(config).state_dict(), state_dict, source=str(path))
    model = build_model(config)
    model.load_state_dict(state_dict, strict=True)
    return model.to(device).eval()


def read_checkpoint(path: str | os.PathLike) -> tuple[KDSRConfig, dict[str, torch.Tensor]]:
    """Read any supported model file: its architecture and its (canonical) state dict."""
    path = Path(path)
    check_model_file(path)
    with open(path, "rb") as f:
        magic = f.read(9)
    if path.suffix == ".safetensors" or magic[8:9] == b"{":
        return _read_safetensors(path)
    try:
        with warnings.catch_warnings():  # torch's own pickle-protocol warnings are noise to the user
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt or unsafe pickles
        is_torch_file = magic[:4] == ZIP_MAGIC or magic[:1] == b"\x80"  # torch's zip, or a legacy pickle
        if is_torch_file and ("weights_only" in str(e) or "Unsupported global" in str(e)):
            what = "it holds Python objects besides tensors, which kdsr never unpickles (that could run code)"
        else:
            what = "neither a safetensors file nor a PyTorch checkpoint, or damaged"
        raise CheckpointError(f"{path}: cannot read checkpoint: {what}") from None
    state_dict = canonicalize_state_dict(obj, path)
    return infer_config(state_dict, path), state_dict


def _read_safetensors(path: Path) -> tuple[KDSRConfig, dict[str, torch.Tensor]]:
    config = declared_config(read_metadata(path), path)
    with safe_open(str(path), framework="pt") as f:
        state_dict = {k: f.get_tensor(k) for k in f.keys()}
    if config is None:
        return infer_config(state_dict, path), state_dict
    found = infer_config(state_dict, path)
    if found != config:
        differ = [
            f"{f}={getattr(config, f)!r}, tensors {getattr(found, f)!r}"
            for f in ("n_feats", "n_blocks", "n_resblocks", "scale", "teacher", "encoder")
            if getattr(config, f) != getattr(found, f)
        ]
        raise CheckpointError(f"{path}: kdsr_config does not match its tensors ({'; '.join(differ)})")
    return config, state_dict


def canonicalize_state_dict(obj: object, path: str | os.PathLike = "checkpoint") -> dict[str, torch.Tensor]:
    """Unwrap BasicSR/other containers (``params_ema`` first) and strip a ``module.`` prefix."""
    if isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def infer_config(state_dict: dict[str, torch.Tensor], path: str | os.PathLike = "checkpoint") -> KDSRConfig:
    """Infer n_feats, n_blocks, n_resblocks, scale and role from the official key layout and tensor shapes."""
    if "G.head.0.weight" not in state_dict:
        raise CheckpointError(f"{path}: not a KDSR checkpoint (no 'G.head.0.weight' key)")
    if any(k.startswith("E_st.") for k in state_dict):
        prefix, teacher = "E_st.", False
    elif any(k.startswith("E.") for k in state_dict):
        prefix, teacher = "E.", True
    else:
        raise CheckpointError(f"{path}: no encoder keys ('E_st.*' for a student, 'E.*' for a teacher)")
    n_feats = state_dict["G.head.0.weight"].shape[0]
    n_blocks = _count_indices(state_dict, r"G\.body\.0\.body\.(\d+)\.conv1\.weight")
    n_resblocks = _count_indices(state_dict, re.escape(prefix) + r"E\.(\d+)\.body\.0\.weight")
    tail = [state_dict[k].shape[0] for k in sorted(state_dict) if re.fullmatch(r"G\.tail\.0\.\d+\.weight", k)]
    if tail == [4 * n_feats] * len(tail) and 1 <= len(tail) <= 3:
        scale = 2 ** len(tail)
    elif tail == [9 * n_feats]:
        scale = 3
    else:
        raise CheckpointError(f"{path}: cannot infer the scale from the upsampler shapes {tail}")
    encoder = "energy" if prefix + "energy" in state_dict else "official"  # the energy encoder's marker buffer
    try:
        return KDSRConfig(n_feats, n_blocks, n_resblocks, scale, teacher, encoder)
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None


def _count_indices(state_dict: dict[str, torch.Tensor], pattern: str) -> int:
    return len({m.group(1) for k in state_dict if (m := re.fullmatch(pattern, k))})


def check_state_dict(
    expected: dict[str, torch.Tensor], state_dict: dict[str, torch.Tensor], source: str = "checkpoint"
) -> None:
    """Raise :class:`CheckpointError` naming the first missing, unexpected or mis-shaped keys."""
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [
        f"{k} {tuple(state_dict[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatch", wrong)):
        if keys:
            raise CheckpointError(f"{source}: {label}: {shortened(keys, 3)}")
