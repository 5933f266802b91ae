"""QNN's Where of 8-bit operands (openqnn's spec: each run-time operand requantized by ``QnnConvertSpec``,
src/openqnn/backends/htp/spec/qnn_eltwise.py, as Max / Min do) against the HTP simulator: every pair of codes
at random encodings, a random boolean condition (tests/fidelity/minmax_probe.py --op Where)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fidelity.eltwise_probe import random_encodings
from tests.fidelity.harness import simulator_missing
from tests.fidelity.minmax_probe import combine, exact_requant, probe, spec_codes

_missing = simulator_missing()
pytestmark = pytest.mark.skipif(_missing is not None, reason=_missing or "")


@pytest.mark.parametrize("arch", ["68", "73"])
def test_where_matches_the_simulator(arch: str) -> None:
    rng = np.random.default_rng([5, 17])
    q = np.arange(256)
    exact_same = total = 0
    for enc in random_encodings(rng, 3, 8):
        sa, za, sb, zb, so, zo = enc
        y = probe(arch, "Where", enc)["y"]
        ours = spec_codes("Where", enc)
        assert ours is not None
        np.testing.assert_array_equal(combine("Where", *ours), y)
        exact_same += int((combine("Where", exact_requant(q, sa, za, so, zo), exact_requant(q, sb, zb, so, zo))
                           == y).sum())
        total += y.size
    print(f"v{arch} Where: spec 100% of {total}, exact rounding {exact_same / total:.4%}")
    assert exact_same < total
