"""QNN's requantization per arch (openqnn's spec, src/openqnn/backends/htp/spec/qnn_requant.py) against the HTP
simulator: random
3x3 convolutions (zero-padded input codes, random input and output zero points, biases, per-tensor and
per-channel weight scales), every output code equal."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from openqnn.backends.htp.spec.qnn_requant import QnnRequantSpec
from tests.fidelity.harness import qnn_session, simulator_missing


def _qdq_model(op: Any, x_shape: tuple[int, ...], wq: np.ndarray, bq: np.ndarray, sx: np.float32, zx: int,
               sw: np.ndarray, so: np.float32, zo: int, w_axis: int | None, b_axis: int | None) -> bytes:
    """``op`` (inputs x, w, b; output y) between QuantizeLinear/DequantizeLinear: 8-bit input codes, int8
    weights (per-tensor, or per channel along ``w_axis``), an int32 bias, 8-bit output codes."""
    from onnx import TensorProto, helper
    from onnx import numpy_helper as nh

    per_channel = w_axis is not None
    n = sw.size
    sb = (sx * sw).astype(np.float32)
    one = lambda a: a if per_channel else a.reshape(())  # noqa: E731
    inits = [nh.from_array(wq, "wq"), nh.from_array(one(sw), "sw"), nh.from_array(one(np.zeros(n, np.int8)), "zw"),
             nh.from_array(bq, "bq"), nh.from_array(one(sb), "sb"), nh.from_array(one(np.zeros(n, np.int32)), "zb"),
             nh.from_array(np.array(sx), "sx"), nh.from_array(np.array(zx, np.uint8), "zx"),
             nh.from_array(np.array(so), "so"), nh.from_array(np.array(zo, np.uint8), "zo")]
    axis = lambda a: {} if a is None else {"axis": a}  # noqa: E731
    nodes = [helper.make_node("QuantizeLinear", ["xf", "sx", "zx"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["x"]),
             helper.make_node("DequantizeLinear", ["wq", "sw", "zw"], ["w"], **axis(w_axis)),
             helper.make_node("DequantizeLinear", ["bq", "sb", "zb"], ["b"], **axis(b_axis)), op,
             helper.make_node("QuantizeLinear", ["y", "so", "zo"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "so", "zo"], ["yo"])]
    g = helper.make_graph(nodes, "op", [helper.make_tensor_value_info("xf", TensorProto.FLOAT, x_shape)],
                          [helper.make_tensor_value_info("yo", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)]).SerializeToString()


_missing = simulator_missing()
pytestmark = pytest.mark.skipif(_missing is not None, reason=_missing or "")


def _conv_model(rng: np.random.Generator, per_channel: bool) -> tuple[bytes, np.ndarray, np.ndarray, np.ndarray, int]:
    """(model, float input on the grid, exact accumulators [1, cout, h, w], multipliers, output zero point)."""
    from onnx import helper

    cin, cout, h = 8, 12, 10
    sx, zx = np.float32(rng.uniform(0.005, 0.05)), int(rng.integers(0, 256))
    sw = rng.uniform(0.002, 0.02, size=cout if per_channel else 1).astype(np.float32)
    so, zo = np.float32(rng.uniform(0.02, 0.2)), int(rng.integers(0, 256))
    wq = rng.integers(-127, 128, size=(cout, cin, 3, 3)).astype(np.int8)
    bq = rng.integers(-4000, 4000, size=cout).astype(np.int32)
    xq = rng.integers(0, 256, size=(1, cin, h, h)).astype(np.int64)
    model = _qdq_model(helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1]), xq.shape, wq, bq, sx, zx,
                       sw, so, zo, w_axis=0 if per_channel else None, b_axis=0 if per_channel else None)
    xf = (sx * (xq.astype(np.float32) - zx)).astype(np.float32)
    xp = np.pad(xq - zx, ((0, 0), (0, 0), (1, 1), (1, 1)))  # the padding is the zero point: 0 once centred
    acc = np.zeros((1, cout, h, h), np.int64)
    for i in range(3):
        for j in range(3):
            acc += np.einsum("nchw,oc->nohw", xp[:, :, i:i + h, j:j + h], wq[:, :, i, j].astype(np.int64))
    acc += bq.astype(np.int64)[None, :, None, None]
    mults = (float(sx) * sw.astype(np.float64)) / float(so)
    return model, xf, acc, mults, zo


@pytest.mark.parametrize("arch", ["68", "73"])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_conv_requantization_matches_the_simulator(seed: int, per_channel: bool, arch: str) -> None:
    rng = np.random.default_rng(seed)
    model, xf, acc, mults, zo = _conv_model(rng, per_channel)
    y = qnn_session(model, arch).run(None, {"xf": xf})[0]
    codes_sim = np.rint(y.astype(np.float64) / _out_scale(model)).astype(np.int64) + zo
    ours = _spec_codes(arch, acc, mults, zo)
    tflite = np.clip(np.floor(acc * (mults[None, :, None, None] if per_channel else mults[0]) + 0.5) + zo, 0, 255)
    print(f"v{arch} seed {seed} per_channel {per_channel}: spec {np.mean(ours == codes_sim):.4%} identical, "
          f"exact rounding {np.mean(tflite == codes_sim):.4%}")
    np.testing.assert_array_equal(ours, codes_sim)


def _dw_strided_model(rng: np.random.Generator) -> tuple[bytes, np.ndarray, np.ndarray, np.ndarray, int]:
    """A stride-2 3x3 depthwise convolution, per-channel weights, MobileNetV2-like multipliers (2e-4 to 2e-3)
    and biases (up to about 1e6, putting the outputs mid-range): (model, float input on the grid, exact
    accumulators [1, c, h/2, w/2], multipliers, zo)."""
    from onnx import helper

    c, h = 64, 16
    sx, zx = np.float32(rng.uniform(0.005, 0.05)), int(rng.integers(0, 256))
    so, zo = np.float32(rng.uniform(0.005, 0.1)), int(rng.integers(0, 256))
    mult = np.exp(rng.uniform(np.log(2e-4), np.log(2e-3), size=c))
    sw = (mult * float(so) / float(sx)).astype(np.float32)
    wq = rng.integers(-127, 128, size=(c, 1, 3, 3)).astype(np.int8)
    bq = np.rint((rng.uniform(60, 200, size=c) - zo) / mult).astype(np.int32)
    xq = rng.integers(0, 256, size=(1, c, h, h)).astype(np.int64)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1], strides=[2, 2], group=c)
    model = _qdq_model(node, xq.shape, wq, bq, sx, zx, sw, so, zo, w_axis=0, b_axis=0)
    xf = (sx * (xq.astype(np.float32) - zx)).astype(np.float32)
    xp = np.pad(xq - zx, ((0, 0), (0, 0), (1, 1), (1, 1)))
    o = h // 2
    acc = np.zeros((1, c, o, o), np.int64)
    for i in range(3):
        for j in range(3):
            acc += xp[:, :, i:i + 2 * o:2, j:j + 2 * o:2] * wq[:, 0, i, j].astype(np.int64)[None, :, None, None]
    acc += bq.astype(np.int64)[None, :, None, None]
    return model, xf, acc, (float(sx) * sw.astype(np.float64)) / float(so), zo


@pytest.mark.parametrize("arch", ["68", "73"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_strided_depthwise_requantization_matches_the_simulator(seed: int, arch: str) -> None:
    """QNN's own form for a strided depthwise convolution (the output zero point folded into the accumulator, the
    bias as given, a rounded 15-bit multiplier: spec/qnn_requant.py, ``kernel="dw_strided"``), every code on both
    archs."""
    model, xf, acc, mults, zo = _dw_strided_model(np.random.default_rng(40 + seed))
    y = qnn_session(model, arch).run(None, {"xf": xf})[0]
    codes_sim = np.rint(y.astype(np.float64) / _out_scale(model)).astype(np.int64) + zo
    ours = _spec_codes(arch, acc, mults, zo, kernel="dw_strided")
    tflite = np.clip(np.floor(acc * mults[None, :, None, None] + 0.5) + zo, 0, 255)
    conv = _spec_codes(arch, acc, mults, zo)
    print(f"v{arch} seed {seed}: spec {np.mean(ours == codes_sim):.4%} identical, exact rounding "
          f"{np.mean(tflite == codes_sim):.4%}, the convolution form {np.mean(conv == codes_sim):.4%}")
    np.testing.assert_array_equal(ours, codes_sim)
    assert (conv != codes_sim).any()


def _spec_codes(arch: str, acc: np.ndarray, mults: np.ndarray, zo: int, kernel: str = "conv") -> np.ndarray:
    """The spec's codes of accumulators with channels on axis 1."""
    spec = QnnRequantSpec.of(f"v{arch}", mults, zo, kernel=kernel)
    return np.moveaxis(spec.apply_np(np.moveaxis(acc, 1, -1)), -1, 1)


