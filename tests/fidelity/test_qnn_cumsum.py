"""QNN's CumulativeSum (openqnn's spec, src/openqnn/backends/htp/spec/qnn_cumsum.py) against the HTP simulator
(tests/fidelity/cumsum_probe.py): every code of random rows of 2 to 40 codes, 8- and 16-bit, at encodings whose
ratio has few bits (ties) and at random ones, where exact rounding of the sum parts from it."""

from __future__ import annotations

import numpy as np
import pytest

from openqnn.backends.htp.spec.qnn_cumsum import cumsum_codes
from tests.fidelity.cumsum_probe import exact_codes, run_codes
from tests.fidelity.harness import simulator_missing

_missing = simulator_missing()


def _rows(rng: np.random.Generator, n: int, bits: int, count: int) -> np.ndarray:
    hi = (1 << bits) - 1
    q = rng.integers(0, hi + 1, (1, count, n))
    w = (hi + 1) // 8
    q[0, ::2] = np.clip(rng.integers(-w, w, q[0, ::2].shape) + rng.integers(0, hi + 1, (count // 2, 1)), 0, hi)
    return q


@pytest.mark.skipif(_missing is not None, reason=_missing or "")
@pytest.mark.parametrize("arch", ["68", "73"])
@pytest.mark.parametrize("bits,n,s_in,z_in,s_out,z_out", [
    (8, 9, 0.01, 134, 0.08, 165),       # ratio 1/8: ties, z_out odd (half to even on the output code)
    (8, 40, 0.03, 56, 0.037, 255),      # saturating at the top
    (8, 2, 0.025, 19, 0.01, 4),         # ratio 2.5, saturating at 0
    (16, 17, 1.0e-4, 36170, 2.4e-4, 34118),
    (16, 5, 3.0e-5, 100, 1.0e-5, 60000),
])
def test_scan_matches_the_simulator(arch: str, bits: int, n: int, s_in: float, z_in: int, s_out: float,
                                    z_out: int) -> None:
    q = _rows(np.random.default_rng(n + bits), n, bits, 512 if bits == 8 else 1024)
    sim = run_codes(arch, q, s_in, z_in, s_out, z_out, bits)
    ours = cumsum_codes(q, s_in, z_in, s_out, z_out, bits)
    exact = exact_codes(q, s_in, z_in, s_out, z_out, bits)
    print(f"v{arch} {bits}-bit n {n}: spec {np.mean(ours == sim):.4%}, exact rounding {np.mean(exact == sim):.2%}")
    np.testing.assert_array_equal(ours, sim)
    assert np.mean(exact == sim) < 0.995
