"""Training data: random HR patches from folders of images."""

from kdsr.data.patches import HRPatches, StepBatchSampler

__all__ = ["HRPatches", "StepBatchSampler"]
