"""The gpu backend's configuration (``gpu_config``) and registry entry.

The backend runs where PyTorch sees a CUDA GPU. ``OPENQNN_GPU_DEVICE`` names another torch device to run
its very code on (``cpu``: how the tests check its numerics on a machine without a GPU; ``cuda:1``: a
second card); it is not a way to make a GPU-less machine fast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from openqnn.backends.settings import BackendSpec, Capabilities, validate_config

__all__ = ["DEVICE_ENV", "PRECISION_MODES", "SPEC", "GpuConfig", "gpu_device", "probe"]

# fp32; fp16 (weights and activations in half); hybrid (half, with softmax, normalizations and reductions in
# fp32); int8 (a quantized model on htp's integer arithmetic, on the GPU)
PRECISION_MODES = ("fp32", "fp16", "hybrid", "int8")
DEVICE_ENV = "OPENQNN_GPU_DEVICE"


@dataclass(frozen=True)
class GpuConfig:
    """``precision_mode``: ``fp32``, ``fp16``, ``hybrid`` or ``int8`` (quantized models only: htp's integer
    arithmetic on the GPU, bit for bit what the htp backend gives). ``device_id`` picks the CUDA device.
    ``performance_mode``: the host's thread count and priority, as for every backend (``backends/threads.py``).
    ``enable_transform_optimization``: the plan's graph transformations (epilogue fusions, shared GEMMs; the
    default); false runs one step per node, as the graph is."""

    device_id: int = 0
    performance_mode: str = "default"
    precision_mode: str = "fp32"
    enable_transform_optimization: bool = True

    def __post_init__(self) -> None:
        validate_config(self, "gpu_config", {"precision_mode": PRECISION_MODES})


def gpu_device(config: GpuConfig) -> str:
    """The torch device the backend runs on: ``$OPENQNN_GPU_DEVICE`` where set, else ``cuda:<device_id>``."""
    return os.environ.get(DEVICE_ENV) or f"cuda:{config.device_id}"


def probe() -> str | None:
    """Why this machine cannot run the gpu backend, or None."""
    if os.environ.get(DEVICE_ENV):
        return None
    import torch

    if not torch.cuda.is_available():
        build = "this PyTorch has no CUDA support" if torch.version.cuda is None else "PyTorch sees no CUDA GPU"
        return (f"the gpu backend needs an NVIDIA GPU with CUDA and {build}; run on a machine with one "
                "(and a CUDA build of PyTorch), or use --backend cpu or htp")
    return None


def _create(config: Any, num_threads: int | None) -> Any:
    from openqnn.backends.gpu.backend import GpuBackend

    return GpuBackend(config or GpuConfig(), num_threads)


def _op_types() -> frozenset[str]:
    from openqnn.backends.cpu.kernels import KERNELS  # the cpu backend's kernels, on the GPU

    return frozenset(KERNELS)


SPEC = BackendSpec("gpu", "libQnnGpu.so", GpuConfig,
                   Capabilities(precisions=("fp16", "fp32", "hybrid", "int8"), devices=("cuda",),
                                max_tensor_bytes=64 * 1024 * 1024, power_efficiency=0.6),
                   _create, probe=probe, op_types=_op_types)
