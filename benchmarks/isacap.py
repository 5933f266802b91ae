"""Capping the ISA of ONNX Runtime (and anything else that asks CPUID) in this process, for the benchmarks.

openqnn follows ``OPENQNN_MAX_ISA`` and PyTorch follows ``ONEDNN_MAX_CPU_ISA`` / ``ATEN_CPU_CAPABILITY``,
but ONNX Runtime's MLAS has no such setting: it reads CPUID when it first runs. So on a machine with AVX-512
VNNI, a benchmark capped to AVX2 would compare openqnn's AVX2 path with ONNX Runtime's VNNI kernels. Where
the kernel offers CPUID faulting (``cpuid_fault`` in /proc/cpuinfo), :func:`cap_cpuid` makes CPUID itself
report the capped ISA (``isacap.c``), before ONNX Runtime is imported, and the peers run the same path.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import sys
from pathlib import Path

from openqnn.backends.native import c_compiler, cache_dir
from openqnn.profiling.platform import cpu_info

# OPENQNN_MAX_ISA values CPUID can be capped to, and the level isacap.c takes
LEVELS = {"avx2": 0, "avxvnni": 1}
_STATE: dict[str, object] = {"said": "uncapped"}


def _library() -> ctypes.CDLL | str:
    src = Path(__file__).with_name("isacap.c")
    cc = c_compiler()
    if cc is None:
        return "no C compiler"
    key = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    root = cache_dir()
    target = root / f"isacap_{key}.so"
    if not target.exists():
        root.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        done = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(tmp), str(src)], capture_output=True, text=True)
        if done.returncode != 0:
            return f"isacap.c did not build: {done.stderr.strip().splitlines()[-1:]}"
        os.replace(tmp, target)
    return ctypes.CDLL(str(target))


def cap_cpuid(isa: str | None = None) -> str:
    """Cap CPUID to ``isa`` (default: ``OPENQNN_MAX_ISA``) for this process; call it before importing
    onnxruntime. Returns what was done, for the machine line."""
    _STATE["said"] = said = _cap(isa if isa is not None else os.environ.get("OPENQNN_MAX_ISA", ""))
    return said


def said() -> str:
    """What :func:`cap_cpuid` did, with how many CPUID instructions it has answered since."""
    lib = _STATE.get("lib")
    if isinstance(lib, ctypes.CDLL):
        return f"{_STATE['said']} ({lib.isacap_emulated()} CPUID calls answered)"
    return str(_STATE["said"])


def _cap(isa: str) -> str:
    if not isa:
        return "uncapped"
    if isa not in LEVELS:
        return f"uncapped (CPUID can be capped to {', '.join(LEVELS)} only, not {isa})"
    if "lib" in _STATE:
        return f"CPUID capped to {isa}"
    if "onnxruntime" in sys.modules:
        return "uncapped (onnxruntime was imported before the cap)"
    if os.uname().machine not in ("x86_64", "AMD64"):
        return "uncapped (not x86-64)"
    if isa == "avxvnni" and "avx_vnni" not in cpu_info()[1]:
        # openqnn's 256-bit VNNI path uses the EVEX form here; ONNX Runtime's would be the VEX form, which this
        # CPU lacks: it keeps its AVX-512 VNNI kernels, a stronger peer than the capped path
        return "uncapped (no AVX-VNNI on this CPU for its 256-bit VNNI kernels: it keeps AVX-512 VNNI)"
    lib = _library()
    if isinstance(lib, str):
        return f"uncapped ({lib})"
    lib.isacap_enable.argtypes = [ctypes.c_int]
    lib.isacap_emulated.restype = ctypes.c_long
    if lib.isacap_enable(LEVELS[isa]) != 0:
        return "uncapped (this kernel or CPU has no CPUID faulting)"
    _STATE["lib"] = lib
    return f"CPUID capped to {isa}"
