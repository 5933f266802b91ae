"""htp_config.arithmetic = "qnn": QNN's 16-bit Sin, Cos and Atan (spec/qnn_trig16.py). Fast path == reference == the
spec on v68 and v73; the route's properties (the quadrant phase, the quadrant function, the output conversion) by hand;
TFLite's arithmetic, 8-bit codes and v75 keep exact rounding. (Against the simulator:
tests/fidelity/test_qnn_trig16.py.)"""

from __future__ import annotations

import numpy as np
import pytest
from lut_steps import check_rule
from lut_steps import run_step as _run
from test_elementwise import _enc, _graph

from openqnn.backends.htp.spec.qnn_trig16 import (
    atan16_core,
    atan16_value,
    trig16_codes,
    trig16_quadrant,
    trig16_table_for,
    trig16_value,
)


@pytest.mark.parametrize("arch", ["v68", "v73"])
@pytest.mark.parametrize("op", ["Sin", "Cos", "Atan"])
@pytest.mark.parametrize("lo,hi,olo,ohi", [(-4.0, 4.0, -1.0, 1.0), (-1.0, 12.0, -1.2, 1.1), (-30.0, 2.0, -2.0, 1.0)])
def test_trig16_is_the_spec(arch: str, op: str, lo: float, hi: float, olo: float, ohi: float) -> None:
    shape = (1, 5, 7, 9)
    g = _graph(f"ElementWise{op}", [(shape, _enc(lo, hi, 16), None)])
    g.tensors["out"].encoding = _enc(olo, ohi, 16)
    x = np.random.default_rng(7).integers(0, 1 << 16, shape).astype(np.int64)
    check_rule(g, arch, x, lambda q, *enc: trig16_codes(q, op, *enc),
               lambda *enc: trig16_table_for(f"ElementWise{op}", arch, "qnn", *enc, 16, 16), 8)


@pytest.mark.parametrize("op", ["Sin", "Cos", "Atan"])
def test_trig16_keeps_exact_rounding_for_8_bit(op: str) -> None:
    g8 = _graph(f"ElementWise{op}", [((1, 300), _enc(-4.0, 4.0, 8), None)])
    g8.tensors["out"].encoding = _enc(-1.0, 1.0, 8)
    x8 = np.arange(300).reshape(1, 300) % 256
    np.testing.assert_array_equal(_run(g8, "v73", "qnn", x8)[1], _run(g8, "v73", "tflite", x8)[1])
    assert trig16_table_for(f"ElementWise{op}", "v73", "qnn", 1e-3, 0, 1e-3, 0, 8, 8) is None
    assert trig16_table_for("ElementWiseTan", "v73", "qnn", 1e-3, 0, 1e-3, 0, 16, 16) is None


def test_trig16_quadrant_phase() -> None:
    """The Q32 phase of the code folded at full width: Sin odd in the code and negative over the second half turn,
    Cos even and negative over the middle half turn; ``r`` the 14-bit phase within the quadrant."""
    si = 2.0**-12
    m = round(si * 2**32 / (2 * np.pi))  # 167,772 units of 2^-32 turn per code
    a = np.array([0, 1, 2, -1, 4000, 10000, 16000, 24000])  # x = 0, 2^-12, 2^-11, -2^-12, 0.98, 2.44, 3.91, 5.86
    s_sin, r_sin = trig16_quadrant(a, si, "Sin")
    s_cos, r_cos = trig16_quadrant(a, si, "Cos")
    np.testing.assert_array_equal(s_sin, [0, 1, 1, -1, 1, 1, -1, -1])
    np.testing.assert_array_equal(s_cos, [1, 1, 1, 1, 1, -1, -1, 1])
    assert r_sin[1] == (m >> 16) == 2 and r_sin[2] == (2 * m) >> 16 and r_sin[3] == r_sin[1]
    x = a * si
    want_sin = np.floor(np.abs(np.arcsin(np.sin(x))) / (np.pi / 2) * 2**14)
    want_cos = np.floor(np.abs(np.arccos(np.abs(np.cos(x)))) / (np.pi / 2) * 2**14)
    assert np.abs(r_sin - want_sin).max() <= 1 and np.abs(r_cos - want_cos).max() <= 1