def _out_scale(model: bytes) -> float:
    import onnx
    from onnx import numpy_helper as nh

    m = onnx.load_from_string(model)
    return float(next(nh.to_array(t) for t in m.graph.initializer if t.name == "so"))


def _fc_model(rng: np.random.Generator, per_channel: bool) -> tuple[bytes, np.ndarray, np.ndarray, np.ndarray, int, float]:
    """A Gemm (FullyConnected) with int8 weights [k, n]: (model, input, exact accumulators, multipliers, zo, so)."""
    from onnx import helper

    rows, k, n = 64, 96, 40
    sx, zx = np.float32(rng.uniform(0.005, 0.05)), int(rng.integers(0, 256))
    sw = rng.uniform(0.002, 0.02, size=n if per_channel else 1).astype(np.float32)
    so, zo = np.float32(rng.uniform(0.05, 0.4)), int(rng.integers(0, 256))
    wq = rng.integers(-127, 128, size=(k, n)).astype(np.int8)
    bq = rng.integers(-4000, 4000, size=n).astype(np.int32)
    xq = rng.integers(0, 256, size=(rows, k)).astype(np.int64)
    model = _qdq_model(helper.make_node("Gemm", ["x", "w", "b"], ["y"]), xq.shape, wq, bq, sx, zx, sw, so, zo,
                       w_axis=1 if per_channel else None, b_axis=0 if per_channel else None)
    acc = (xq - zx) @ wq.astype(np.int64) + bq.astype(np.int64)
    return (model, (sx * (xq.astype(np.float32) - zx)).astype(np.float32), acc,
            float(sx) * sw.astype(np.float64) / float(so), zo, float(so))


