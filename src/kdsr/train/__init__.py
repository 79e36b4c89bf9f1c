"""Two-stage knowledge-distillation training (teacher, student) and the GAN fine-tune (``kdsr train``)."""

from kdsr.train.config import TrainConfig, load_config
from kdsr.train.loop import train

__all__ = ["TrainConfig", "load_config", "train"]
