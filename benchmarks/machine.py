"""Where a benchmark ran: the CPU, its instruction sets, the caps in force, the threads, and the kernels openqnn's
htp dispatched to. Printed beside every table, since ratios mean little without it."""

from __future__ import annotations

import os
import platform
from collections import Counter
from typing import Any

_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "asimd", "asimddp", "i8mm",
          "sve")
_CAPS = ("OPENQNN_MAX_ISA", "ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")


def _cpuinfo() -> tuple[str, set[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "cpu model") and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key in ("flags", "features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model, flags


def machine_line(threads: int) -> str:
    """One line: CPU model and cores, its relevant ISA flags, the caps set, torch's capability, threads."""
    import torch

    model, flags = _cpuinfo()
    isa = ", ".join(f for f in _FLAGS if f in flags) or "(flags unknown)"
    caps = ", ".join(f"{k}={os.environ[k]}" for k in _CAPS if os.environ.get(k)) or "none"
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except AttributeError:
        capability = "?"
    return (f"machine: {model}, {os.cpu_count()} CPUs, {platform.machine()}; ISA: {isa}; caps: {caps}; "
            f"PyTorch kernels: {capability}; {threads} thread(s)")


def htp_products() -> str:
    """How this machine computes the htp backend's int8 products."""

    from openqnn.backends.htp import native
    from openqnn.backends.htp.kernels.gemm import int8_mm_faster

    if native.library() is None:
        return "products: PyTorch (no C compiler for the native kernels)"
    if native.int8_available():
        return "products: native AVX-512 VNNI kernels (fused requantization), oneDNN int8 elsewhere"
    if int8_mm_faster():
        return "products: torch._int_mm (measured faster than float32 here)"
    return "products: exact float32 (oneDNN convolutions, float32 GEMMs in chunks below 2^24)"


def htp_paths(prepared: Any) -> str:
    """The kernels a prepared htp model's steps took: conv kinds and GEMM kinds, counted."""
    exe = getattr(prepared, "exe", prepared)
    plans = [p for p in getattr(exe, "step_plans", []) if p is not None]
    counts: Counter[str] = Counter()
    for p in plans:
        short = p.kernel.removeprefix("htp.")
        kind = p.attrs.get("kind") or p.attrs.get("gemm")
        if kind is not None and short in ("conv2d", "fully_connected", "matmul", "transpose_conv2d"):
            counts[f"{short}:{kind}"] += 1
    return ", ".join(f"{k} x{n}" for k, n in sorted(counts.items())) or "(no GEMM steps)"
