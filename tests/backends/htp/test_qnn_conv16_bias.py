"""v68's W8A16 bias (spec/qnn_conv16.py's ``Conv16Spec.bias``): its float32 sum with the output zero point's
share takes the 1/2 in float32, so a sum in [2^23, 2^24) one below a multiple of 256 counts as that multiple
(docs/htp-fidelity.md, "The W8A16 bias in float32 (stop 27)"). Measured codes, no simulator."""

from __future__ import annotations

import numpy as np
import torch
from test_conv_linear import BUILDERS, conv_impl  # noqa: F401  (the fixture)

from openqnn.backends.htp.arch import ARCHS
from openqnn.backends.htp.kernels.registry import HtpBuildContext, storage_dtype
from openqnn.backends.htp.spec.qnn_conv16 import Conv16Spec, conv16_v68
from openqnn.backends.htp.spec.qnn_requant import QnnRequantSpec, _v68_bias
from openqnn.ir import DType, Graph, Tensor, TensorKind
from openqnn.ir.tensor import Encoding
from openqnn.ops.build import emit

f32 = np.float32
# the fidelity case conv/5to64_k3_d2_p2/a16_pt's scales and zero points (per-tensor weights): the output zero
# point's share zo / M is 10,219,045.03, so the bias sums lie in [2^23, 2^24), where float32 steps are 1
SX, SW, SO, ZX, ZO = f32(0.000101957776), f32(0.008046468), f32(0.00023265448), 31282, 36035
SB = f32(SX * SW)
REAL = np.array([float(SX) * float(SW) / float(SO)])
# the tie probe (tests/fidelity/conv16_probe.py's bias_ties / bias_offsets, v68, onnxruntime-qnn 2.7.0): biases
# 469..480 put the float32 sum on 10,219,514..10,219,525; the simulator's bias in units of 256 (measured: every
# code of each channel), 39,920 from the sum 10,219,519 (= 256 * 39,920 - 1) on
BIASES = np.arange(469, 481)
UNITS = np.array([39919] * 5 + [39920] * 7)


def test_v68_w8a16_bias_takes_the_half_in_float32() -> None:
    """The measured units of 256: Conv16Spec.bias's (the 1/2 added in float32, half to even) gives all twelve;
    the float64 half (the 8-bit form's, which it leaves unchanged) misses the sum 256 * 39,920 - 1."""
    qbz = Conv16Spec.of(REAL, ZO, "v68").bias(BIASES, float(SX), np.array([SW]), float(SB), REAL)
    np.testing.assert_array_equal(qbz >> 8, UNITS)
    spec = QnnRequantSpec.of("v68", REAL, ZO, 16)
    old = (_v68_bias(BIASES, float(SX), np.array([SW]), float(SB), spec, REAL) + spec.pre) >> 8
    assert list(np.nonzero(old != UNITS)[0]) == [5]
    # the 8-bit form is unchanged: half_f32 is the W8A16 convolutions' only
    spec8 = QnnRequantSpec.of("v68", REAL, 200, 8)
    np.testing.assert_array_equal(_v68_bias(BIASES, float(SX), np.array([SW]), float(SB), spec8, REAL),
                                  np.floor((BIASES.astype(f32) + f32(f32(200) / f32(f32(SX * SW) / SO))).astype(f32)
                                           .astype(np.float64) + 0.5).astype(np.int64) - spec8.pre)


def test_v68_w8a16_bias_tie_fast_equals_reference_equals_spec(conv_impl: str) -> None:  # noqa: F811
    """A 1x1 convolution of the tie probe's scales (one input channel, weights 1, biases 469..480): every kernel
    kind gives the reference's codes, and both conv16_v68's with the measured units."""
    g = Graph("g")
    x = g.add_tensor(Tensor("x0", (1, 16, 16, 1), DType.FLOAT_32, TensorKind.APP_WRITE))
    x.encoding = Encoding(16, (float(SX),), (-ZX,))
    g.inputs.append("x0")
    w = g.add_constant("w", np.full((1, 1, 1, BIASES.size), SW, np.float32))
    w.encoding = Encoding(8, (float(SW),), (-128,), None, True)
    b = g.add_constant("b", (BIASES.astype(f32) * SB).astype(np.float32))
    b.encoding = Encoding(32, (float(SB),), (0,), None, True, True)
    attrs = {"stride": [1, 1], "pad_amount": [[0, 0], [0, 0]], "dilation": [1, 1], "group": 1}
    (out,) = emit(g, "Conv2d", ["x0", "w", "b"], attrs, outputs=["out"])
    g.tensors[out].kind = TensorKind.APP_READ
    g.tensors[out].encoding = Encoding(16, (float(SO),), (-ZO,))
    g.outputs.append(out)
    codes = (256 * (100 + np.arange(256)) + np.arange(256) * 37 % 256).reshape(1, 16, 16, 1).astype(np.int64)
    step = BUILDERS["Conv2d"](g.nodes[0], HtpBuildContext(g, ARCHS["v68"], arithmetic="qnn"))
    ref = np.asarray(step.reference(codes)).astype(np.int64)
    fast = step.fast(torch.from_numpy(codes).to(storage_dtype(16))).numpy().astype(np.int64)
    np.testing.assert_array_equal(fast, ref)
    xc = codes.reshape(-1)
    want = conv16_v68((xc >> 8)[:, None], (xc & 255)[:, None], np.ones(BIASES.size, np.int64), UNITS * 256 + 128,
                      ZX, np.repeat(REAL, BIASES.size))
    np.testing.assert_array_equal(ref.reshape(-1, BIASES.size), want)


