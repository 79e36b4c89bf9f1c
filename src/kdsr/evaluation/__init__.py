"""The paper's evaluation protocols (``kdsr benchmark``)."""

from kdsr.evaluation.protocols import DASR_ANISO_KERNELS, GAUSSIAN8_SIGMAS, PROTOCOLS, run_benchmark

__all__ = ["DASR_ANISO_KERNELS", "GAUSSIAN8_SIGMAS", "PROTOCOLS", "run_benchmark"]
