"""The cpu backend's configuration (``cpu_config``) and registry entry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from openqnn.backends.settings import BackendSpec, Capabilities, validate_config

__all__ = ["SPEC", "CpuConfig"]


@dataclass(frozen=True)
class CpuConfig:
    """The ``cpu_config`` section. ``num_threads``: the kernels' thread count; ``performance_mode``: a thread
    count and scheduling priority (``backends/threads.py``; ``num_threads`` wins over its count);
    ``enable_fast_math``: float kernels may compute in reduced precision (bfloat16; inputs and outputs stay
    float32), trading accuracy for speed where the CPU has bfloat16 arithmetic."""

    num_threads: int | None = None
    performance_mode: str = "default"
    enable_fast_math: bool = False

    def __post_init__(self) -> None:
        validate_config(self, "cpu_config")


def _create(config: Any, num_threads: int | None) -> Any:
    from openqnn.backends.cpu.backend import CpuBackend

    config = config or CpuConfig()
    if num_threads:
        from dataclasses import replace

        config = replace(config, num_threads=num_threads)
    return CpuBackend(config)


def _op_types() -> frozenset[str]:
    from openqnn.backends.cpu.kernels import KERNELS

    return frozenset(KERNELS)


SPEC = BackendSpec("cpu", "libQnnCpu.so", CpuConfig,
                   Capabilities(precisions=("fp32",), devices=("cpu",), fallback=True,
                                contexts=True), _create, op_types=_op_types)
