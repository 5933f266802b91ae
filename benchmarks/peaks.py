"""``python -m benchmarks.peaks``: the instruction-mix peaks of int8 products on one core of this x86 CPU
(``int8_peaks.c``): openqnn's exact AVX2 form against MLAS's saturating one. It bounds what any AVX2 GEMM of
each form can reach here, so the htp/ONNX Runtime ratios on AVX2 can be read against it."""

from __future__ import annotations

import platform
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> int:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        print(f"int8 peaks: x86-64 only (this is {platform.machine()})")
        return 0
    from openqnn.backends.native import c_compiler

    cc = c_compiler()
    if cc is None:
        print("int8 peaks: no C compiler")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "int8_peaks"
        subprocess.run([cc, "-O2", "-o", str(exe), str(Path(__file__).with_name("int8_peaks.c"))], check=True)
        for _ in range(2):  # the second is the one to read (clocks settle)
            out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    print(out, end="")
    from benchmarks.machine import machine_line

    print(machine_line(1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
