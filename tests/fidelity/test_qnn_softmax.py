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
    assert softmax_table_for("v73", "qnn", 16, 0.1, 1 / 256, 0, 8, 8, 1.0, True) is None  # rows of 3-16: open
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


def test_short_rows_fit_swings_per_mantissa_quarter() -> None:
    """The empirical reciprocal of rows of 3 to 16 (softmax_probe.SHORT_RECIP_FIT): per mantissa quarter a
    quadratic whose gain m Q(m) is 1 at m = 1 and in each quarter's middle (1.125, 1.375, ...), above 1 in a
    quarter's first half and below in its second, the swing shrinking with m (5.1e-4 at 1.06, 1.9e-4 at 1.81)."""
    from tests.fidelity.softmax_probe import SHORT_RECIP_FIT

    m = np.linspace(1, 2, 4097)[:-1]
    seg = np.minimum(np.floor((m - 1) * 4).astype(np.int64), 3)
    t = (m - 1) * 4 - seg
    c = SHORT_RECIP_FIT[seg]
    gain = m * (c[:, 0] + c[:, 1] * t + c[:, 2] * t * t) - 1
    assert np.abs(gain).max() < 6e-4
    assert np.abs(gain[[0, 512, 1536, 2560, 3584]]).max() < 6e-5  # m = 1, 1.125, 1.375, 1.625, 1.875
    for j in range(4):  # + on [j/4, j/4 + 1/8), - on [j/4 + 1/8, (j+1)/4)
        assert gain[j * 1024 + 256] > 1e-4 and gain[j * 1024 + 768] < -5e-5


@pytest.mark.skipif(_missing is not None, reason=_missing or "")
@pytest.mark.parametrize("arch", ["68", "73"])
def test_short_rows_are_near_exact_rounding(arch: str) -> None:
    """Rows of 3 to 16 (open): within one code of exact rounding, which misses about 1% of their codes; the
    probe's empirical description (short_fit_codes) about 0.3-0.6%."""
    from tests.fidelity.softmax_probe import short_fit_codes

    fit = exact = total = 0
    for _, sx, zx, _, q in random_probes(np.random.default_rng(5), 32, lengths=(3, 5, 8, 16), scales=(0.02, 0.1, 0.4)):
        sim = run_codes(arch, q, sx, zx)
        ex = exact_codes(q, sx)
        assert int(np.abs(ex - sim).max()) <= 1
        exact += int((ex == sim).sum())
        fit += int((short_fit_codes(q, sx) == sim).sum())
        total += sim.size
    print(f"v{arch} Softmax rows of 3-16: fit {fit / total:.4%}, exact rounding {exact / total:.4%} of {total}")
    assert 0.98 < exact / total < 0.997
    assert fit / total >= 0.99 and fit > exact


@pytest.mark.skipif(_missing is not None, reason=_missing or "")
def test_short_rows_normalization_gain_depends_on_the_sums_mantissa() -> None:
    """Rows (max, max - k, far) for k = 0..255: the maximum's code is 256 g(S) / S rounded, g within +-5.3e-4
    of 1 as the mantissa of S runs through quarters (exact rounding misses a few % of these codes, the fit <1%)."""
    from tests.fidelity.softmax_probe import short_fit_codes

    ks = np.arange(256)
    q = np.stack([np.full(256, 255), 255 - ks, np.zeros(256, np.int64)], axis=-1)[None]
    fit = exact = total = 0
    for sx in np.geomspace(0.004, 0.06, 12):
        sim = run_codes("73", q, float(sx), 128)[0, :, 0]
        exact += int((exact_codes(q, float(sx))[0, :, 0] == sim).sum())
        fit += int((short_fit_codes(q, float(sx))[0, :, 0] == sim).sum())
        total += sim.size
    print(f"maximum's codes: fit {fit / total:.4%}, exact rounding {exact / total:.4%} of {total}")
    assert exact / total < 0.975 and fit / total > 0.99
