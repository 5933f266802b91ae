"""float.c's kernels built as a standalone program with their own check (``native/float_check.c``: GEMMs with
their epilogues, depthwise, implicit-GEMM and fused 1x1 + depthwise convolutions, attention and LayerNorm against
double-precision loops,
on 1 and 3 threads) for every x86 build this machine runs (AVX-512, AVX2 + FMA, the portable form) and for
aarch64 under qemu-aarch64 where a cross compiler and the emulator are installed (Debian:
gcc-aarch64-linux-gnu, qemu-user)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tests.backends.native_build import X86, build_and_run, cpu_flags, sources

SOURCES = sources(Path(__file__).resolve().parent / "native" / "float_check.c", "float.c", "pool.c")


def _run(cc: str, flags: list[str], out: Path, runner: list[str]) -> str:
    return build_and_run(cc, flags, SOURCES, out, runner)


# (flags, the build's openqnn_float_isa(), the CPU flags it needs)
_X86_BUILDS = {"avx512": (["-march=native"], 2, {"avx512f"}), "avx2": (["-march=x86-64-v3"], 1, {"avx2", "fma"}),
               "portable": ([], 0, set())}


@pytest.mark.parametrize("build", list(_X86_BUILDS))
def test_float_kernels_of_an_x86_build(build: str, tmp_path: Path) -> None:
    flags, isa, needs = _X86_BUILDS[build]
    cc = shutil.which("gcc") or shutil.which("cc")
    if not X86 or cc is None or not needs <= cpu_flags():
        pytest.skip(f"the {build} build does not run here (x86-64 with {', '.join(sorted(needs)) or 'SSE2'} and a C "
                    "compiler)")
    assert _run(cc, flags, tmp_path / "check", []) == f"ok 29 isa {isa}"


def test_float_kernels_of_the_aarch64_build_under_qemu(tmp_path: Path) -> None:
    cc, qemu = shutil.which("aarch64-linux-gnu-gcc"), shutil.which("qemu-aarch64")
    if cc is None or qemu is None:
        pytest.skip("no aarch64 cross compiler and qemu-aarch64 here (Debian: gcc-aarch64-linux-gnu, qemu-user)")
    assert _run(cc, ["-march=armv8.2-a", "-static"], tmp_path / "check", [qemu, "-cpu", "max"]) == "ok 29 isa 0"
