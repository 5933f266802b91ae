"""htp_config.arithmetic = "qnn": QNN's lookup-table ops of 16-bit codes (spec/qnn_unary16.py). Fast path ==
reference == the spec, tables by the row parity where the rule has one; TFLite's arithmetic, 8-bit codes and other
arches keep exact rounding. (Against the simulator: tests/fidelity/test_qnn_unary16.py.)"""

from __future__ import annotations

import math

import numpy as np
import pytest
from lut_steps import run_step as _run
from lut_steps import scale_zero as _sz
from test_elementwise import _enc, _graph

from openqnn.backends.htp.spec.qnn_div import div16_apply, div16_multiplier
from openqnn.backends.htp.spec.qnn_unary import reciprocal_numerator
from openqnn.backends.htp.spec.qnn_unary16 import (
    LOG_ZERO_SCALE,
    abs16_codes,
    abs16_multiplier,
    elu16_codes,
    elu16_positive,
    leaky_relu16_codes,
    leaky_relu16_multipliers,
    row_parity,
)
from openqnn.ir.tensor import Encoding


def _codes(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 1 << 16, shape).astype(np.int64)




@pytest.mark.parametrize("arch", ["v68", "v73"])
@pytest.mark.parametrize("shape", [(1, 5, 7, 9), (7, 3), (300,), (2, 1, 40)])
def test_abs_rounds_by_the_row_parity(arch: str, shape: tuple[int, ...]) -> None:
    g = _graph("ElementWiseAbs", [(shape, _enc(-3.1, 2.3, 16), None)])
    g.tensors["out"].encoding = _enc(0.0, 3.3, 16)
    (si, zi), (so, zo) = _sz(g.tensors["x0"].encoding), _sz(g.tensors["out"].encoding)
    x = _codes(shape)
    kernel, ref = _run(g, arch, "qnn", x)
    odd = np.broadcast_to(row_parity(shape), shape) == 1
    want = np.where(odd, abs16_codes(x, si, zi, so, zo, odd=True), abs16_codes(x, si, zi, so, zo))
    np.testing.assert_array_equal(ref, want)
    assert kernel == ("htp.channel_table" if odd.any() else "htp.lut")
    _, exact = _run(g, arch, "tflite", x)
    assert (exact != ref).any()  # (exact rounding parts from the rule)


def test_abs_rule_is_the_documented_integer_arithmetic() -> None:
    si, zi, so, zo = 1e-4, 30000, 1.1e-4, 7
    m = abs16_multiplier(si, so)
    assert m == round(float(np.float32(np.float32(si) / np.float32(so))) * 2**18)
    q = np.array([8, 30000, 0, 65535])
    a = np.abs(q - zi)
    np.testing.assert_array_equal(abs16_codes(q, si, zi, so, zo), zo + ((((a * m) >> 14) + 9) >> 4))
    np.testing.assert_array_equal(abs16_codes(q, si, zi, so, zo, odd=True), zo + ((((a * m) >> 17) + 1) >> 1))
    # q = 8: 27265.454 codes, rounded up on even rows (from 7/16), down on odd rows
    assert abs16_codes(q, si, zi, so, zo)[0] == zo + 27266
    assert abs16_codes(q, si, zi, so, zo, odd=True)[0] == zo + 27265


@pytest.mark.parametrize("arch", ["v68", "v73"])
def test_log_is_zero_below_the_output_scale_cliff(arch: str) -> None:
    g = _graph("ElementWiseLog", [((1, 4, 64), _enc(0.0, 2.0, 16), None)])
    x = _codes((1, 4, 64))
    g.tensors["out"].encoding = Encoding(16, (5e-5,), (-50000,))
    assert 5e-5 <= LOG_ZERO_SCALE
    _, ref = _run(g, arch, "qnn", x)
    assert (ref == 0).all()
    _, tfl = _run(g, arch, "tflite", x)
    assert (tfl != 0).any()
    g.tensors["out"].encoding = Encoding(16, (1e-4,), (-50000,))  # above it: exact rounding
    _, ref = _run(g, arch, "qnn", x)
    np.testing.assert_array_equal(ref, _run(g, arch, "tflite", x)[1])


