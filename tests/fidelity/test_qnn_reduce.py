"""QNN's ReduceMean / ReduceSum requantization (openqnn's spec, src/openqnn/backends/htp/spec/qnn_reduce.py)
and GlobalAveragePool's (QNN's PoolAvg2d: the multiplier rounded to nearest) against the HTP simulator: every
sum in the output range at random multipliers below 0.5 and random zero points (tests/fidelity/reduce_probe.py)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fidelity.harness import simulator_missing
from tests.fidelity.reduce_probe import probe, random_probes, spec_codes

_missing = simulator_missing()
pytestmark = pytest.mark.skipif(_missing is not None, reason=_missing or "")


@pytest.mark.parametrize("arch", ["68", "73"])
@pytest.mark.parametrize("op", ["ReduceMean", "ReduceSum", "GlobalAveragePool"])
def test_reduction_requantization_matches_the_simulator(op: str, arch: str) -> None:
    same = exact_same = total = 0
    for hw, sx, so, zx, zo in random_probes(np.random.default_rng(3), 4):
        n = hw[0] * hw[1]
        sums, sim, m = probe(arch, op, hw, sx, so / (1 if op == "ReduceSum" else n), zx, zo, max_channels=1024)
        ours = spec_codes(op, sums, m, zo)
        assert int(np.abs(ours - sim).max()) <= 1
        same += int((ours == sim).sum())
        exact_same += int((np.clip(np.floor(sums * m + 0.5) + zo, 0, 255) == sim).sum())
        total += sums.size
    print(f"v{arch} {op}: spec {same / total:.4%} identical, exact rounding {exact_same / total:.4%} of {total}")
    assert same / total >= (1.0 if op == "GlobalAveragePool" else 0.998)
    assert same >= exact_same
