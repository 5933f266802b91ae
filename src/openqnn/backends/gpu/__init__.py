"""The gpu backend: fp32, fp16 and hybrid precision on CUDA through PyTorch (the cpu backend's kernels on the
GPU, small batches as CUDA graphs), and htp's integer arithmetic on the GPU for quantized models.

Importing this package is light (the config and the registry entry); the backend loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from openqnn.backends.gpu.config import SPEC, GpuConfig

if TYPE_CHECKING:
    from openqnn.backends.gpu.backend import GpuBackend

__all__ = ["SPEC", "GpuBackend", "GpuConfig"]


def __getattr__(name: str) -> object:
    if name == "GpuBackend":
        from openqnn.backends.gpu.backend import GpuBackend

        return GpuBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