@pytest.mark.parametrize("arch", ["v68", "v73"])
@pytest.mark.parametrize("hi,clamps", [(0.5, True), (2.0, False)])
def test_reciprocal_16bit_is_the_div_of_the_quantized_one(arch: str, hi: float, clamps: bool) -> None:
    """QNN's 16-bit Divide of 1.0 quantized in the input's encoding (clamped at 65535 where 1 / s_in passes it) by
    the input; TFLite's arithmetic rounds 1 / x exactly."""
    g = _graph("ElementWiseReciprocal", [((1, 1024), _enc(0.0, hi, 16), None)])
    g.tensors["out"].encoding = _enc(0.0, 200.0 if clamps else 10.0, 16)
    (si, zi), (so, zo) = _sz(g.tensors["x0"].encoding), _sz(g.tensors["out"].encoding)
    x = np.arange(1024, 65536, 63)[:1024].reshape(1, 1024)
    _, ref = _run(g, arch, "qnn", x)
    q1 = reciprocal_numerator(si, zi, 16)
    assert (q1 == 65535) == clamps
    mult = div16_multiplier(si, si, so)
    assert mult is not None
    np.testing.assert_array_equal(ref, div16_apply(np.full(x.shape, q1), x, zi, zi, zo, *mult))
    assert (ref != _run(g, arch, "tflite", x)[1]).any()


def test_other_arches_and_8bit_codes_keep_exact_rounding() -> None:
    g = _graph("ElementWiseAbs", [((1, 4, 9), _enc(-3.1, 2.3, 16), None)])
    g.tensors["out"].encoding = _enc(0.0, 3.3, 16)
    x = _codes((1, 4, 9))
    kernel, ref = _run(g, "v75", "qnn", x)
    assert kernel == "htp.lut"
    np.testing.assert_array_equal(ref, _run(g, "v73", "tflite", x)[1])
    g8 = _graph("ElementWiseAbs", [((1, 4, 9), _enc(-3.1, 2.3, 8), None)])
    g8.tensors["out"].encoding = _enc(0.0, 3.3, 8)
    x8 = x % 256
    np.testing.assert_array_equal(_run(g8, "v73", "qnn", x8)[1], _run(g8, "v73", "tflite", x8)[1])


@pytest.mark.parametrize("arch", ["v68", "v73"])
def test_softplus_is_the_piecewise_form(arch: str) -> None:
    from openqnn.backends.htp.spec.qnn_unary16 import SOFTPLUS_POLY, softplus16_codes, softplus16_values

    g = _graph("ElementWiseSoftplus", [((1, 5, 7, 9), _enc(-6.0, 6.0, 16), None)])
    g.tensors["out"].encoding = _enc(0.0, 6.1, 16)
    (si, zi), (so, zo) = _sz(g.tensors["x0"].encoding), _sz(g.tensors["out"].encoding)
    x = _codes((1, 5, 7, 9))
    kernel, ref = _run(g, arch, "qnn", x)
    assert kernel == "htp.lut"
    np.testing.assert_array_equal(ref, softplus16_codes(x, si, zi, so, zo))
    # the pieces: exp below -2, the polynomial on [-2, 5), x from 5
    v = softplus16_values(np.array([-3.0, -2.0, 0.0, 4.999, 5.0, 7.5]))
    np.testing.assert_allclose(v, [np.exp(-3.0), np.polyval(SOFTPLUS_POLY, -2.0), SOFTPLUS_POLY[-1],
                                   np.polyval(SOFTPLUS_POLY, 4.999), 5.0, 7.5])
    assert abs(SOFTPLUS_POLY[-1] - np.log(2.0)) > 0.009  # (QNN's polynomial, not softplus: 0.7031 at 0)
    _, exact = _run(g, arch, "tflite", x)
    assert (exact != ref).any()


