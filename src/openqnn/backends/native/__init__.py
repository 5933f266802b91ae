"""The native (C) kernels of the CPU backends: one library, built on first use, one thread pool.

The C sources in this folder build into one shared library:

- ``requant.c``, ``int8.c`` (with ``rqsimd.h``, ``dwwindow.h``): the htp backend's integer kernels, the
  requantization epilogue and int8 convolutions with it fused (their Python side:
  :mod:`openqnn.backends.htp.native`);
- ``float.c``: the cpu backend's float32 GEMM (fully connected layers, 1x1 convolutions) and depthwise
  convolutions, epilogues fused (their Python side: :mod:`openqnn.backends.cpu.native`);
- ``pool.c``: the thread pool all of them run on (:func:`sync_threads`).

It is compiled on first use with the system's C compiler (``$CC``, else ``cc``/``gcc``/``clang``) into a
per-user cache (``$OPENQNN_CACHE_DIR``, else ``~/.cache/openqnn``), keyed by the sources, the compiler and
the CPU. Each backend's Python side checks the functions it uses against Python's arithmetic before its
first use (a miscompile must not pass) and otherwise runs its PyTorch forms. ``OPENQNN_MAX_ISA`` builds for
less than this CPU has, to test those paths; ``OPENQNN_NATIVE=0`` (or no compiler) leaves the library
unbuilt: every backend then runs its PyTorch forms.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("openqnn.native")

__all__ = ["Functions", "c_compiler", "cache_dir", "library", "pool_threads", "sync_threads"]

_HERE = Path(__file__).parent
SOURCES = [_HERE / "requant.c", _HERE / "int8.c", _HERE / "float.c", _HERE / "pool.c"]
HEADERS = [_HERE / "rqsimd.h", _HERE / "dwwindow.h"]  # part of the cache key, included by the sources
_FLAGS = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-ffinite-math-only", "-ffp-contract=off", "-shared", "-fPIC",
          "-pthread"]
_LOCK = threading.Lock()
_LIB: ctypes.CDLL | None = None
_TRIED = False
_THREADS = [1]  # the count the C thread pool was last given (pool.c starts at 1)


def c_compiler() -> str | None:
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return cc
    return None


def _cpu_key() -> str:
    flags = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = line
                break
    return platform.machine() + flags


def cache_dir() -> Path:
    root = os.environ.get("OPENQNN_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "openqnn")
    return Path(root)


# OPENQNN_MAX_ISA caps the instruction set the library is built for, as oneDNN's ONEDNN_MAX_CPU_ISA and
# PyTorch's ATEN_CPU_CAPABILITY cap theirs, so a machine with AVX-512 can test the paths of one without
# it: "avxvnni" (AVX2 with 256-bit VNNI, as Intel's client CPUs have: int8.c's AVX2 section with vpdpbusd;
# on a CPU with AVX-512 VNNI but no AVX-VNNI, the same instruction's EVEX form, which computes the same),
# "avx2" (x86-64-v3: AVX2 and FMA, no AVX-512: the hand-vectorized kernels compile out and their
# portable forms run, the same bits), "dotprod" (aarch64: ARMv8.2 with the dot product instructions, named
# where -march=native cannot see the CPU, as under an emulator), "baseline" (the architecture's baseline),
# unset or "native": all this CPU has.
_ISA_FLAGS = {"native": ["-march=native"], "avx512": ["-march=native"], "avxvnni": ["-march=x86-64-v3"],
              "avx2": ["-march=x86-64-v3"], "dotprod": ["-march=armv8.2-a+dotprod"], "baseline": []}


def _cpu_flags() -> set[str]:
    return set(_cpu_key().partition(":")[2].split())


def _isa_flags() -> list[str]:
    isa = os.environ.get("OPENQNN_MAX_ISA", "native").strip().lower() or "native"
    if isa not in _ISA_FLAGS:
        log.warning("OPENQNN_MAX_ISA=%s is unknown (use %s); building for this CPU", isa, ", ".join(_ISA_FLAGS))
        isa = "native"
    if isa in ("avx2", "avxvnni") and platform.machine().lower() not in ("x86_64", "amd64"):
        isa = "baseline"  # no AVX2 to cap at on aarch64: the baseline is the cap
    if isa == "dotprod" and platform.machine().lower() not in ("aarch64", "arm64"):
        isa = "native"  # (an aarch64 target: elsewhere, this CPU's own)
    if isa == "avxvnni":
        have = _cpu_flags()
        if "avx_vnni" in have:
            return [*_ISA_FLAGS[isa], "-mavxvnni"]
        if {"avx512_vnni", "avx512vl"} <= have:
            return [*_ISA_FLAGS[isa], "-mavx512vl", "-mavx512vnni"]
        log.info("OPENQNN_MAX_ISA=avxvnni: this CPU has no 256-bit VNNI; building for AVX2")
    return _ISA_FLAGS[isa]


def _build(cc: str) -> Path | None:
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, check=False).stdout
    source = b"".join(p.read_bytes() for p in (*SOURCES, *HEADERS))
    for flags in ([*_isa_flags(), *_FLAGS], _FLAGS):
        key = hashlib.sha256(source + " ".join([cc, *flags]).encode() + version.encode()
                             + _cpu_key().encode()).hexdigest()[:16]
        target = cache_dir() / f"openqnn_native_{key}.so"
        if target.exists():
            return target
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
                out = Path(tmp) / target.name
                done = subprocess.run([cc, *flags, "-o", str(out), *map(str, SOURCES), "-lm"], capture_output=True,
                                      text=True, check=False, timeout=120)
                if done.returncode != 0:
                    log.debug("native build with %s %s failed: %s", cc, " ".join(flags), done.stderr.strip())
                    continue
                os.replace(out, target)  # atomic: concurrent builders write the same bytes
            return target
        except (OSError, subprocess.SubprocessError) as e:
            log.debug("native build failed: %s", e)
            return None
    return None


def library() -> ctypes.CDLL | None:
    """The compiled library, built on first use; None when unavailable or disabled (``OPENQNN_NATIVE=0``).
    Its users check the functions they call (see the module's docstring)."""
    global _LIB, _TRIED
    if _TRIED:
        return _LIB
    with _LOCK:
        if _TRIED:
            return _LIB
        _TRIED = True
        if os.environ.get("OPENQNN_NATIVE", "1") == "0":
            return None
        cc = c_compiler()
        if cc is None:
            log.info("no C compiler found; the native kernels are not built (PyTorch forms run: same bits, slower)")
            return None
        path = _build(cc)
        if path is None:
            log.info("could not build the native kernels; their PyTorch forms run")
            return None
        try:
            lib = ctypes.CDLL(str(path))
        except OSError as e:
            log.info("could not load %s (%s); the native kernels' PyTorch forms run", path, e)
            return None
        lib.openqnn_pool_set_threads.argtypes, lib.openqnn_pool_set_threads.restype = [ctypes.c_int], None
        lib.openqnn_pool_threads.argtypes, lib.openqnn_pool_threads.restype = [], ctypes.c_int
        _LIB = lib
    return _LIB


class Functions:
    """One backend's functions in the library, typed and checked once: :meth:`get` returns the library, or None
    where it is not built, the environment variable ``env`` is "0", or ``setup`` (which types the functions and
    checks them against Python's arithmetic, returning whether they pass) says no. ``setup`` may itself call
    :meth:`get` (the check runs through the backend's own wrappers)."""

    def __init__(self, who: str, env: str, setup: Callable[[ctypes.CDLL], bool]):
        self.who, self.env, self.setup = who, env, setup
        self.lib: ctypes.CDLL | None = None
        self._tried = self._checking = False
        self._lock = threading.RLock()

    def get(self) -> ctypes.CDLL | None:
        if self._tried:
            return self.lib
        with self._lock:
            if self._tried or self._checking:
                return self.lib
            lib = library()
            if lib is not None and os.environ.get(self.env, "1") != "0":
                self._checking, self.lib = True, lib
                try:
                    if not self.setup(lib):
                        log.warning("%s: the native kernels failed their self-check; their fallbacks run", self.who)
                        self.lib = None
                finally:
                    self._checking = False
            self._tried = True
        return self.lib


def sync_threads(threads: int | None = None) -> None:
    """Let the C kernels use ``threads`` threads (default: PyTorch's intra-op count, which a backend's
    ``num_threads`` sets). They split their output into parts computed by the same code, so the results
    are the same for any count (pool.c)."""
    lib = library()
    if lib is None:
        return
    if threads is None:
        import torch

        threads = torch.get_num_threads()
    if threads != _THREADS[0]:
        lib.openqnn_pool_set_threads(threads)
        _THREADS[0] = threads


def pool_threads() -> int:
    """The thread count the C pool was last given."""
    return _THREADS[0]
