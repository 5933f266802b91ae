"""QNN's 16-bit Divide (openqnn's spec, src/openqnn/backends/htp/spec/qnn_div.py, approximate) against the HTP
simulator (tests/fidelity/div_probe.py, ``probe16``)."""

from __future__ import annotations

import numpy as np
import pytest

from openqnn.backends.htp.spec.qnn_div import div16_codes, recip16_of_divisor
from tests.fidelity.div_probe import N16, divisor_probes, probe16, random_probes16, slope_interval16
from tests.fidelity.harness import simulator_missing

_missing = simulator_missing()
pytestmark = pytest.mark.skipif(_missing is not None, reason=_missing or "")


@pytest.mark.parametrize("arch", ["68", "73"])
def test_divisor_slope_is_nnlibs_reciprocal(arch: str) -> None:
    """Every numerator against one divisor code per Div: the slope's relative error over numerators below 2^11 is
    the one of nnlib's 16-bit reciprocal of the divisor's normalized code (an exact reciprocal lies outside)."""
    ds = [3, 7, 17, 19, 2211, 17451, 23290, 30642]
    encs, qas, qbs = divisor_probes(ds)
    for d, e, qa, qb, y in zip(ds, encs, qas, qbs, probe16(arch, encs, qas, qbs)):
        lo, hi = slope_interval16(e, qa, qb, y)
        x0, s = recip16_of_divisor(np.array([d]))
        err = int(x0[0]) * (d << int(s[0])) / 2**29 - 1
        # (the float32 output scale 1 / r puts r 1e-7 off the 15 2^j that QNN's short multiplier holds exactly)
        assert lo - 2e-7 <= err < hi + 2e-7, d
        assert not lo <= 0.0 < hi, d


@pytest.mark.parametrize("arch", ["68", "73"])
def test_divide16_is_closer_than_exact_rounding(arch: str) -> None:
    """Random codes at random encodings: approximate (the intermediate rounding above 2^11 is open)."""
    encs, qas, qbs = random_probes16(np.random.default_rng(11), 8)
    for e, qa, qb, y in zip(encs, qas, qbs, probe16(arch, encs, qas, qbs)):
        sa, za, sb, zb, so, zo = e
        a, d = qa.reshape(-1) - za, qb.reshape(-1) - zb
        ok = d != 0
        spec = div16_codes(qa.reshape(-1), qb.reshape(-1), *e)[ok]
        r = float(np.float32(sa)) / (float(np.float32(sb)) * float(np.float32(so)))
        exact = np.clip(np.floor(a[ok] * r / d[ok] + 0.5) + zo, 0, N16 - 1)
        share, share_exact = np.mean(spec == y[ok]), np.mean(exact == y[ok])
        assert share >= 0.96 and share > share_exact, (e, share, share_exact)
        assert np.abs(spec - y[ok]).max() <= 3
