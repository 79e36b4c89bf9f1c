"""A model file checked before torch is imported: the safetensors header, the zip directory of a PyTorch file
(declared sizes, compression) and the Python names its pickle would import. Importing torch takes seconds on a busy
CPU; a file that is not a model, or is hostile, is refused in a few milliseconds instead, in one line. What passes is
still read with ``torch.load(weights_only=True)`` or safetensors (:mod:`kdsr.checkpoint`), so nothing here has to be
the last word: it refuses what is certainly wrong and lets the rest through.
"""

from __future__ import annotations

import json
import math
import os
import pickletools
import zipfile
from pathlib import Path

from kdsr.errors import CheckpointError

#: Most bytes of tensors a model file may declare: the largest KDSR network (KDSR_S-GAN's teacher, about 20M
#: parameters, 80 MB in float32) twice (BasicSR files hold params and params_ema) with room to spare.
MAX_CHECKPOINT_BYTES = 512 * 2**20
#: The first bytes of a zip archive (what torch.save writes since PyTorch 1.6).
ZIP_MAGIC = b"PK\x03\x04"
#: The version of our safetensors format (``kdsr_format`` in the header), read by :mod:`kdsr.checkpoint` and the
#: torch-free graph writer
FORMAT_VERSION = "1"
#: Largest safetensors header we read (ours are a few hundred kB: the architecture, estimator and IDR map)
MAX_HEADER_BYTES = 64 * 2**20
#: Bytes per element of the safetensors dtypes
SAFETENSORS_DTYPES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip
#: What a PyTorch checkpoint of tensors imports when unpickled (torch's own weights-only list, as far as model
#: files use it); anything else is code kdsr will not run
SAFE_GLOBALS = {
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch._tensor", "_rebuild_from_type_v2"),
    ("torch.serialization", "_get_layout"),
    ("torch", "device"),
    ("torch", "Size"),
    ("torch", "Tensor"),
    ("torch.nn.parameter", "Parameter"),
    ("builtins", "set"),
    ("_codecs", "encode"),
}
_TORCH_DTYPES = {"float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool"}


def check_model_source(source: str | os.PathLike | None) -> None:
    """:func:`check_model_file` when ``source`` names a model file (not a bundled model, preset, folder or graph);
    a name that is none of these is refused too, all before torch loads."""
    from kdsr.architecture import PRESETS
    from kdsr.bundled import bundled_models

    if source is None or str(source) in bundled_models() or str(source) in PRESETS:
        return
    path = Path(source)
    if not path.exists():
        raise unknown_model(source)
    if path.is_file() and path.suffix.lower() not in (".onnx", ".xml", ".bin"):
        check_model_file(path)


def unknown_model(source: str | os.PathLike) -> CheckpointError:
    """The error for a model name that is no bundled model, preset or file."""
    from kdsr.architecture import PRESETS
    from kdsr.bundled import bundled_models

    known = ", ".join([*bundled_models(), *PRESETS])
    return CheckpointError(f"unknown model '{source}': not a bundled model, preset or file (known: {known})")