def test_rsqrt10_has_nnlibs_documented_accuracy() -> None:
    """nnlib's ``hvx_Vuh_rsqrt10_Vuh`` documents, over every input code, an error vs the ideal ``2^17 / sqrt(n)`` of
    -1.12 .. 0.50 result lsbs, mean -0.0687, rms 0.3073."""
    from openqnn.backends.htp.spec.qnn_unary16 import rsqrt10

    n = np.arange(1 << 14, 1 << 16)
    err = rsqrt10(n) - 2.0**17 / np.sqrt(n)
    assert (round(float(err.min()), 2), round(float(err.max()), 2)) == (-1.12, 0.50)
    assert round(float(err.mean()), 4) == -0.0687 and round(float(np.sqrt(np.mean(err**2))), 4) == 0.3073


@pytest.mark.parametrize("arch", ["v68", "v73"])
def test_sqrt_is_nnlibs_rsqrt10_form(arch: str) -> None:
    from openqnn.backends.htp.spec.qnn_unary16 import rsqrt10, sqrt16_codes, sqrt16_multiplier

    g = _graph("ElementWiseSquareRoot", [((2, 64, 9), _enc(-0.1, 4.0, 16), None)])
    g.tensors["out"].encoding = _enc(0.0, 2.1, 16)
    (si, zi), (so, zo) = _sz(g.tensors["x0"].encoding), _sz(g.tensors["out"].encoding)
    x = _codes((2, 64, 9))
    kernel, ref = _run(g, arch, "qnn", x)
    assert kernel == "htp.lut"
    np.testing.assert_array_equal(ref, sqrt16_codes(x, si, zi, so, zo))
    # by hand: a = 5 -> n = 5 << 12 = 20480 (top 6 bits 20: seed 57), n 57^2 = 66539520, >> 8 = 259920 -> int16
    # -2224, px = (2 57 (-2224) + 2^15) >> 16 = -4, r = 16 57 + 4 = 916 (2^17 / sqrt(20480) = 915.89)
    assert int(rsqrt10(np.array([20480]))[0]) == 916
    m, e = sqrt16_multiplier(si, so)
    t = (20480 * 916 * m + (1 << 14)) >> 15
    sh = 17 + 6 - e
    assert int(sqrt16_codes(np.array([zi + 5]), si, zi, so, zo)[0]) == min(zo + ((t + (1 << (sh - 1))) >> sh), 65535)
    # the simulator's codes at s_in = s_out = 2^-16 (C = 256), v68 = v73: the Q15 product's rounding at a = 16879
    assert sqrt16_codes(np.array([1, 2, 100, 4098, 16879, 65000]), 2.0**-16, 0, 2.0**-16, 0).tolist() == [
        256, 362, 2559, 16376, 33264, 65254]
    # the significand rounding up to 2^15 is 2^14 one binade up
    assert sqrt16_multiplier(1.0, 1 / (256 * (1 - 2.0**-17))) == (1 << 14, 9)
    # below the zero point the 16-bit difference wraps
    assert sqrt16_codes(np.array([zi - 1]), si, zi, so, zo)[0] == sqrt16_codes(np.array([65535]), si, 0, so, zo)[0]


@pytest.mark.parametrize("arch", ["v68", "v73"])
@pytest.mark.parametrize("op", ["Sigmoid", "Tanh"])
def test_sigmoid_tanh_are_nnlibs_cubic_tanh(arch: str, op: str) -> None:
    from openqnn.backends.htp.spec.qnn_unary16 import tanh16_codes

    sigmoid = op == "Sigmoid"
    g = _graph(op, [((1, 5, 7, 9), _enc(-5.0, 7.0, 16), None)])
    g.tensors["out"].encoding = _enc(0.0, 1.0, 16) if sigmoid else _enc(-1.0, 1.0, 16)
    (si, zi), (so, zo) = _sz(g.tensors["x0"].encoding), _sz(g.tensors["out"].encoding)
    x = _codes((1, 5, 7, 9))
    kernel, ref = _run(g, arch, "qnn", x)
    assert kernel == "htp.lut"
    np.testing.assert_array_equal(ref, tanh16_codes(x, si, zi, so, zo, sigmoid=sigmoid))
    _, exact = _run(g, arch, "tflite", x)
    assert (exact != ref).any()


