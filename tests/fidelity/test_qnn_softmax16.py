"""QNN's Softmax of 16-bit codes (openqnn's spec, src/openqnn/backends/htp/spec/qnn_softmax16.py) against the HTP
simulator (tests/fidelity/softmax16_probe.py): the maximum's code on two-level rows (the route's form), the
exponentials read from them, and random rows of 3 to 200 elements. Skips without the onnxruntime-qnn wheel."""

from __future__ import annotations

import numpy as np
import pytest

from openqnn.backends.htp.spec.qnn_softmax16 import exp_step16, exp_table16, pow2_frac, softmax16_codes
from tests.fidelity.harness import simulator_missing
from tests.fidelity.softmax16_probe import (
    exact_codes,
    random_rows,
    read_exponentials,
    read_pow2,
    run_codes,
    two_level_rows,
)

_missing = simulator_missing()


@pytest.mark.skipif(_missing is not None, reason=_missing or "")
@pytest.mark.parametrize("arch", ["68", "73"])
def test_two_level_rows_read_the_route(arch: str) -> None:
    """Rows ``[max, max - k, far x 14]``, every k: the maximum's code is ``4 p - 2`` on every row with k > 0
    (``(32767 r) >> 14``, r even), exactly one Q15 exponential fits each row's other code, and the spec's exponentials
    (a Q22 step, ``g(f16) >> n``) are all of those; a step of 12 or 13 significant bits or ``floor(2^15 2^-t)`` in place
    of ``g`` miss many."""
    sx = 2.5e-4
    q = two_level_rows(sx)
    sim = run_codes(arch, q, sx)[0]
    assert np.all(sim[1:, 0] % 4 == 2)
    lo, hi = read_exponentials(sim)
    assert np.all(lo[1:] == hi[1:])
    e = exp_table16(sx)[: len(lo)]
    np.testing.assert_array_equal(e[1:], lo[1:])
    k = np.arange(len(lo))
    c = float(np.float32(sx)) * np.log2(np.e)
    b = np.floor(np.log2(c)) + 1
    for bits in (12, 13):  # significant bits in place of a 2^-22 step (11 bits is the same step at this scale)
        step = np.floor(c * 2.0 ** (bits - b)) * 2.0 ** (b - bits)
        assert np.mean(pow2_frac(np.floor((k * step % 1) * 65536)) >> np.floor(k * step).astype(np.int64)
                       == lo) < 0.9
    assert np.mean(np.floor(2.0 ** (15 - k * exp_step16(sx)))[1:] == lo[1:]) < 0.95


@pytest.mark.skipif(_missing is not None, reason=_missing or "")
@pytest.mark.parametrize("arch", ["68", "73"])
def test_pow2_fraction_read_exactly(arch: str) -> None:
    """``g`` read at three steps ``m 2^-22`` (7,944 fractions): the spec's 4-segment quadratic gives every
    value; ``floor(2^15 2^-f)`` under half of them."""
    g, conflicts = read_pow2(arch, [1217, 1543, 1991])
    assert conflicts == 0 and len(g) > 7000
    f16 = np.array(sorted(g))
    read = np.array([g[int(f)] for f in f16])
    np.testing.assert_array_equal(pow2_frac(f16), read)
    assert np.mean(np.floor(2.0 ** (15 - f16 / 65536.0)) == read) < 0.5


@pytest.mark.skipif(_missing is not None, reason=_missing or "")
@pytest.mark.parametrize("arch", ["68", "73"])
def test_random_rows(arch: str) -> None:
    """Random rows (input scales 2.5e-4, 3.5e-4 and 1.5e-3, output 1/65536): the spec well above exact rounding, rising with
    the row's length (short rows feel the reciprocal's open rounding most), every code within 4."""
    rng = np.random.default_rng(23)
    for n, floor in ((3, 0.8), (17, 0.95), (64, 0.98), (200, 0.99)):
        same = exact_same = total = 0
        for sx in (2.5e-4, 3.5e-4, 1.5e-3):
            q = random_rows(rng, n)
            sim = run_codes(arch, q, sx)
            ours = softmax16_codes(q, sx)
            assert int(np.abs(ours - sim).max()) <= 4
            same += int((ours == sim).sum())
            exact_same += int((exact_codes(q, sx) == sim).sum())
            total += sim.size
        print(f"v{arch} n={n}: spec {same / total:.2%}, exact rounding {exact_same / total:.2%} of {total}")
        assert same / total >= floor
        assert same / total > exact_same / total + 0.2