@pytest.mark.parametrize("arch", ["68", "73"])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fully_connected_requantization_matches_the_simulator(seed: int, per_channel: bool, arch: str) -> None:
    """The same spec for FullyConnected: v68 every code; v73 all but about 1 in 2500 outputs with per-channel
    weights (off by one: an open question, recorded in docs/htp-fidelity.md)."""
    model, xf, acc, mults, zo, so = _fc_model(np.random.default_rng(seed), per_channel)
    y = qnn_session(model, arch).run(None, {"xf": xf})[0]
    codes = np.rint(y.astype(np.float64) / so).astype(np.int64) + zo
    ours = _spec_codes(arch, acc, mults, zo)
    same = float(np.mean(ours == codes))
    print(f"v{arch} FullyConnected seed {seed} per_channel {per_channel}: spec {same:.4%} identical")
    assert int(np.abs(ours - codes).max()) <= 1
    if arch == "68" or not per_channel:
        assert same == 1.0
    else:
        assert same >= 0.999


# The bias (docs/htp-fidelity.md, "the bias"): the simulator's accumulator is the exact one plus an offset ``d``
# per channel, QNN's own conversion of the int32 bias (spec/qnn_requant.py's qnn_bias: v73 truncates it, v68
# rounds it with the output zero point's share), measured by tests/fidelity/conv_bias_probe.py (every accumulator
# of a range).


