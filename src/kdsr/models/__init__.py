"""KDSR networks (plain ``nn.Module``s that import only torch) and the preset registry."""

from kdsr.models.blocks import IDRDCRB, IDRDynamicConv, MeanShift
from kdsr.models.kdsr import IDR, KDIDE, KDSRConfig, KDSRGenerator, KDSRStudent, KDSRTeacher, pack_teacher_input
from kdsr.models.registry import PRESETS, build_model, create_model, list_models, preset_name

__all__ = [
    "IDR",
    "IDRDCRB",
    "IDRDynamicConv",
    "KDIDE",
    "KDSRConfig",
    "KDSRGenerator",
    "KDSRStudent",
    "KDSRTeacher",
    "MeanShift",
    "PRESETS",
    "build_model",
    "create_model",
    "list_models",
    "pack_teacher_input",
    "preset_name",
]
