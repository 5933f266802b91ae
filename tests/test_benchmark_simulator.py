"""``python -m benchmarks --simulator``: openqnn's htp and Qualcomm's HTP simulator timed on the same model (a
small one here); skips without the onnxruntime-qnn wheel."""

from __future__ import annotations

import re

import pytest
from benchmarks.simulator import run_simulator


def test_simulator_benchmark_prints_a_ratio_per_model(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime_qnn", reason="the simulator is the onnxruntime-qnn wheel (a dev extra)")
    assert run_simulator(["simple"], "73", 32, 1, sim_runs=1, runs=2) == 0
    out = capsys.readouterr().out
    row = re.search(r"^simple\s+([\d.]+)\s+([\d.]+)\s+(\d+)x$", out, re.M)
    assert row is not None, out
    sim_ms, oq_ms, ratio = float(row[1]), float(row[2]), int(row[3])
    assert sim_ms > 0 and oq_ms > 0 and abs(ratio - sim_ms / oq_ms) <= 1
    assert "machine:" in out and "v73" in out