def _offsets(arch: str, bias: np.ndarray) -> list[int]:
    from tests.fidelity.conv_bias_probe import offsets

    found = offsets(arch, bias)
    assert all(len(f) == 1 for f in found), f"no single offset explains some channel: {found}"
    return [f[0] for f in found]


def test_v73_bias_offset_is_one_step_toward_zero_at_most() -> None:
    pos = np.arange(64)
    neg = -(np.arange(32) + 1)
    d_pos, d_neg = _offsets("73", pos), _offsets("73", neg)
    assert set(d_pos) == {0, -1} and set(d_neg) == {0, 1}
    assert d_pos[0] == 0  # no bias, no offset: the spec holds


def test_v73_bias_offset_depends_on_the_largest_bias() -> None:
    ar = np.arange(32)
    alone = _offsets("73", ar)
    assert _offsets("73", np.r_[ar, np.zeros(32, np.int64)])[:32] == alone  # more channels: the same
    assert _offsets("73", np.r_[ar, np.full(32, 63)])[:32] != alone  # a larger bias beside them: others


def test_v68_bias_offsets_on_the_probe_are_zero() -> None:
    assert set(_offsets("68", np.r_[np.arange(32), np.full(32, 63)])) == {0}
    assert set(_offsets("68", -(np.arange(32) + 1))) == {0}


def _v68_expected(b: np.ndarray, sw: np.ndarray, zo: int, sb: float | None = None) -> np.ndarray:
    from openqnn.backends.htp.spec.qnn_requant import QnnRequantSpec, qnn_bias
    from tests.fidelity.conv_bias_probe import SO, SX

    real = np.float64(np.float32(SX)) * sw.astype(np.float64) / np.float64(np.float32(SO))
    spec = QnnRequantSpec.of("v68", real, zo)
    return qnn_bias("v68", b, float(SX), sw if sb is None else sw[:1], sb, spec, real) - b


def test_v68_per_channel_bias_is_qnn_bias() -> None:
    """v68: the float32 re-quantized bias (v73's, not truncated) and the output zero point's share ``zo / M``
    rounded together (``M_c`` the largest multiplier times the weight-scale ratio): random biases, weight scales
    over a factor 20, zero points, the largest bias small or beyond 2^30. Established on every one of 6,321
    probe channels (docs/htp-fidelity.md, "The v68 bias ties (stop 25)"), so every channel here."""
    from tests.fidelity.conv_bias_probe import SW, offsets

    rng = np.random.default_rng(68)
    hits = total = 0
    for big, zo in ((None, 110), (1_500_000_000, 200), (-(1 << 30), 37), (2_000_000, 255)):
        b = rng.integers(-3000, 3001, 64)
        sw = (SW * np.exp(rng.uniform(-2.5, 0.5, 64))).astype(np.float32)
        if big is not None:
            b[5] = big
        found = offsets("68", b, sw, zo=zo, reach=8)
        expected = _v68_expected(b, sw, zo)
        measured = [c for c in range(64) if len(found[c]) == 1]  # (clamped or coarse channels: no single offset)
        assert len(measured) >= 16
        hits += sum(found[c] == [expected[c]] for c in measured)
        total += len(measured)
    assert hits == total, (hits, total)


# (zo, weight scale, bias) of six random probe channels whose float32 share fl(zo / fl(M)) (M the float64 ratio)
# is one step away from QNN's, and two whose share is QNN's
_V68_TIES = [(110, 0.0005907978629693389, 1371), (255, 0.00039845917490310967, -649), (200, 6.638230115640908e-05, 2447),
             (200, 0.000264461908955127, 505), (200, 4.739386713481508e-05, -2781), (255, 0.00038300122832879424, -513),
             (128, 0.0006645632674917579, 2787), (200, 0.00010810044477693737, 439)]