def test_trig16_quadrant_function() -> None:
    """``F`` is within 2 units of the rounded sine (Q13) and cosine (Q14) of the quadrant phase, 0 and 1.0 at the
    quadrant's start, Sin's 8193 (above 1.0) and Cos's 2 at its last phase; Cos falls monotonically, Sin's steps go
    back up to 2 units near its top; by hand at two phases (simulator values, v68 = v73)."""
    r = np.arange(1 << 14)
    th = np.pi / 2 * r / 2**14
    s, c = trig16_value(r, "Sin"), trig16_value(r, "Cos")
    assert np.abs(s - np.sin(th) * 2**13).max() < 2 and np.abs(c - np.cos(th) * 2**14).max() < 2
    assert s[0] == 0 and c[0] == 16384 and s[-1] == 8193 and c[-1] == 2
    assert np.diff(s).min() == -2 and np.diff(c).max() == 0  # Sin: near its top the floors step back
    # Sin at r = 100 (first piece: c3 = -5197, C2 = -34, C1 = 25738, C0 = 1): (-5197 100 - 34 2^13) >> 14 = -49,
    # (-49 100 + 25738 2^13) >> 14 = 12868, (12868 100 + 2^13) >> 14 = 79 (sin(pi/2 100 / 2^14) 2^13 = 78.54);
    # Cos at r = 13000 (last piece): the simulator's 5223 (cos 2^14 = 5222.81)
    assert int(trig16_value(np.array([100]), "Sin")[0]) == 79
    assert int(trig16_value(np.array([13000]), "Cos")[0]) == 5223


def test_trig16_output_conversion() -> None:
    """The value to codes in sign and magnitude with ``m = round(0.99999 f 2^15)``: at ``s_out = 2^-Q`` the code is the
    value; at a ratio of 1.6 (``f = 0.8``, ``m = round(26213.78) = 26214``) Cos(0) = 16384 gives 26214; at a ratio of
    64.68 (``m = 16557``, shift 8) the magnitude wraps modulo 2^17 (simulator codes, v68 = v73)."""
    q = np.arange(1 << 16)
    si, zi = 2.0**-12, 32768
    sign, r = trig16_quadrant(q - zi, si, "Sin")
    v = sign * trig16_value(r, "Sin")
    np.testing.assert_array_equal(trig16_codes(q, "Sin", si, zi, 2.0**-13, 30000), np.clip(30000 + v, 0, 65535))
    y = trig16_codes(q, "Cos", si, zi, 2.0**-14 / 1.6, 0)
    assert y.min() == 0 and y[zi] == 26214
    # s_in 9.3e-6, s_out 1.89e-6: V = 788 -> rshr(788 16557, 8) = 50965 codes, + 16518 saturates; V = 2027 ->
    # 131098 = 2^17 + 26 -> 16544 (the simulator's code at q = 28832)
    si, zi, so, zo = 9.298197536311796e-06, 1941, 1.8874242421546851e-06, 16518
    assert int(trig16_codes(np.array([28832]), "Sin", si, zi, so, zo)[0]) == 16544
    sign, r = trig16_quadrant(q - zi, si, "Sin")
    v = sign * trig16_value(r, "Sin")
    y = trig16_codes(q, "Sin", si, zi, so, zo)
    pos = v >= 0
    np.testing.assert_array_equal(y[pos], np.clip(zo + ((v[pos] * 16557 + 128) >> 8) % (1 << 17), 0, 65535))
    assert (y[v >= 2027] < 65535).any()


