"""The gpu backend (fp32, fp16 and hybrid on CUDA through PyTorch): its configuration for now; the
backend itself is not in this build yet."""

from openqnn.backends.gpu.config import SPEC, GpuConfig

__all__ = ["SPEC", "GpuConfig"]