def test_tanh16_form_by_hand() -> None:
    """The documented integer steps on one code: s_in = 8 / 65535, a = 1: f = 1.50002 (e = 1), sh = 14,
    mult = 24576, x1 = 1, u = 65534^2 >> 16 = 65532 (segment 15, r = 4092); t = 1634 - 2101 = -467,
    t = -58 - 21927 = -21985, y = -5491 + 5494 = 3; one code below the zero point gives ~3 = -4."""
    from openqnn.backends.htp.spec.qnn_unary16 import tanh16_input_scale, tanh16_q15

    si = 8 / 65535
    assert tanh16_input_scale(si, False) == (24576, 14)
    assert tanh16_input_scale(si, True) == (24576, 15)
    y = tanh16_q15(np.array([32767, 32768, 32769]), si, 32768, False)
    assert y is not None
    np.testing.assert_array_equal(y, [-4, 0, 3])
    q = np.arange(1 << 16)
    t = tanh16_q15(q, si, 32768, False)
    assert t is not None
    xs = (q - 32768) * float(np.float32(si))
    assert np.abs(t - 32768 * np.tanh(xs)).max() < 3 and (np.diff(t) >= 0).all()
    sh = tanh16_q15(q, si, 32768, True)  # sigmoid: tanh(x / 2) averaged with one, (t + 2^15) >> 1
    assert sh is not None and np.abs(sh - 32768 / (1 + np.exp(-xs))).max() < 2.5
    assert tanh16_input_scale(1e-9, False) is None  # nnlib's range check: no rule, exact rounding


@pytest.mark.parametrize("arch", ["v68", "v73"])
@pytest.mark.parametrize("slope_bits", [8, 16])
@pytest.mark.parametrize("alpha", [0.1, 1.7])
def test_leaky_relu16_is_the_spec(arch: str, slope_bits: int, alpha: float) -> None:
    """A 16-bit LeakyRelu (a one-element slope; an 8-bit slope is exported as 16-bit codes of the same value): the
    table is the spec's, TFLite's arithmetic parts from it."""
    shape = (1, 5, 7, 9)
    g = _graph("Prelu", [(shape, _enc(-2.9, 3.1, 16), None), ((1,), _enc(0.0, alpha, slope_bits), [alpha])])
    g.tensors["out"].encoding = _enc(-0.7 * alpha, 3.1, 16)
    (si, zi), (so, zo) = _sz(g.tensors["x0"].encoding), _sz(g.tensors["out"].encoding)
    qa = g.tensors["c1"].encoding
    assert qa is not None
    alpha_q = float(np.float32(qa.scale[0])) * round(alpha / qa.scale[0])
    x = _codes(shape)
    kernel, ref = _run(g, arch, "qnn", x)
    assert kernel == "htp.lut"
    want = leaky_relu16_codes(x, si, zi, so, zo, alpha_q)
    assert want is not None
    np.testing.assert_array_equal(ref, want)
    kernel, tfl = _run(g, arch, "tflite", x)
    assert kernel == "htp.leaky_relu"
    assert (tfl != ref).any()


def _ratio(s_in: float, s_out: float) -> float:
    return float(np.float32(np.float32(s_in) / np.float32(s_out)))


