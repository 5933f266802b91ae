"""QNN's 8-bit Softmax (openqnn's spec, src/openqnn/backends/htp/spec/qnn_softmax.py) against the HTP
simulator: random attention-like rows of 17 to 128 elements, with and without a masked tail, input scales
0.01 to 1.3, output 1/256 (tests/fidelity/softmax_probe.py)."""

from __future__ import annotations

import numpy as np
import pytest

from openqnn.backends.htp.spec.qnn_softmax import exp_step, softmax_table_for
from tests.fidelity.harness import simulator_missing
from tests.fidelity.softmax_probe import exact_codes, random_probes, run_codes, spec_codes

_missing = simulator_missing()


def test_exponent_step_is_truncated_to_8_bits() -> None:
    assert exp_step(0.05) == 147 / 2048  # 0.0721348 * 2048 = 147.73
    assert exp_step(0.1) == 147 / 1024
    assert exp_step(0.3) == 221 / 512
    assert softmax_table_for("v73", "qnn", 16, 0.1, 1 / 256, 0, 8, 8, 1.0, True) is None  # short rows: open
    assert softmax_table_for("v73", "tflite", 64, 0.1, 1 / 256, 0, 8, 8, 1.0, True) is None
    assert softmax_table_for("v68", "qnn", 17, 0.1, 1 / 256, 0, 8, 8, 1.0, True) is not None


@pytest.mark.skipif(_missing is not None, reason=_missing or "")
@pytest.mark.parametrize("arch", ["68", "73"])
def test_softmax_matches_the_simulator(arch: str) -> None:
    same = exact_same = total = 0
    probes = random_probes(np.random.default_rng(4), 16, lengths=(17, 40, 128), scales=(0.02, 0.1, 0.4))
    for _, sx, zx, _, q in probes:
        sim = run_codes(arch, q, sx, zx)
        ours = spec_codes(q, sx)
        assert int(np.abs(ours - sim).max()) <= 1
        same += int((ours == sim).sum())
        exact_same += int((exact_codes(q, sx) == sim).sum())
        total += sim.size
    print(f"v{arch} Softmax: spec {same / total:.4%} identical, exact rounding {exact_same / total:.4%} of {total}")
    assert same / total >= 0.999
    assert same > exact_same


@pytest.mark.skipif(_missing is not None, reason=_missing or "")
@pytest.mark.parametrize("arch", ["68", "73"])
def test_rows_of_two_are_a_sigmoid_of_the_difference(arch: str) -> None:
    """Rows of two: the second code is round(255 sigmoid((q1 - q0) s_in)) (half up), the first 255 minus it."""
    from openqnn.backends.htp.spec.qnn_softmax import pair_table

    rng = np.random.default_rng(3)
    exact_same = []
    for sx in (0.01, 0.2, 1.3):
        q = rng.integers(0, 256, (1, 128, 2))
        q[0, :10, 1] = q[0, :10, 0]  # ties: 127 and 128
        sim = run_codes(arch, q, sx, int(rng.integers(0, 256)))[0]
        c1 = pair_table(sx)[q[0, :, 1] - q[0, :, 0] + 255]
        np.testing.assert_array_equal(sim, np.stack([255 - c1, c1], axis=-1))
        exact_same.append(np.mean(exact_codes(q, sx)[0] == sim))
    assert np.mean(exact_same) < 0.85  # exact rounding of 256 p: 50% at s_in 0.01, more where rows saturate