def test_atan16_value() -> None:
    """Atan's Q14 value: odd; ``G(floor(x 2^15))`` below 1 (a quadratic per quarter of ``[0, 1]``), 12868 at 1,
    ``pi/2 - G`` of the measured reciprocal of ``floor(x 2^15)``'s top 17 bits above; within 4.5 units of ``atan(x) 2^14``; a function of
    ``x`` at power-of-two scales; by hand."""
    a = np.arange(-32768, 32768)
    for si in (2.0**-14, 2.0**-11, 1.37e-4):
        v = atan16_value(a, si)
        np.testing.assert_array_equal(v[::-1][:-1], -v[1:])
        assert np.abs(v - np.arctan(a * np.float32(si)) * 2**14).max() < 4.5
    t = np.arange(1 << 15)
    np.testing.assert_array_equal(atan16_value(np.arange(1 << 14), 2.0**-14), atan16_core(2 * np.arange(1 << 14)))
    b = np.arange(8192)  # x = b 2^-12 < 2: the same value at s_in = 2^-14 (a = 4 b)
    np.testing.assert_array_equal(atan16_value(4 * b, 2.0**-14), atan16_value(b, 2.0**-12))
    g = atan16_core(t)
    assert g[0] == 0 and np.diff(g).min() >= -1 and np.abs(g - np.arctan(t / 2**15) * 2**14).max() < 4
    # t = 1000 (first piece: c2 = -1887, C1 = 33067, C0 = 1): (-1887 1000 + 33067 2^14) >> 15 = 16475,
    # (16475 1000 + 2^14) >> 15 = 503 (atan(1000 / 2^15) 2^14 = 499.84: the simulator's 503)
    assert int(atan16_core(np.array([1000]))[0]) == 503
    # x = 3 at s_in = 2^-12 (a = 12288): n = 98304 (17 bits), round(2^31 / n) = 21845, >> 1 = 10922;
    # 25736 - G(10922) = 20463, the simulator's (atan(3) 2^14 = 20464.2)
    assert int(atan16_value(np.array([12288]), 2.0**-12)[0]) == 25736 - int(atan16_core(np.array([10922]))[0]) == 20463
    # x = 1 exactly (a = 2^14 at s_in = 2^-14): pi/4 in Q14, 12868, one below G(2^15) = 12869; its neighbours too
    assert int(atan16_core(np.array([1 << 15]))[0]) == 12869
    np.testing.assert_array_equal(atan16_value(np.array([16384, -16384, 16383, 16385]), 2.0**-14),
                                  [12868, -12868, 12868, 12868])
    # the reciprocal takes the top 17 bits of xq: s_in = 3 2^-16 (m = 24576, e = -14), a = 30009: X = 737501184
    # (x = 1.3737), xq = X >> 14 = 45013 (16 bits in [1, 2)), n = 2 xq = 90026, R(n) = round(2^31 / n) = 23854 (its
    # measured correction 0), 25736 - G(23854) = 15426, the simulator's (the top 15 bits, 22506: round(2^29 / 22506) =
    # 23855, 15425)
    assert int(atan16_value(np.array([30009]), 3 * 2.0**-16)[0]) == 25736 - int(atan16_core(np.array([23854]))[0]) \
        == 15426
    assert 25736 - int(atan16_core(np.array([23855]))[0]) == 15425


def test_atan16_reciprocal_table() -> None:
    """The measured reciprocal (``tables/atan16_reciprocal.safetensors``, read-only): within 2 of ``round(2^31 / n)`` for every
    ``n`` of ``[2^16, 2^17)``, off it for 5,347 of them; ``xq = 2^15`` (``x`` just above 1) is pi/4 as ``x = 1`` is:
    ``s_in = 3.0275680223194988e-05``, ``a = 33031`` gives the simulator's code 41122 (v68 and v73; output encoding
    1.2511e-4, 34844), which ``25736 - G(R(2^16)) = 12867`` misses."""
    from openqnn.backends.htp.spec.qnn_trig16 import atan16_reciprocal_table

    r = atan16_reciprocal_table()
    n = np.arange(1 << 16, 1 << 17)
    d = r - ((1 << 31) + (n >> 1)) // n
    assert r.shape == (1 << 16,) and not r.flags.writeable
    assert np.abs(d).max() == 2 and int(np.count_nonzero(d)) == 5347
    assert int(atan16_value(np.array([33031]), 3.0275680223194988e-05)[0]) == 12868
    enc = (3.0275680223194988e-05, 31858, 0.00012511161422009066, 34844)
    assert int(trig16_codes(np.array([31858 + 33031]), "Atan", *enc)[0]) == 41122
