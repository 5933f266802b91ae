"""htp_config.arithmetic = "qnn": QNN's 16-bit Exp (spec/qnn_exp16.py) and Elu below 0 (spec/qnn_unary16.py,
``elu16_negative``). Fast path == reference == the spec on v68 and v73; the route's pieces and simulator codes by hand;
TFLite's arithmetic, 8-bit codes, v75 and steps ``s_in log2 e`` of 1 or more keep exact rounding. (Against the
simulator: tests/fidelity/test_qnn_exp16.py.)"""

from __future__ import annotations

import math

import numpy as np
import pytest
from lut_steps import check_rule
from lut_steps import run_step as _run
from lut_steps import scale_zero as _sz
from test_elementwise import _enc, _graph

from openqnn.backends.htp.spec.qnn_exp16 import (
    EXP16_POLY,
    exp16_codes,
    exp16_exponent,
    exp16_pow2,
    exp16_table_for,
)
from openqnn.backends.htp.spec.qnn_unary16 import elu16_codes, elu16_negative
from openqnn.ir.tensor import Encoding

N = 1 << 16






@pytest.mark.parametrize("arch", ["v68", "v73"])
@pytest.mark.parametrize("lo,hi,ohi", [(-8.0, 2.0, 8.0),  # calibration-like
                                       (-3.0, 0.0, 1.1),  # inputs up to 0
                                       (-1.0, 4.0, 60.0),  # mostly positive
                                       (-10.0, 0.5, 1.3)])  # fine output scale
def test_exp16_is_the_spec(arch: str, lo: float, hi: float, ohi: float) -> None:
    shape = (1, 5, 7, 9)
    g = _graph("ElementWiseExp", [(shape, _enc(lo, hi, 16), None)])
    g.tensors["out"].encoding = _enc(0.0, ohi, 16)
    _, zi = _sz(g.tensors["x0"].encoding)
    x = np.random.default_rng(3).integers(0, N, shape).astype(np.int64)
    x.flat[:3] = (0, zi, N - 1)
    check_rule(g, arch, x, exp16_codes, lambda *enc: exp16_table_for(arch, "qnn", *enc, 16, 16), 8)


@pytest.mark.parametrize("arch", ["v68", "v73"])
def test_exp16_keeps_exact_rounding_outside_the_rule(arch: str) -> None:
    """A step ``s_in log2 e`` of 1 or more (not this rule) and 8-bit codes: exact rounding, as TFLite's arithmetic."""
    g = _graph("ElementWiseExp", [((1, 300), Encoding(16, (0.8,), (-65530,)), None)])
    g.tensors["out"].encoding = Encoding(16, (1.0,), (0,))
    (si, zi), (so, zo) = _sz(g.tensors["x0"].encoding), _sz(g.tensors["out"].encoding)
    assert exp16_codes(np.arange(4), si, zi, so, zo) is None
    x = np.random.default_rng(4).integers(0, N, (1, 300)).astype(np.int64)
    np.testing.assert_array_equal(_run(g, arch, "qnn", x)[1], _run(g, arch, "tflite", x)[1])
    g8 = _graph("ElementWiseExp", [((1, 300), _enc(-4.0, 1.0, 8), None)])
    g8.tensors["out"].encoding = _enc(0.0, 3.0, 8)
    x8 = np.arange(300).reshape(1, 300) % 256
    np.testing.assert_array_equal(_run(g8, arch, "qnn", x8)[1], _run(g8, arch, "tflite", x8)[1])


