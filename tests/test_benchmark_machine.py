"""The benchmarks say where they ran: the machine line and the htp dispatch summary (benchmarks/machine.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from benchmarks.machine import htp_paths, htp_products, machine_line

import openqnn
from openqnn.backends.htp import HtpBackend


def test_machine_line_names_the_cpu_caps_and_threads(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("OPENQNN_MAX_ISA", "avx2")
    line = machine_line(3)
    assert line.startswith("machine: ") and "ISA: " in line and "OPENQNN_MAX_ISA=avx2" in line
    assert line.endswith("3 thread(s)") and "\n" not in line


def test_htp_paths_counts_the_kinds_a_model_took(tmp_path: Path) -> None:
    import torch

    from openqnn.demo import build_simple_model

    path = tmp_path / "m.onnx"
    torch.onnx.export(build_simple_model(), (torch.randn(1, 3, 16, 16),), str(path), input_names=["input"],
                      output_names=["output"], dynamo=False)
    graph = openqnn.convert(path)
    rng = np.random.default_rng(0)
    q = openqnn.quantize(graph, [{"input": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)} for _ in range(2)])
    paths = htp_paths(HtpBackend().prepare(q))
    assert "conv2d:" in paths and "fully_connected:" in paths
    assert htp_products().startswith("products: ")


_CAPPED = """
from benchmarks.isacap import _STATE, cap_cpuid, said
said_now = cap_cpuid("avx2")
lib = _STATE.get("lib")
print(said_now)
if lib is not None:
    ebx = lib.isacap_leaf7_ebx()
    print("ebx", ebx)
    import onnxruntime  # noqa: F401  (MLAS asks CPUID on load: answered by the cap)
    print(said())
"""


def test_cpuid_cap_hides_avx512_and_keeps_avx2() -> None:
    """benchmarks/isacap.py: where CPUID faulting exists, CPUID in the capped process reports no AVX-512
    (leaf 7 EBX bit 16) and still reports AVX2 (bit 5) when the CPU has it; ONNX Runtime's own CPUID
    calls are answered by the cap, not trapped fatally."""
    import subprocess
    import sys

    import pytest

    from openqnn.profiling.platform import cpu_info

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", _CAPPED], capture_output=True, text=True, cwd=root, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    if not lines[0].startswith("CPUID capped"):
        pytest.skip(f"no CPUID cap here: {lines[0]}")
    ebx = int(lines[1].split()[1])
    assert not ebx & (1 << 16), "AVX-512F still reported under the cap"
    assert bool(ebx & (1 << 5)) == ("avx2" in cpu_info()[1]), "AVX2's bit changed under the cap"
    assert "CPUID calls answered" in lines[2] and not lines[2].startswith("CPUID capped to avx2 (0 ")
