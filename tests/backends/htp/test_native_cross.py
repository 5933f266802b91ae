"""native/int8.c's int8 kernels built as a standalone program with their own check (``native/int8_check.c``:
random GEMMs and depthwise convolutions on 1 and 3 threads against int64 sums): for every x86 build this
machine can run (AVX-512 VNNI, 256-bit VNNI in its EVEX form, AVX2), and for aarch64 with the dot product
instructions under qemu-aarch64, where a cross compiler and the emulator are installed (Debian:
gcc-aarch64-linux-gnu, qemu-user)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tests.backends.native_build import X86, build_and_run, cpu_flags, sources

SOURCES = sources(Path(__file__).resolve().parent / "native" / "int8_check.c", "int8.c", "requant.c", "pool.c")


@pytest.fixture(autouse=True)
def requant_impl() -> str:
    """(Overrides the directory's native/PyTorch parametrization: these tests build the C kernels themselves.)"""
    return "native"


def _run(cc: str, flags: list[str], out: Path, runner: list[str]) -> str:
    return build_and_run(cc, flags, SOURCES, out, runner)


# (flags, the build's openqnn_int8_isa(), the CPU flags it needs)
_X86_BUILDS = {"avx512-vnni": (["-march=native"], 2, {"avx512f", "avx512bw", "avx512_vnni"}),
               "avx-vnni-evex": (["-march=x86-64-v3", "-mavx512vl", "-mavx512vnni"], 3, {"avx512vl", "avx512_vnni"}),
               "avx2": (["-march=x86-64-v3"], 1, {"avx2", "fma"})}


@pytest.mark.parametrize("build", list(_X86_BUILDS))
def test_int8_kernels_of_an_x86_build(build: str, tmp_path: Path) -> None:
    flags, isa, needs = _X86_BUILDS[build]
    cc = shutil.which("gcc") or shutil.which("cc")
    if not X86 or cc is None or not needs <= cpu_flags():
        pytest.skip(f"the {build} build does not run here (x86-64 with {', '.join(sorted(needs))} and a C compiler)")
    assert _run(cc, flags, tmp_path / "check", []) == f"ok 38 isa {isa}"


def test_int8_kernels_of_the_aarch64_dotprod_build_under_qemu(tmp_path: Path) -> None:
    cc, qemu = shutil.which("aarch64-linux-gnu-gcc"), shutil.which("qemu-aarch64")
    if cc is None or qemu is None:
        pytest.skip("no aarch64 cross compiler and qemu-aarch64 here (Debian: gcc-aarch64-linux-gnu, qemu-user)")
    out = _run(cc, ["-march=armv8.2-a+dotprod", "-static"], tmp_path / "check", [qemu, "-cpu", "max"])
    assert out == "ok 38 isa 4"
