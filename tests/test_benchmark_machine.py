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
