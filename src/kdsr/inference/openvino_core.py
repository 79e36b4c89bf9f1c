"""OpenVINO itself, for the runtime (:mod:`kdsr.inference.openvino_runtime`) and the INT8 quantiser
(:mod:`kdsr.export.int8`) alike: the module, a graph compiled at a pinned precision, and a compiled graph as an
``infer`` callable. Imports nothing of kdsr's runtimes, so that neither imports the other through it."""

from __future__ import annotations

from kdsr.errors import KDSRError

#: precision name -> OpenVINO inference precision hint (int8: the float layers at the plugin's default)
PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": None}


def openvino_module():
    """The openvino package, or a one-line error saying how to install it."""
    try:
        import openvino as ov
    except ImportError:
        raise KDSRError("the openvino backend needs OpenVINO: pip install 'kdsr[openvino]'") from None
    return ov


def as_infer(compiled):
    """A compiled OpenVINO model as an ``infer`` callable (numpy feeds by name -> outputs in order)."""
    return lambda feeds: list(compiled(feeds).values())


def compile_graph(core, model, precision: str):
    hint = PRECISION_HINTS[precision]
    return core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint} if hint else {})