def test_v68_bias_ties_take_the_share_of_the_largest_multiplier_times_the_ratio() -> None:
    """v68, one weight scale, 63 biases at fine offsets beside a tie of bias + ``zo / M`` (conv_bias_probe's
    ``tie_biases``): every channel's offset is qnn_bias's, whose share is ``fl(zo / fl(fl(s_x s_w) / s_o))``;
    the float64 ratio's share ``fl(zo / fl(M))`` misses about a third of the channels of the first six."""
    from tests.fidelity.conv_bias_probe import SO, SX, offsets, tie_biases

    f32 = np.float32
    for i, (zo, w, around) in enumerate(_V68_TIES):
        b = tie_biases(w, zo, around)
        sw = np.full(b.size, w, f32)
        found = offsets("68", b, sw, zo=zo, reach=8)
        measured = [c for c in range(1, b.size) if len(found[c]) == 1]
        assert len(measured) >= 30
        expected = _v68_expected(b, sw, zo)
        assert [found[c][0] for c in measured] == [int(expected[c]) for c in measured]
        real = np.float64(f32(SX)) * sw.astype(np.float64) / np.float64(f32(SO))
        spec = QnnRequantSpec.of("v68", real, zo)
        old = np.floor((_bias_f32_of(b, sw) + f32(f32(zo) / real.astype(f32))).astype(f32).astype(np.float64) + 0.5)
        old_d = old.astype(np.int64) - spec.pre - b
        misses = sum(found[c][0] != old_d[c] for c in measured)
        assert (misses >= 10) if i < 6 else (misses == 0), (zo, w, misses)


def _bias_f32_of(b: np.ndarray, sw: np.ndarray) -> np.ndarray:
    from openqnn.backends.htp.spec.qnn_requant import _bias_f32
    from tests.fidelity.conv_bias_probe import SX

    return _bias_f32(b, float(SX), sw, None)


def test_v68_per_tensor_bias_is_qnn_bias() -> None:
    """v68 per-tensor: the bias dequantized with its scale, divided by ``fl(s_x s_w)`` in float32 and rounded
    with the zero point's share, every channel (bias scales on and off the accumulator's)."""
    from tests.fidelity.conv_bias_probe import SW, SX, offsets

    rng = np.random.default_rng(168)
    b = np.r_[rng.integers(-3000, 3001, 63), 1 << 24]
    p = np.float32(SX) * np.float32(SW)
    total = 0
    for sb, zo in ((p, 110), (np.nextafter(p, np.float32(1)), 200), (np.float32(2) * p, 37)):
        sw = np.full(64, SW, np.float32)
        found = offsets("68", b, sw, zo=zo, sb=np.full(64, sb, np.float32), per_tensor=True)
        expected = _v68_expected(b, sw, zo, float(sb))
        measured = [c for c in range(63) if len(found[c]) == 1]  # (clamped channels: no single offset)
        assert [found[c] for c in measured] == [[int(expected[c])] for c in measured]
        total += len(measured)
    assert total >= 96


def test_v73_unit_bias_is_truncated_after_a_float32_reciprocal() -> None:
    """Every channel's bias 1, one weight scale: ``d = -1`` exactly where ``float32(s_x s_w) * float32(1 /
    float32(s_x s_w)) < 1`` (the bias times a float32 reciprocal of its scale, truncated), over consecutive
    float32 weight scales."""
    from tests.fidelity.conv_bias_probe import SW, SX, offsets

    sw = np.float32(SW)
    for _ in range(12):
        found = offsets("73", np.ones(4, np.int64), np.full(4, sw, np.float32))
        p = np.float32(SX) * sw
        expected = -1 if float(p * (np.float32(1) / p)) < 1.0 else 0
        assert found == [[expected]] * 4, (float(sw), found)
        sw = np.nextafter(sw, np.float32(1))