# the strided depthwise probe (tests/fidelity/conv16_probe.py's strided_dw_offsets, seed 1, zero point 29305, v68
# = v73): eight channels' weight scales (the last the tensor's largest) and their measured folded zero points,
# 0..3 above round(zo / M)
DW_SW = np.array([0.005850483663380146, 0.00415056711062789, 0.004978192504495382, 0.004926460329443216,
                  0.003853575326502323, 0.009578941389918327, 0.002725356724113226, 0.009836265817284584], np.float32)
DW_PRE = np.array([9598718, 13529992, 11280628, 11399084, 14572736, 5862562, 20605428, 5709193])
DW_SX, DW_SO, DW_ZX, DW_ZO = f32(0.0001157692), f32(0.00022184837), 33956, 29305


def test_strided_depthwise16_fast_equals_reference_equals_spec(conv_impl: str) -> None:  # noqa: F811
    """A stride-2 depthwise convolution with 16-bit codes on v68 and v73: the plan folds the measured zero point
    shares (dw_strided16_pre), every kernel kind gives the reference's codes, and both the "dw_strided" form's on
    the exact accumulators."""
    from openqnn.backends.htp.spec.qnn_requant import QnnRequantSpec, dw_strided16_pre

    c = DW_SW.size
    np.testing.assert_array_equal(dw_strided16_pre(float(DW_SX), DW_SW, float(DW_SO), DW_ZO, c), DW_PRE)
    rng = np.random.default_rng(27)
    wq = rng.integers(-127, 128, (3, 3, 1, c))
    bq = rng.integers(-600000, 600000, c)
    g = Graph("g")
    x = g.add_tensor(Tensor("x0", (1, 9, 9, c), DType.FLOAT_32, TensorKind.APP_WRITE))
    x.encoding = Encoding(16, (float(DW_SX),), (-DW_ZX,))
    g.inputs.append("x0")
    w = g.add_constant("w", (wq * DW_SW).astype(np.float32))
    w.encoding = Encoding(8, tuple(float(v) for v in DW_SW), (-128,) * c, 3, True)
    sb = (DW_SX * DW_SW).astype(np.float32)
    b = g.add_constant("b", (bq * sb).astype(np.float32))
    b.encoding = Encoding(32, tuple(float(v) for v in sb), (0,) * c, 0, True, True)
    attrs = {"stride": [2, 2], "pad_amount": [[1, 1], [1, 1]], "dilation": [1, 1]}
    (out,) = emit(g, "DepthWiseConv2d", ["x0", "w", "b"], attrs, outputs=["out"])
    g.tensors[out].kind = TensorKind.APP_READ
    g.tensors[out].encoding = Encoding(16, (float(DW_SO),), (-DW_ZO,))
    g.outputs.append(out)
    codes = (DW_ZX + rng.integers(-3000, 3000, (1, 9, 9, c))).astype(np.int64)
    real = float(DW_SX) * DW_SW.astype(np.float64) / float(DW_SO)
    # the exact accumulators (padding holds the zero point), then the "dw_strided" form with the measured shares
    xp = np.pad(codes[0] - DW_ZX, ((1, 1), (1, 1), (0, 0)))
    acc = np.zeros((5, 5, c), np.int64)
    for i in range(3):
        for j in range(3):
            acc += xp[i:i + 9:2, j:j + 9:2] * wq[i, j, 0]
    for arch in ("v68", "v73"):
        step = BUILDERS["DepthWiseConv2d"](g.nodes[0], HtpBuildContext(g, ARCHS[arch], arithmetic="qnn"))
        rq = step.plan.attrs["rq"]
        assert rq["kernel"] == "dw_strided" and rq["bits"] == 16
        np.testing.assert_array_equal(np.asarray(rq["consts"])[0], DW_PRE)
        ref = np.asarray(step.reference(codes)).astype(np.int64)
        fast = step.fast(torch.from_numpy(codes).to(storage_dtype(16))).numpy().astype(np.int64)
        np.testing.assert_array_equal(fast, ref)
        spec = QnnRequantSpec.of(arch, real, DW_ZO, 16, "dw_strided")
        want = QnnRequantSpec(**{**spec.__dict__, "pre": DW_PRE}).apply_np(acc + bq)
        np.testing.assert_array_equal(ref[0], want)
