"""Where a benchmark ran: the CPU, its instruction sets, the caps in force, the threads, and the kernels openqnn's
htp dispatched to. Printed beside every table, since ratios mean little without it."""

from __future__ import annotations

import os
import platform
from collections import Counter
from typing import Any

_CAPS = ("OPENQNN_MAX_ISA", "ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")


def machine_line(threads: int) -> str:
    """One line: CPU model and cores, its relevant ISA flags, the caps set, torch's capability, threads."""
    from benchmarks.isacap import said
    from openqnn.profiling.platform import cpu_info, isa_text, torch_capability

    model, flags = cpu_info()
    caps = ", ".join(f"{k}={os.environ[k]}" for k in _CAPS if os.environ.get(k)) or "none"
    from openqnn.backends.cpu.native import float_isa

    return (f"machine: {model}, {os.cpu_count()} CPUs, {platform.machine()}; ISA: {isa_text(flags)}; caps: {caps}; "
            f"PyTorch kernels: {torch_capability()}; openqnn float32 kernels: {float_isa() or 'not built'}; "
            f"ONNX Runtime: {said()}; {threads} thread(s)")


def cpu_paths(session: Any) -> str:
    """The implementations a cpu session's steps took where there is a choice (native, oneDNN, SDPA), counted
    per op type."""
    plan = getattr(session, "_exe", session)
    counts = Counter(f"{op}:{path}" for op, path in getattr(plan, "paths", []) if path)
    return ", ".join(f"{k} x{n}" for k, n in sorted(counts.items())) or "(PyTorch ops only)"


def htp_products() -> str:
    """How this machine computes the htp backend's int8 products."""
    from openqnn.profiling.platform import htp_products as products

    return f"products: {products()}"


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