def test_v73_per_channel_bias_is_qnn_bias() -> None:
    """Random biases of both signs and per-channel weight scales over a factor 20, the largest bias small or
    near 2^31: every channel's offset is ``qnn_bias(b) - b`` (0 or one step toward zero, and up to 4 steps
    beside a bias of 2^30 or more)."""
    from openqnn.backends.htp.spec.qnn_requant import qnn_bias
    from tests.fidelity.conv_bias_probe import SW, SX, offsets

    rng = np.random.default_rng(7)
    for big in (None, 1_500_000_000, -(1 << 30)):
        b = rng.integers(-3000, 3001, 64)
        sw = (SW * np.exp(rng.uniform(-1.5, 1.5, 64))).astype(np.float32)
        if big is not None:
            b[5] = big
        found = offsets("73", b, sw, reach=8)
        expected = qnn_bias("v73", b, float(SX), sw) - b
        measured = [c for c in range(64) if len(found[c]) == 1]
        assert len(measured) >= 63  # the largest bias's channel saturates
        assert all(found[c] == [expected[c]] for c in measured), [(c, found[c], expected[c]) for c in measured
                                                                  if found[c] != [expected[c]]]


def test_v73_per_tensor_bias_is_qnn_bias() -> None:
    """Per-tensor weights and bias: the bias dequantized with its own scale and divided by ``fl(s_x s_w)`` in
    float32, truncated (no dependence on the largest bias; a bias scale one float32 step off moves it)."""
    from openqnn.backends.htp.spec.qnn_requant import qnn_bias
    from tests.fidelity.conv_bias_probe import SW, SX, offsets

    b = np.r_[np.arange(1, 64) * 7 + 3, 1 << 20]
    p = np.float32(SX) * np.float32(SW)
    for sb in (p, np.nextafter(p, np.float32(1)), np.nextafter(p, np.float32(0))):
        found = offsets("73", b, sb=np.full(64, sb, np.float32), per_tensor=True)
        expected = qnn_bias("v73", b, float(SX), np.array([SW], np.float32), float(sb)) - b
        assert [f for f in found[:63]] == [[int(e)] for e in expected[:63]]


@pytest.mark.parametrize("m", [0.07, 4e-4, 3e-5])
def test_conv16_v73_matches_simulator(m: float) -> None:
    """W8A16 convolutions on v73 (spec/qnn_conv16.py): two uint16 input channels, random int8 weights and biases,
    input zero point 12345: every code (probe: 100% at these multipliers, 99.968% at 0.0023)."""
    from openqnn.backends.htp.spec.qnn_conv16 import conv16_v73
    from openqnn.backends.htp.spec.qnn_requant import qnn_bias
    from tests.fidelity.conv16_probe import N, run

    if simulator_missing():
        pytest.skip(simulator_missing() or "")
    rng = np.random.default_rng(7)
    zx, zo, sx, sw = 12345, 700, 0.001, 0.01
    xs = np.stack([np.arange(N) * 7 % 65536, rng.integers(0, 65536, N)])
    w = rng.integers(-127, 128, (8, 2))
    w[:, 0] = np.abs(w[:, 0]) | 1
    wmax = max(1, int(min(127, 60000 / m / 65536 / 2)))  # outputs within 16 bits
    w = np.clip(w, -wmax, wmax)
    bias = rng.integers(-300000, 300000, 8)
    p = run("73", xs, zx, w, bias, sx, [sw] * 8, sx * sw / m, zo)
    qb = qnn_bias("v73", bias, np.float32(sx), np.full(8, sw, np.float32))
    out = conv16_v73((w @ (xs >> 8)).T, (w @ (xs & 255)).T, w.sum(1), qb, zx, p.real, zo)
    assert np.array_equal(out, p.codes.T)
