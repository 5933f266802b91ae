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


@pytest.mark.parametrize("arch", ["68", "73"])
def test_reduce_mean_over_axes_1_2_rounds_its_multiplier(arch: str) -> None:
    """A ReduceMean over axes 1 and 2 of a [1, H, W, C] tensor (openqnn's export of a mean over the pixels):
    the multiplier rounded to nearest, every code; MobileNetV2's global pool (whose floored multiplier is one
    lower) among the probes."""
    from openqnn.backends.htp.spec.qnn_reduce import QnnMeanSpec

    mnv2 = ((2, 2), 0.0008843347722408818, 0.0008811780050689098 * 4, 0, 0)
    same = floor_same = total = 0
    for hw, sx, so, zx, zo in [mnv2, *random_probes(np.random.default_rng(5), 4)]:
        n = hw[0] * hw[1]
        sums, sim, m = probe(arch, "ReduceMean", hw, sx, so / n, zx, zo, max_channels=1024, nhwc=True)
        same += int((spec_codes("ReduceMean", sums, m, zo, nhwc=True) == sim).sum())
        floor_same += int((QnnMeanSpec.of(m, zo).apply_np(sums) == sim).sum())
        total += sums.size
    print(f"v{arch} ReduceMean axes 1, 2: spec {same / total:.4%}, floored multiplier {floor_same / total:.4%}")
    assert same == total and floor_same < total