def test_exp16_pow2_is_an_even_q15_power_of_two() -> None:
    """``y = 2 Y``: even, 32768 at ``x = 0``, nondecreasing, within 1.4 of ``2^15 2^(x / 2^16)`` (the cubic's floors),
    each quarter its own coefficients; Horner's rule by hand at one fraction."""
    x = np.arange(N)
    y = exp16_pow2(x)
    assert (y % 2 == 0).all() and y[0] == 32768 and y[-1] == 65534 and (np.diff(y) >= 0).all()
    err = y / 2 - 2**14 * 2.0 ** (x / N)
    assert np.abs(err).max() < 1.4 and np.abs(err[: N // 16]).max() < 0.53
    assert (y // 2 == np.floor(2**14 * 2.0 ** (x / N) + 0.5)).mean() < 0.9  # not a rounding of 2^f
    c3, c2, c1, c0 = (int(c) for c in EXP16_POLY[3])
    xv = 60000
    p2 = (c3 * xv + c2 * 2**15) >> 16
    p1 = (p2 * xv + c1 * 2**15) >> 16
    assert int(exp16_pow2(np.array([xv]))[0]) == 2 * ((p1 * xv + c0 * 2**15) >> 16)


def test_exp16_exponent_truncates_toward_zero() -> None:
    """``X = trunc(a m 2^(e + 1))`` with ``m = round(f 2^15)`` of ``float32(s_in log2 e)``; a negative ``X`` whose
    fraction is 0 is one unit lower (the fraction 2^16 - 0 saturates to 65535)."""
    si = float(np.float32(2.0**-16 / math.log2(math.e)))  # m = 2^14, e = -15: X = a
    np.testing.assert_array_equal(exp16_exponent(np.array([-65535, -3, 0, 3]), si), [-65535, -3, 0, 3])
    si = 8.911184166083332e-05  # m = 17255, e = -12: a m / 2^11
    a = np.array([-15557, -15556, 15557])
    t = a * 17255
    assert t[0] == -268436035 and (abs(t[0]) >> 11) == 131072
    np.testing.assert_array_equal(exp16_exponent(a, si), [-131073, -(abs(t[1]) >> 11), t[2] >> 11])


def test_exp16_by_hand() -> None:
    """Simulator codes (v68 = v73; ``tests/fidelity/unary16_probe.py``)."""
    cases = [
        # s_in = 2^-16 / log2 e (X = a), 1 / s_out = 32767 (mo = 32767): the code of a < 0 is Y(a + 2^16) - 1
        ((float(np.float32(2.0**-16 / math.log2(math.e))), 65535, 2.0**-15 * 32768 / 32767, 0),
         {0: 16383, 16383: 19483, 32767: 23170, 49151: 27554, 65534: 32766, 65535: 32766}),
        # a power-of-two output scale; 11649: X = -2^17 exactly, one unit lower (511, not 512)
        ((8.911184166083332e-05, 58320, 2.0**-15, 0), {11649: 511, 11650: 512, 27206: 2047, 40000: 6404}),
        # 1 / s_out = 39079.0 in float32 (39078.9989 in float64): mo = round(19539.5) = 19540
        ((2.1382565842226965e-05, 23577, 2.5589192037965782e-05, 0),
         {0: 23604, 10000: 29232, 23576: 39076, 23577: 39080, 30000: 44832}),
        # s_in log2 e in float32: m = 26631 (26630 in float64)
        ((0.00013752919039689004, 65535, float(np.float32(math.e)) * 1e-4, 0), {60000: 1718, 65000: 3417, 65535: 3678}),
    ]
    for (si, zi, so, zo), want in cases:
        got = exp16_codes(np.array(list(want)), si, zi, so, zo)
        assert got is not None
        np.testing.assert_array_equal(got, list(want.values()))


@pytest.mark.parametrize("arch", ["v68", "v73"])
@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_elu16_negative_piece_is_the_exp(arch: str, alpha: float) -> None:
    """Below 0 Elu is QNN's 16-bit Exp at the output scale ``s_out / alpha`` with the output zero point ``z_out -
    alpha / s_out`` truncated toward zero; the kernel's table is the spec; a negative alpha keeps exact rounding there."""
    g = _graph("Elu", [((1, 5, 7, 9), _enc(-4.0, 3.0, 16), None)], {"alpha": alpha})
    g.tensors["out"].encoding = _enc(-1.2, 3.3, 16)
    (si, zi), (so, zo) = _sz(g.tensors["x0"].encoding), _sz(g.tensors["out"].encoding)
    x = np.random.default_rng(5).integers(0, N, (1, 5, 7, 9)).astype(np.int64)
    _, ref = _run(g, arch, "qnn", x)
    neg = elu16_negative(x, si, zi, so, zo, alpha)
    assert neg is not None
    below = x < zi
    np.testing.assert_array_equal(ref[below], neg[below])
    inv = float(np.float32(alpha / float(np.float32(so))))
    exp = exp16_codes(x, si, zi, float(np.float32(so)) / alpha, 0)
    assert exp is not None
    np.testing.assert_array_equal(neg[below], (exp + math.trunc(zo - inv))[below])
    _, exact = _run(g, arch, "tflite", x)
    assert (exact != ref)[below].any() and np.abs(exact - ref).max() <= 4
    assert elu16_negative(x, si, zi, so, zo, -0.5) is None  # a negative alpha: not probed, exact rounding
    want = np.clip(zo + np.rint(-0.5 * np.expm1((x - zi) * float(np.float32(si))) / float(np.float32(so))), 0, N - 1)
    np.testing.assert_array_equal(elu16_codes(x, si, zi, so, zo, -0.5)[below], want[below])


def test_elu16_by_hand() -> None:
    """Simulator codes (v68 = v73): ``z_out`` above ``1 / s_out`` (``ceil``) and below it (1 / s_out = 39079.0 in
    float32, ``z_out - 39079`` exact), alpha 1 and 0.5."""
    cases = [((2.1382565842226965e-05, 23577, 2.5589192037965782e-05, 21720), 1.0,
              {0: 6245, 5000: 8909, 20000: 18843, 23576: 21717, 23577: 21720}),
             ((1e-4, 40000, 1.3e-4, 9000), 1.0, {0: 1447, 5000: 1539, 20000: 2347, 39999: 8998, 40000: 9000}),
             ((2.1382565842226965e-05, 23577, 2.5589192037965782e-05, 21720), 0.5,
              {0: 13982, 5000: 15314, 20000: 20281, 23576: 21718}),
             ((1e-4, 40000, 1.3e-4, 9000), 0.5, {0: 5223, 5000: 5269, 20000: 5673, 39999: 8998})]
    for (si, zi, so, zo), alpha, want in cases:
        np.testing.assert_array_equal(elu16_codes(np.array(list(want)), si, zi, so, zo, alpha), list(want.values()))
