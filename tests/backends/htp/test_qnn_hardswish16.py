"""htp_config.arithmetic = "qnn": QNN's 16-bit HardSwish (spec/qnn_hardswish16.py). Fast path == reference == the
spec on v68 and v73; the rule's pieces on simulator codes by hand; TFLite's arithmetic, 8-bit codes, v75 and ratios
from 64 up keep exact rounding. (Against the simulator: tests/fidelity/test_qnn_hardswish16.py.)"""

from __future__ import annotations

import numpy as np
import pytest
from lut_steps import check_rule
from lut_steps import run_step as _run
from lut_steps import scale_zero as _sz
from test_elementwise import _enc, _graph

from openqnn.backends.htp.spec.qnn_hardswish16 import (
    hardswish16_codes,
    hardswish16_gate,
    hardswish16_table_for,
)
from openqnn.ir.tensor import Encoding


@pytest.mark.parametrize("arch", ["v68", "v73"])
@pytest.mark.parametrize("lo,hi,olo,ohi", [(-6.0, 6.0, -0.4, 6.0),  # ratio 1.9
                                           (-1.0, 1.5, -0.4, 1.0),  # small input scale (gate exponent -2)
                                           (-9.0, 3.0, -3.0, 30.0),  # ratio 0.36 (rounded twice)
                                           (-20.0, 4.0, -10.0, 110.0)])  # ratio 0.2
def test_hardswish16_is_the_spec(arch: str, lo: float, hi: float, olo: float, ohi: float) -> None:
    shape = (1, 5, 7, 9)
    g = _graph("HardSwish", [(shape, _enc(lo, hi, 16), None)])
    g.tensors["out"].encoding = _enc(olo, ohi, 16)
    x = np.random.default_rng(3).integers(0, 1 << 16, shape).astype(np.int64)
    check_rule(g, arch, x, hardswish16_codes, lambda *enc: hardswish16_table_for(arch, "qnn", *enc, 16, 16), 4)


@pytest.mark.parametrize("arch", ["v68", "v73"])
def test_hardswish16_keeps_exact_rounding_outside_the_rule(arch: str) -> None:
    """Ratios ``s_in / s_out`` from 64 up (not this rule) and 8-bit codes: exact rounding, as TFLite's arithmetic."""
    g = _graph("HardSwish", [((1, 300), _enc(-3.3, 3.3, 16), None)])
    g.tensors["out"].encoding = Encoding(16, (1e-4 / 100,), (-30000,))
    (si, zi), (so, zo) = _sz(g.tensors["x0"].encoding), _sz(g.tensors["out"].encoding)
    assert si / so >= 64 and hardswish16_codes(np.arange(4), si, zi, so, zo) is None
    x = np.random.default_rng(4).integers(0, 1 << 16, (1, 300)).astype(np.int64)
    np.testing.assert_array_equal(_run(g, arch, "qnn", x)[1], _run(g, arch, "tflite", x)[1])
    g8 = _graph("HardSwish", [((1, 300), _enc(-6.0, 6.0, 8), None)])
    g8.tensors["out"].encoding = _enc(-0.4, 6.0, 8)
    x8 = np.arange(300).reshape(1, 300) % 256
    np.testing.assert_array_equal(_run(g8, arch, "qnn", x8)[1], _run(g8, arch, "tflite", x8)[1])


def test_hardswish16_by_hand() -> None:
    """Simulator codes (v68 = v73) of three probes, each step by hand."""
    s, z = 2.0**-12, 32768  # the output encoding the input's: x_o = a
    # a = 607: x / 6 in Q15 is 607 21845 / 2^14 = 809.32, + 0.75 (two roundings) -> 810, gate 17194 (ideal 17193.3);
    # 607 17194 / 2^15 = 318.506 -> 319 (exact rounding of hardswish: 318.49 -> 318)
    assert int(hardswish16_gate(np.array([607]), s)[0]) == ((607 * 21845 + 3 * 2**12) >> 14) + 16384 == 17194
    # a = 12288 (x = 3): the gate saturates at 32767, 12288 32767 / 2^15 = 12287.6 -> 12288; a = -12287: gate 2,
    # -0.75 -> -1 (half up; exact -0.5 -> 0 or -1)
    q = np.array([607, 12288, -12287, 20000]) + z
    np.testing.assert_array_equal(hardswish16_codes(q, s, z, s, z), [33087, 45056, 32767, 52767])
    # gate exponent -2 (s_in = 3.63e-5): the second rounding by 2 bits, +0.625 (0.75 would give 6601)
    si, zi, so, zo = 3.6281118751370317e-05, 26122, 2.0322174085380944e-05, 22553
    np.testing.assert_array_equal(hardswish16_codes(np.array([1, 6122, 31122]), si, zi, so, zo), [6603, 9018, 27286])
    # ratio 0.0585 (output exponent -4): x_o keeps 4 fraction bits, the product is rounded to 15 bits then by 4:
    # a = 9 gives 0 (x_o rounded to a code first would be 1, and the code 1)
    si, zi, so = 6.90827935777812e-05, 54734, 0.0011800773281171457
    np.testing.assert_array_equal(hardswish16_codes(np.array([9, 43, -3000]) + zi, si, zi, so, 0), [0, 1, 0])
