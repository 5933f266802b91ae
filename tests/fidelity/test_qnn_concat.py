"""QNN's requantization in Max, Min and Concat of 8-bit codes (openqnn's spec, src/openqnn/backends/htp/spec/
qnn_eltwise.py: ``QnnConvertSpec``, ``input_quantize_codes``) against the HTP simulator: every code of each
operand at random encodings (tests/fidelity/minmax_probe.py)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fidelity.eltwise_probe import random_encodings
from tests.fidelity.harness import simulator_missing
from tests.fidelity.minmax_probe import combine, exact_requant, probe, spec_codes

_missing = simulator_missing()
pytestmark = pytest.mark.skipif(_missing is not None, reason=_missing or "")


@pytest.mark.parametrize("arch", ["68", "73"])
@pytest.mark.parametrize("op,u8", [("Max", False), ("Min", False), ("Concat", False), ("Concat", True)],
                         ids=["max", "min", "concat_float_inputs", "concat_uint8_inputs"])
def test_max_min_concat_match_the_simulator(op: str, u8: bool, arch: str) -> None:
    rng = np.random.default_rng([len(op), int(u8), 17])
    q = np.arange(256)
    exact_same = total = 0
    for enc in random_encodings(rng, 3, 8):
        sa, za, sb, zb, so, zo = enc
        r = probe(arch, op, enc, u8)
        ours = spec_codes(op, enc, u8)
        assert ours is not None
        exact = combine(op, exact_requant(q, sa, za, so, zo), exact_requant(q, sb, zb, so, zo))
        y = np.concatenate([r["ya"], r["yb"]]) if op == "Concat" else r["y"]
        np.testing.assert_array_equal(combine(op, *ours), y)
        exact_same += int((exact == y).sum())
        total += y.size
    print(f"v{arch} {op}{' uint8' if u8 else ''}: spec 100% of {total}, exact rounding {exact_same / total:.4%}")