def check_model_file(path: str | os.PathLike) -> None:
    """Refuse, in one line, a file that cannot be a KDSR model: empty, neither safetensors nor a PyTorch file, a
    damaged or oversized header or archive, or a pickle that imports more than tensors."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            magic = f.read(9)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read file ({e.strerror or e})") from None
    if size == 0:
        raise CheckpointError(f"{path}: empty file")
    if path.suffix.lower() == ".safetensors" or magic[8:9] == b"{":
        _check_safetensors(path, size)
    elif magic[:4] == ZIP_MAGIC:
        _check_torch_zip(path)
    elif magic[:1] == b"\x80":  # a legacy (pre-1.6) torch.save: pickles one after the other, then the storages
        with open(path, "rb") as f:
            for _ in range(4):  # magic number, protocol, system info, the object
                if not _check_pickle(f, path):
                    break
    else:
        raise CheckpointError(f"{path}: cannot read checkpoint: neither a safetensors file nor a PyTorch checkpoint")


def declared_config(metadata: dict[str, str], path: str | os.PathLike):
    """The architecture (:class:`~kdsr.architecture.KDSRConfig`) one of our model files declares in its header
    metadata, None when it declares none; a :class:`CheckpointError` for another format version or a config that does
    not parse. Shared by the torch reader (:mod:`kdsr.checkpoint`) and the torch-free graph writer."""
    from kdsr.architecture import KDSRConfig

    version = metadata.get("kdsr_format", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written in kdsr file format {version!r}, this kdsr reads format {FORMAT_VERSION!r}; "
            "upgrade kdsr (pip install -U kdsr)"
        )
    if "kdsr_config" not in metadata:
        return None
    try:
        return KDSRConfig(**json.loads(metadata["kdsr_config"]))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: invalid kdsr_config metadata ({e})") from None


def safetensors_header(path: str | os.PathLike) -> dict:
    """The checked JSON header of a safetensors file (tensor entries and ``__metadata__``), read without loading any
    tensor; a :class:`CheckpointError` for a file that is not one."""
    path = Path(path)
    return _check_safetensors(path, path.stat().st_size)


def _check_safetensors(path: Path, size: int) -> dict:
    def bad(why: str) -> CheckpointError:
        return CheckpointError(f"{path}: not a readable safetensors file ({why})")

    with open(path, "rb") as f:
        prefix = f.read(8)
        length = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
        if not 0 < length <= min(MAX_HEADER_BYTES, size - 8):
            raise bad(f"header length {length} in a file of {size} bytes")
        try:
            header = json.loads(f.read(length))
        except (ValueError, UnicodeDecodeError):
            raise bad("its header is not JSON") from None
    if not isinstance(header, dict):
        raise bad("its header is not a JSON object")
    data_bytes, total = size - 8 - length, 0
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise bad("metadata that is not text")
            continue
        try:
            itemsize = SAFETENSORS_DTYPES[entry["dtype"]]
            shape, (begin, end) = entry["shape"], entry["data_offsets"]
            valid = all(isinstance(n, int) and n >= 0 for n in (*shape, begin, end))
        except (KeyError, TypeError, ValueError):
            raise bad(f"tensor {name!r} is not described as safetensors describes tensors") from None
        if not valid or not begin <= end <= data_bytes or end - begin != math.prod(shape) * itemsize:
            raise bad(f"tensor {name!r} lies outside the file or does not match its shape")
        total += end - begin
    if total > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(_too_large(path, total))
    return header


def _too_large(path: Path, declared: int) -> str:
    return (
        f"{path}: declares {declared / 2**20:,.0f} MB of data, more than any KDSR network "
        f"(at most {MAX_CHECKPOINT_BYTES // 2**20} MB); not loaded"
    )


def _check_torch_zip(path: Path) -> None:
    """A PyTorch zip: sizes declared within reason, nothing compressed (torch.save never compresses: a deflated
    entry is how a small file unpacks to gigabytes), and a pickle that imports only tensors."""
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
            declared = sum(entry.file_size for entry in entries)
            if declared > MAX_CHECKPOINT_BYTES:
                raise CheckpointError(_too_large(path, declared))
            compressed = [e.filename for e in entries if e.compress_type != zipfile.ZIP_STORED and e.file_size > 2**20]
            if compressed:
                raise CheckpointError(
                    f"{path}: holds compressed tensor data ({compressed[0]}), which torch.save never writes"
                )
            pickles = [e for e in entries if e.filename.endswith("data.pkl")]
            if not pickles:
                raise CheckpointError(f"{path}: cannot read checkpoint: a zip archive, but not a PyTorch checkpoint")
            with archive.open(pickles[0]) as f:
                _check_pickle(f, path)
    except (zipfile.BadZipFile, OSError, EOFError):
        raise CheckpointError(f"{path}: cannot read checkpoint: a damaged zip archive") from None


def _check_pickle(stream, path: Path) -> bool:
    """Walk one pickle's opcodes (nothing is built or run) and refuse it when it imports a name outside
    :data:`SAFE_GLOBALS`; False when the stream does not parse as a pickle (torch will then say what it is)."""
    recent: list[object] = []  # the values of the last pushes, to resolve STACK_GLOBAL's module and name
    memo: dict[int, object] = {}
    try:
        for opcode, arg, _ in pickletools.genops(stream):
            name = opcode.name
            if name == "GLOBAL":
                module, _, attribute = str(arg).partition(" ")
                _check_global(module, attribute, path)
            elif name == "STACK_GLOBAL":
                module, attribute = recent[-2:] if len(recent) >= 2 else (None, None)
                if isinstance(module, str) and isinstance(attribute, str):
                    _check_global(module, attribute, path)
            elif name in ("MEMOIZE", "BINPUT", "LONG_BINPUT", "PUT"):
                memo[len(memo) if name == "MEMOIZE" else int(arg)] = recent[-1] if recent else None
            elif name in ("BINGET", "LONG_BINGET", "GET"):
                recent.append(memo.get(int(arg)))
            elif "UNICODE" in name or name in ("STRING", "BINSTRING", "SHORT_BINSTRING"):
                recent.append(arg)
            elif name not in ("PROTO", "FRAME"):
                recent.append(None)
            del recent[:-4]
    except (ValueError, EOFError, UnicodeDecodeError):
        return False
    return True


def _check_global(module: str, attribute: str, path: Path) -> None:
    safe = (module, attribute) in SAFE_GLOBALS or (
        module == "torch" and (attribute.endswith("Storage") or attribute in _TORCH_DTYPES)
    )
    if not safe:
        raise CheckpointError(
            f"{path}: cannot read checkpoint: it holds Python objects besides tensors ({module}.{attribute}), "
            "which kdsr never unpickles (that could run code)"
        )
