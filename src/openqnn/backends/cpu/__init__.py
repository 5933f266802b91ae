"""The cpu backend: fp32 (and every other ONNX element type) on PyTorch's CPU kernels.

Importing this package is light (the config and registry entry); the backend and its kernels load on
first use of ``CpuBackend`` or ``Plan``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from openqnn.backends.cpu.config import SPEC, CpuConfig

if TYPE_CHECKING:
    from openqnn.backends.cpu.backend import CpuBackend
    from openqnn.backends.cpu.plan import Plan

__all__ = ["SPEC", "CpuBackend", "CpuConfig", "Plan"]


def __getattr__(name: str) -> object:
    if name == "CpuBackend":
        from openqnn.backends.cpu.backend import CpuBackend

        return CpuBackend
    if name == "Plan":
        from openqnn.backends.cpu.plan import Plan

        return Plan
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
