"""The gpu backend's configuration (``gpu_config``) and registry entry."""

from __future__ import annotations

from dataclasses import dataclass

from openqnn.backends.settings import BackendSpec, Capabilities, validate_config

__all__ = ["SPEC", "GpuConfig"]

PRECISION_MODES = ("fp32", "fp16", "hybrid")


@dataclass(frozen=True)
class GpuConfig:
    device_id: int = 0
    performance_mode: str = "default"
    precision_mode: str = "fp32"
    enable_transform_optimization: bool = False

    def __post_init__(self) -> None:
        validate_config(self, "gpu_config", {"precision_mode": PRECISION_MODES})


SPEC = BackendSpec("gpu", "libQnnGpu.so", GpuConfig,
                   Capabilities(precisions=("fp32", "fp16"), devices=("cuda",)),
                   unavailable="the gpu backend is not available in this openqnn build yet")