def test_leaky_relu16_rule_is_the_documented_integer_arithmetic() -> None:
    # the multipliers: 15 bits, truncated toward zero, at the shift of the larger slope
    r = _ratio(1e-4, 1e-4 / 1.3)
    assert leaky_relu16_multipliers(1e-4, 1e-4 / 1.3, 0.1) == (math.floor(r * 2**14), math.floor(r * 0.1 * 2**14), 14)
    assert leaky_relu16_multipliers(1e-4, 1e-4 / 1.3, -0.1) == (math.floor(r * 2**14), -math.floor(r * 0.1 * 2**14), 14)
    r = _ratio(1e-4, 1e-4 / 0.9)  # the negative slope 2.25 is the larger: its shift, 13
    assert leaky_relu16_multipliers(1e-4, 1e-4 / 0.9, 2.5) == (math.floor(r * 2**13), math.floor(r * 2.5 * 2**13), 13)
    r = _ratio(1e-4, 1e-4 / 0.01)  # below 1/2: at most 15 fraction bits
    assert leaky_relu16_multipliers(1e-4, 1e-4 / 0.01, 0.1) == (math.floor(r * 2**15), math.floor(r * 0.1 * 2**15), 15)
    # codes the simulator gave (tests/fidelity/prelu16_probe.py, v73; input (s, z), output (s, z), the slope's code,
    # scale and zero point): a wrapped int32 sum (z_out 60205), a slope of 3.19 (the negative branch's shift), a
    # negative slope
    cases = [((1.7098327996605342e-4, 8226), (2.8063838145167975e-4, 60205), (45007, 1.8676814462968738e-07, 0),
              {0: 60163, 4113: 60184, 8225: 60205, 8227: 60206, 16975: 65535, 16977: 0, 65535: 0}),
             ((1.519867413011044e-4, 59726), (4.677554011932167e-05, 35125), (2764, 0.0011529629293848286, 0),
              {56726: 4062, 58726: 24771, 59719: 35053, 59731: 35141, 60726: 38374, 61226: 39999}),
             ((1.8238157572551754e-4, 32948), (0.0019569170775839617, 30083), (0, 3.901626955332451e-06, 65280),
              {0: 30864, 16474: 30474, 32947: 30083, 41697: 30898, 65535: 33119})]
    for (si, zi), (so, zo), (wq, sw, zw), want in cases:
        alpha = float(np.float32(sw)) * (wq - zw)
        got = leaky_relu16_codes(np.array(list(want)), si, zi, so, zo, alpha)
        assert got is not None
        np.testing.assert_array_equal(got, list(want.values()))


@pytest.mark.parametrize("arch", ["v68", "v73"])
@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_elu16_is_the_spec(arch: str, alpha: float) -> None:
    g = _graph("Elu", [((1, 5, 7, 9), _enc(-4.0, 3.0, 16), None)], {"alpha": alpha})
    g.tensors["out"].encoding = _enc(-1.2, 3.3, 16)
    (si, zi), (so, zo) = _sz(g.tensors["x0"].encoding), _sz(g.tensors["out"].encoding)
    x = _codes((1, 5, 7, 9))
    kernel, ref = _run(g, arch, "qnn", x)
    assert kernel == "htp.lut"
    np.testing.assert_array_equal(ref, elu16_codes(x, si, zi, so, zo, alpha))
    _, exact = _run(g, arch, "tflite", x)
    pos = x >= zi
    assert (exact != ref)[pos].any()  # the rule from 0 up
    assert np.abs(exact - ref).max() <= 4  # (below 0: QNN's Exp, tests/backends/htp/test_qnn_exp16.py)
    _, v75 = _run(g, "v75", "qnn", x)
    np.testing.assert_array_equal(v75, exact)


def test_elu16_positive_piece_by_hand() -> None:
    """Simulator codes (v68 = v73): a ratio of 1 drops the low bit; 0.76923 (``m = 25206``) floors ``9 r = 6.92``
    to 6; 2.72727 (``f = 0.6818``, ``e = 2``, ``m = round(22341.8) = 22342``) gives 60 at ``a = 22`` (a truncated
    ``m`` would give 56), each ``((a m) >> 15) << e``."""
    np.testing.assert_array_equal(elu16_positive(np.array([0, 1, 2, 3, 7, 32767]), 2.0**-12, 2.0**-12),
                                  [0, 0, 2, 2, 6, 32766])
    assert int(elu16_positive(np.array([9]), 1e-4, 1.3e-4)[0]) == 6
    assert int(elu16_positive(np.array([22]), 3e-4, 1.1e-4)[0]) == ((22 * 22342) >> 15) << 2 == 60
    assert int(elu16_positive(np.array([3]), 2.0**-13, 2.0**-12)[0]) == 1  # r = 1/2: (3 16384) >> 15
