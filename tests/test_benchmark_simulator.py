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
    assert sim_ms > 0 and oq_ms > 0
    # the ratio of the unrounded times: within what the printed times (rounded to 0.1 and 0.01 ms) allow
    lo, hi = (sim_ms - 0.05) / (oq_ms + 0.005), (sim_ms + 0.05) / max(oq_ms - 0.005, 1e-9)
    assert lo - 0.5 <= ratio <= hi + 0.5, (sim_ms, oq_ms, ratio)
    assert "machine:" in out and "v73" in out
