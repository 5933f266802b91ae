"""htp_config.arithmetic = "qnn": QNN's 8-bit Reciprocal and LeakyRelu (spec/qnn_unary.py) as tables of the input
code. Fast path == reference == the spec; TFLite's arithmetic and other arches keep the general kernels. (Against the
simulator: tests/fidelity/test_qnn_unary.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_elementwise import _enc, _graph

from openqnn.backends.htp.arch import ARCHS
from openqnn.backends.htp.kernels import HTP_KERNELS, HtpBuildContext
from openqnn.backends.htp.spec.qnn_unary import reciprocal_codes, reciprocal_numerator
from openqnn.ir.tensor import Encoding


def _run(g, arch: str, arithmetic: str, x: np.ndarray):
    node = g.nodes[0]
    step = HTP_KERNELS[node.op_type](node, HtpBuildContext(g, ARCHS[arch], arithmetic=arithmetic))
    assert step.plan is not None
    ref = step.reference(x)
    fast = step.fast(torch.from_numpy(x).to(torch.uint8))
    np.testing.assert_array_equal(ref, fast.numpy().astype(np.int64))
    return step.plan.kernel, ref


def _codes(shape: tuple[int, ...]) -> np.ndarray:
    return (np.arange(int(np.prod(shape))) % 256).reshape(shape).astype(np.int64)


@pytest.mark.parametrize("arch", ["v68", "v73"])
@pytest.mark.parametrize("lo,hi,out_hi", [(0.0, 2.0, 9.0), (0.0, 0.4, 300.0), (-0.2, 3.7, 15.0)])
def test_reciprocal_is_the_quantized_one_over_the_input(arch: str, lo: float, hi: float, out_hi: float) -> None:
    g = _graph("ElementWiseReciprocal", [((1, 4, 8, 8), _enc(lo, hi, 8), None)])
    g.tensors["out"].encoding = _enc(0.0, out_hi, 8)
    qi, qo = g.tensors["x0"].encoding, g.tensors["out"].encoding
    assert qi is not None and qo is not None
    x = _codes((1, 4, 8, 8))
    kernel, ref = _run(g, arch, "qnn", x)
    assert kernel == "htp.lut"
    si, zi, so, zo = qi.scale[0], -qi.offset[0], qo.scale[0], -qo.offset[0]
    np.testing.assert_array_equal(ref, reciprocal_codes(x, si, zi, so, zo))
    # the numerator is 1.0 quantized in the input's encoding, not 1
    q1 = reciprocal_numerator(si, zi)
    assert q1 == min(255, round(1 / np.float32(si)) + zi)
    _, tfl = _run(g, arch, "tflite", x)
    if (q1 - zi) * np.float32(si) != 1.0:
        assert (tfl != ref).any()


def test_reciprocal_by_zero_is_255_and_other_archs_keep_the_float_table() -> None:
    g = _graph("ElementWiseReciprocal", [((1, 256), _enc(0.0, 0.3, 8), None)])
    g.tensors["out"].encoding = Encoding(8, (2.0,), (0,))
    _, ref = _run(g, "v73", "qnn", np.arange(256).reshape(1, 256))
    assert ref[0, 0] == round(255 / 2.0)
    kernel, _ = _run(g, "v75", "qnn", np.arange(256).reshape(1, 256))
    assert kernel == "htp.lut"  # (the float table: not established on v75)


@pytest.mark.parametrize("arch", ["v68", "v73"])
@pytest.mark.parametrize("alpha", [0.1, 0.37])
def test_leaky_relu_rounds_exactly(arch: str, alpha: float) -> None:
    g = _graph("Prelu", [((1, 4, 8, 8), _enc(-2.9, 3.1, 8), None), ((1,), _enc(0.0, alpha, 8), [alpha])])
    g.tensors["out"].encoding = _enc(-0.7, 3.1, 8)
    qi, qa, qo = (g.tensors[n].encoding for n in ("x0", "c1", "out"))
    assert qi is not None and qa is not None and qo is not None
    x = _codes((1, 4, 8, 8))
    kernel, ref = _run(g, arch, "qnn", x)
    assert kernel == "htp.lut"
    a = x + qi.offset[0]
    alpha_q = float(np.float32(qa.scale[0])) * round(alpha / qa.scale[0])
    si, so = float(np.float32(qi.scale[0])), float(np.float32(qo.scale[0]))
    v = np.where(a >= 0, a * si / so, a * si * alpha_q / so)
    np.testing.assert_array_equal(ref, np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5) - qo.offset[0], 0, 255))
    kernel, tfl = _run(g, arch, "tflite", x)
    assert kernel == "htp.leaky_relu"
    assert np.abs(tfl - ref).max() <= 1


def _batchnorm_graph(c: int, seed: int):
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.3, 1.6, c)
    b = rng.uniform(-0.4, 0.3, c)
    g = _graph("Batchnorm", [((1, 5, 7, c), _enc(-2.1, 3.0, 8), None), ((c,), _enc(0.0, float(w.max()), 8), w),
                             ((c,), _enc(float(min(b.min(), 0)), float(max(b.max(), 0)), 8), b)])
    g.tensors["out"].encoding = _enc(-3.0, 4.0, 8)
    return g


@pytest.mark.parametrize("arch", ["v68", "v73"])
def test_batchnorm_table_is_the_spec_per_channel(arch: str) -> None:
    from openqnn.backends.htp.spec.qnn_unary import batchnorm_table

    g = _batchnorm_graph(5, 1)
    x = (np.arange(5 * 7 * 5) * 7 % 256).reshape(1, 5, 7, 5)
    kernel, ref = _run(g, arch, "qnn", x)
    assert kernel == "htp.channel_table"
    qi, qw, qb, qo = (g.tensors[n].encoding for n in ("x0", "c1", "c2", "out"))
    assert qi is not None and qw is not None and qb is not None and qo is not None
    def deq(name: str, q: Encoding) -> np.ndarray:  # the codes' values as QNN EP reads them
        return np.round(np.asarray(g.tensors[name].data, np.float64) / q.scale[0]) * float(np.float32(q.scale[0]))

    table = batchnorm_table(arch, qi.scale[0], -qi.offset[0], deq("c1", qw), deq("c2", qb), qo.scale[0], -qo.offset[0])
    np.testing.assert_array_equal(ref, table[np.arange(5), x])
    _, tfl = _run(g, arch, "tflite", x)
    assert np.abs(tfl - ref).max() <= 1


def test_batchnorm_parameters_are_requantized_over_their_range() -> None:
    from openqnn.backends.htp.spec.qnn_unary import requantize_param

    codes, scale, zp = requantize_param(np.array([0.2, 0.5, 1.0]))
    assert zp == 0 and scale == np.float32(1.0 / 255) and list(codes) == [51, 127, 255]  # 0.5 / float32(1 / 255) = 127.49999
    codes, scale, zp = requantize_param(np.array([-0.3, 0.1]))
    assert zp == round(0.3 / scale) and codes[0] == 0 and codes[1] == zp + round(0.1 / scale)


@pytest.mark.parametrize("arch", ["v68", "v73"])
def test_prelu_slope_per_channel_is_two_requantizations(arch: str) -> None:
    from openqnn.backends.htp.spec.qnn_eltwise import QnnConvertSpec

    slopes = np.array([0.38, 0.36, 0.05, 0.21, 0.3], np.float32).reshape(5, 1, 1)
    g = _graph("Prelu", [((1, 5, 7, 9), _enc(-2.9, 3.1, 8), None), ((5, 1, 1), _enc(0.0, 0.38, 8), slopes)])
    g.tensors["out"].encoding = _enc(-1.1, 3.1, 8)
    qi, qc, qo = (g.tensors[n].encoding for n in ("x0", "c1", "out"))
    assert qi is not None and qc is not None and qo is not None
    x = _codes((1, 5, 7, 9))
    kernel, ref = _run(g, arch, "qnn", x)
    assert kernel == "htp.channel_table"
    zi, zo = -qi.offset[0], -qo.offset[0]
    pos = QnnConvertSpec.of(qi.scale[0], zi, qo.scale[0], zo)
    assert pos is not None
    for c in range(5):
        alpha = round(float(slopes[c, 0, 0]) / qc.scale[0]) * float(np.float32(qc.scale[0]))
        neg = QnnConvertSpec.of(float(np.float32(qi.scale[0])) * alpha, zi, qo.scale[0], zo)
        assert neg is not None
        np.testing.assert_array_equal(ref[0, c], np.where(x[0, c] >= zi, pos.apply_np(x[0, c]), neg.apply_np(x[0, c])))
    kernel, tfl = _run(g, arch, "tflite", x)
    assert kernel == "htp.prelu"
    assert np.abs(tfl - ref).max() <= 1


@pytest.mark.parametrize("arch", ["v68", "v73"])
@pytest.mark.parametrize("op,attrs,enc,tie", [
    ("HardSigmoid", {"alpha": 0.2, "beta": 0.5}, Encoding(8, (0.08996876361323337,), (-105,)), 105),
    ("Sigmoid", {}, Encoding(8, (2.0**-4,), (-128,)), 128),
])
def test_8_bit_tables_in_float32_tie_as_the_htp(arch: str, op: str, attrs: dict, enc: Encoding, tie: int) -> None:
    """HardSigmoid's and Sigmoid's 8-bit tables in float32, as QNN's HTP computes them: at the output scale 1/255
    calibration gives their [0, 1], ``y = 0.5`` (``x = 0``, code ``tie``) is a tie in exact arithmetic; float32's ``0.5 /
    float32(1/255)`` is just below 127.5, so the code is 127, the simulator's (v68 and v73), where exact rounding gives
    128; every other code the same. TFLite's arithmetic and v75 keep exact rounding."""
    g = _graph(op, [((1, 256), enc, None)], attrs)
    g.tensors["out"].encoding = Encoding(8, (1 / 255,), (0,))
    x = np.arange(256).reshape(1, 256)
    kernel, ref = _run(g, arch, "qnn", x)
    assert kernel == "htp.lut" and ref[0, tie] == 127
    for other in ((arch, "tflite"), ("v75", "qnn")):
        _, exact = _run(g, *other, x)
        assert exact[0, tie] == 128 and (exact[0] != ref[0]).sum() == 1


@pytest.mark.parametrize("arch", ["v68", "v73"])
def test_float32_tables_are_for_8_bit_codes(arch: str) -> None:
    """16-bit HardSigmoid keeps exact rounding: at an output scale of 1/46575, 0.5 is code 23287.5, which float32's
    quotient puts at 23287.498 (23287) and exact rounding, half to even, at 23288."""
    g = _graph("HardSigmoid", [((1, 256), Encoding(16, (2.0**-12,), (-32768,)), None)], {"alpha": 0.2, "beta": 0.5})
    g.tensors["out"].encoding = Encoding(16, (1 / 46575,), (0,))
    x = np.arange(32768 - 128 * 41, 32768 + 128 * 41, 41)[:256].reshape(1, 256)
    node = g.nodes[0]
    step = HTP_KERNELS[node.op_type](node, HtpBuildContext(g, ARCHS[arch], arithmetic="qnn"))
    tfl = HTP_KERNELS[node.op_type](node, HtpBuildContext(g, ARCHS[arch], arithmetic="tflite"))
    assert x[0, 128] == 32768 and step.reference(x)[0, 128] == 23288
    np.testing.assert_array_equal(step.reference(x), tfl.reference(x))
