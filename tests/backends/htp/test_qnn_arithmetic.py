"""htp_config.arithmetic = "qnn": QNN's requantization (spec/qnn_requant.py) for convolutions, TransposeConv2d
and FullyConnected with 8-bit codes on v68 and v73. The fast path equals the spec on every kernel kind, a
context keeps the arithmetic, and ops or encodings the spec does not cover keep TFLite's. (Against QNN's
simulator itself: tests/fidelity/test_qnn_requant.py and test_fidelity.py.)"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from test_conv_linear import BUILDERS, Case, _conv_attrs, conv_impl  # noqa: F401  (the fixture)

from openqnn.backends.htp.arch import ARCHS
from openqnn.backends.htp.config import HtpConfig
from openqnn.backends.htp.kernels import HTP_KERNELS
from openqnn.backends.htp.kernels.registry import HtpBuildContext, bind_step
from openqnn.backends.htp.kernels.requant import QnnConv16Requant, QnnRequant, Requant
from openqnn.backends.htp.spec.qnn_conv16 import Conv16Spec, conv16_spec_for, conv16_v68, conv16_v73
from openqnn.backends.htp.spec.qnn_eltwise import QnnAddSpec
from openqnn.backends.htp.spec.qnn_requant import QnnRequantSpec, TensorConsts
from openqnn.backends.plan import StepPlan
from openqnn.errors import InvalidConfigError

V68, V73 = ARCHS["v68"], ARCHS["v73"]
A8 = {"xbw": 8, "obw": 8, "wbw": 8, "w_sym": True}


def _conv_case(rng: np.random.Generator, per_channel: bool) -> Case:
    k = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    cin, cout = int(rng.integers(1, 9)), int(rng.integers(1, 9))
    xshape = (1, int(rng.integers(k[0] * 2, 12)), int(rng.integers(k[1] * 2, 12)), cin)
    return Case("Conv2d", [xshape], {**_conv_attrs(rng, k), "group": 1}, rng, weight=rng.normal(size=(*k, cin, cout)),
                w_axis=3 if per_channel else None, bias=str(rng.choice(["acc", "float", "none"])), **A8)


@pytest.mark.parametrize("arch", [V68, V73], ids=["v68", "v73"])
@pytest.mark.parametrize("seed", range(6))
def test_conv2d_fast_equals_the_qnn_spec(seed: int, arch, conv_impl: str) -> None:  # noqa: F811
    rng = np.random.default_rng(900 + seed)
    case = _conv_case(rng, per_channel=bool(seed % 2))
    step = BUILDERS["Conv2d"](case.graph.nodes[0], HtpBuildContext(case.graph, arch, arithmetic="qnn"))
    assert step.plan is not None and step.plan.attrs["rq"]["arith"] == "qnn"  # the spec, not TFLite's, is checked
    qnn = case.check(arch, arithmetic="qnn")
    tflite = case.check(arch)
    assert np.abs(qnn - tflite).max() <= 1  # the two arithmetics differ by at most a code


@pytest.mark.parametrize("arch", [V68, V73], ids=["v68", "v73"])
@pytest.mark.parametrize("seed", range(4))
def test_fully_connected_fast_equals_the_qnn_spec(seed: int, arch) -> None:
    rng = np.random.default_rng(950 + seed)
    k, units = int(rng.integers(1, 60)), int(rng.integers(1, 20))
    case = Case("FullyConnected", [(int(rng.integers(1, 6)), k)], {"keep_dims": True}, rng,
                weight=rng.normal(size=(units, k)), w_axis=0 if seed % 2 else None, bias="acc", **A8)
    step = BUILDERS["FullyConnected"](case.graph.nodes[0], HtpBuildContext(case.graph, arch, arithmetic="qnn"))
    assert step.plan is not None and step.plan.attrs["rq"]["arith"] == "qnn"
    case.check(arch, arithmetic="qnn")
    case.check(arch, mode="float64", arithmetic="qnn")


def test_the_requantization_is_qnns_only_where_established() -> None:
    rng = np.random.default_rng(3)
    node_of = lambda case: case.graph.nodes[0]  # noqa: E731
    conv = _conv_case(rng, per_channel=True)
    step = BUILDERS["Conv2d"](node_of(conv), HtpBuildContext(conv.graph, V68, arithmetic="qnn"))
    assert step.plan is not None and step.plan.attrs["rq"]["arith"] == "qnn"
    for arch in (ARCHS["v69"], ARCHS["v75"]):  # not established: TFLite's
        step = BUILDERS["Conv2d"](node_of(conv), HtpBuildContext(conv.graph, arch, arithmetic="qnn"))
        assert "arith" not in step.plan.attrs["rq"]
    wide = Case("Conv2d", [(1, 6, 6, 3)], {**_conv_attrs(rng, (3, 3)), "group": 1}, rng,
                weight=rng.normal(size=(3, 3, 3, 4)), w_axis=None, bias="acc", xbw=16, obw=16, wbw=16, w_sym=True)
    step = BUILDERS["Conv2d"](node_of(wide), HtpBuildContext(wide.graph, V73, arithmetic="qnn"))
    assert "arith" not in step.plan.attrs["rq"]  # W16A16: not probed (W8A16: test_w8a16_spec_where_established_only)
    with pytest.raises(InvalidConfigError, match="arithmetic"):
        HtpConfig(arithmetic="exact")


def test_a_plan_keeps_the_qnn_arithmetic() -> None:
    rng = np.random.default_rng(5)
    case = _conv_case(rng, per_channel=True)
    node = case.graph.nodes[0]
    step = BUILDERS["Conv2d"](node, HtpBuildContext(case.graph, V68, arithmetic="qnn"))
    plan = step.plan
    back = StepPlan.from_json(json.loads(json.dumps(plan.to_json(), allow_nan=False)), plan.stored_arrays())
    rebound = bind_step(back)
    ins = [case.q[n] for n in step.inputs]
    x = [torch.from_numpy(q).to(torch.uint8) for q in ins]
    np.testing.assert_array_equal(rebound.fast(*x).numpy(), step.fast(*x).numpy())
    np.testing.assert_array_equal(np.asarray(rebound.reference(*ins)), np.asarray(step.reference(*ins)))
    assert isinstance(Requant.from_attrs(back.attrs["rq"], torch.device("cpu")), QnnRequant)


@pytest.mark.parametrize("arch", ["v68", "v73"])
def test_spec_numpy_and_torch_agree_on_extreme_accumulators(arch: str) -> None:
    rng = np.random.default_rng(11)
    real = np.exp(rng.uniform(np.log(1e-5), np.log(0.99), size=9))
    spec = QnnRequantSpec.of(arch, real, int(rng.integers(0, 256)))
    acc = np.concatenate([rng.integers(-2**31, 2**31, size=(200, 9)), np.full((1, 9), -2**31), np.full((1, 9), 2**31 - 1)])
    got = spec.apply_t(torch.from_numpy(acc), TensorConsts.of(spec, torch.device("cpu"))).numpy()
    np.testing.assert_array_equal(got, spec.apply_np(acc))



@pytest.mark.parametrize("arch", [V68, V73], ids=["v68", "v73"])
@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_takes_its_qnn_spec_by_stride(stride: int, arch) -> None:
    rng = np.random.default_rng(21)
    c = 6
    attrs = {"stride": [stride, stride], "pad_amount": [[1, 1], [1, 1]], "dilation": [1, 1]}
    case = Case("DepthWiseConv2d", [(1, 9, 9, c)], attrs, rng, weight=rng.normal(size=(3, 3, 1, c)), w_axis=3,
                bias="acc", **A8)
    step = BUILDERS["DepthWiseConv2d"](case.graph.nodes[0], HtpBuildContext(case.graph, arch, arithmetic="qnn"))
    rq = step.plan.attrs["rq"]
    assert rq["arith"] == "qnn" and rq["kernel"] == ("conv" if stride == 1 else "dw_strided")
    plan = StepPlan.from_json(json.loads(json.dumps(step.plan.to_json(), allow_nan=False)), step.plan.stored_arrays())
    back = Requant.from_attrs(plan.attrs["rq"], torch.device("cpu"))
    assert isinstance(back, QnnRequant) and back.spec.kernel == rq["kernel"]
    assert back.spec.post == (rq["zo"] if stride == 1 and arch is V73 else 0)
    ins = [case.q[n] for n in step.inputs]
    np.testing.assert_array_equal(np.asarray(bind_step(plan).reference(*ins)), np.asarray(step.reference(*ins)))
    case.check(arch, arithmetic="qnn")


def test_strided_depthwise_spec_is_a_rounded_15_bit_multiplier() -> None:
    from openqnn.backends.htp.spec.qnn_requant import qnn_bias

    # the simulator's codes (MobileNetV2 64x64, features.2's stride-2 depthwise convolution, v68 and v73 alike):
    # (M, accumulator with its bias, code); exact rounding gives 229, 253, 31, 203
    seen = [(0.000845405813650713, 270285, 228), (0.0006972371374490097, 362144, 252),
            (0.0010249485573148723, 30733, 32), (0.0009729676939013214, 208127, 202)]
    for arch in ("v68", "v73"):
        spec = QnnRequantSpec.of(arch, np.array([m for m, _, _ in seen]), 0, kernel="dw_strided")
        assert (spec.mult >= 1 << 14).all() and (spec.mult < 1 << 15).all() and not spec.shift.any()
        np.testing.assert_array_equal(spec.apply_np(np.array([a for _, a, _ in seen])), [c for _, _, c in seen])
        # the output zero point folded into the accumulator first (random stride-2 convolutions on the simulator)
        z = QnnRequantSpec.of(arch, np.array([0.01]), 37, kernel="dw_strided")
        assert z.post == 0 and z.pre.tolist() == [3700] and z.apply_np(np.array([0, 50, -3700])).tolist() == [37, 38, 0]
        # the bias is added as given
        b = np.array([1, -3, 270000])
        np.testing.assert_array_equal(qnn_bias(arch, b, 0.01, np.array([0.003, 0.002, 0.001]), None, spec, spec.mult), b)


# -- W8A16 convolutions, v73 (spec/qnn_conv16.py) -------------------------------------------------

A16 = {"xbw": 16, "obw": 16, "wbw": 8, "w_sym": True}


def _a16_case(op: str, seed: int) -> Case:
    """A random W8A16 op: padded, strided, dilated and grouped convolutions, stride-1 depthwise ones, transposed
    ones (strides, pads, output padding, groups), FullyConnected; per-tensor and per-channel weights."""
    rng = np.random.default_rng([16, seed, len(op)])
    pc = bool(seed % 2)
    bias = str(rng.choice(["acc", "float", "none"]))
    if op == "Conv2d":
        k = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        group = int(rng.choice([1, 1, 2]))
        cin, cout = group * int(rng.integers(1, 5)), group * int(rng.integers(1, 5))
        xshape = (int(rng.integers(1, 3)), int(rng.integers(k[0] * 2, 11)), int(rng.integers(k[1] * 2, 11)), cin)
        return Case(op, [xshape], {**_conv_attrs(rng, k), "group": group}, rng,
                    weight=rng.normal(size=(*k, cin // group, cout)), w_axis=3 if pc else None, bias=bias, **A16)
    if op == "DepthWiseConv2d":
        c, k = int(rng.integers(1, 7)), int(rng.integers(1, 4))
        attrs = {"stride": [1, 1], "pad_amount": [[int(rng.integers(0, k))] * 2] * 2,
                 "dilation": [int(rng.integers(1, 3))] * 2}
        return Case(op, [(1, 9, 8, c)], attrs, rng, weight=rng.normal(size=(k, k, 1, c)), w_axis=3 if pc else None,
                    bias=bias, **A16)
    if op == "TransposeConv2d":
        kh, kw = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        group = int(rng.choice([1, 1, 2]))
        cin, cout_g = group * int(rng.integers(1, 4)), int(rng.integers(1, 4))
        stride = [int(rng.integers(1, 4)), int(rng.integers(1, 4))]
        dil = [int(rng.integers(1, 3)), int(rng.integers(1, 3))]
        pads = [[int(rng.integers(0, kh)), int(rng.integers(0, kh))],
                [int(rng.integers(0, kw)), int(rng.integers(0, kw))]]
        outpad = [int(rng.integers(0, max(stride[0], dil[0]))), int(rng.integers(0, max(stride[1], dil[1])))]
        attrs = {"stride": stride, "dilation": dil, "pad_amount": pads, "output_padding": outpad, "group": group}
        xshape = (int(rng.integers(1, 3)), int(rng.integers(2, 7)), int(rng.integers(2, 7)), cin)
        return Case(op, [xshape], attrs, rng, weight=rng.normal(size=(kh, kw, cin, cout_g)),
                    w_axis=3 if pc else None, bias=bias, **A16)
    k, units = int(rng.integers(1, 60)), int(rng.integers(1, 20))
    return Case(op, [(int(rng.integers(1, 6)), k)], {"keep_dims": True}, rng, weight=rng.normal(size=(units, k)),
                w_axis=0 if pc else None, bias=bias, **A16)


@pytest.mark.parametrize("arch", [V68, V73], ids=["v68", "v73"])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("op", ["Conv2d", "DepthWiseConv2d", "TransposeConv2d", "FullyConnected"])
def test_w8a16_fast_equals_the_qnn16_spec(op: str, seed: int, arch, conv_impl: str) -> None:  # noqa: F811
    """Every kernel kind (the float convolutions, the int8 GEMMs, float64 GEMMs) gives the spec's bits; the
    spec is near the float simulation (v73's floors lean low, about 3 codes at most measured; v68's 11-bit
    multiplier, with the output zero point folded in, moves codes by up to ``zo * 2^-11``)."""
    case = _a16_case(op, seed)
    step = BUILDERS[op](case.graph.nodes[0], HtpBuildContext(case.graph, arch, arithmetic="qnn"))
    assert step.plan is not None and step.plan.attrs["rq"]["arith"] == "qnn16"
    assert step.plan.attrs["rq"]["arch"] == arch.name
    steps = 4.0 if arch is V73 else 4.0 + 65535 * 2.0**-11
    case.check(arch, arithmetic="qnn", steps=steps)
    case.check(arch, mode="float64", arithmetic="qnn", steps=steps)


def test_tconv_tap_sums_count_the_lattice_taps() -> None:
    """conv.tconv_tap_sums (closed form, periodic in the stride) equals the transposed convolution of an input of
    ones extended beyond every edge far enough that each output's lattice taps all land on it."""
    from openqnn.backends.htp.kernels.conv import _Geo, tconv_acc_np, tconv_tap_sums

    rng = np.random.default_rng(25)
    checked = 0
    while checked < 60:
        kh, kw = (int(v) for v in rng.integers(1, 6, size=2))
        groups = int(rng.choice([1, 2, 3]))
        cin, cout_g = groups * int(rng.integers(1, 4)), int(rng.integers(1, 4))
        sh, sw, dh, dw = (int(v) for v in rng.integers(1, 4, size=4))
        h, w = (int(v) for v in rng.integers(1, 7, size=2))
        pt, pb, pl, pr = (int(rng.integers(0, kh)), int(rng.integers(0, kh)), int(rng.integers(0, kw)),
                          int(rng.integers(0, kw)))
        oh = (h - 1) * sh + dh * (kh - 1) + 1 - pt - pb + int(rng.integers(0, max(sh, dh)))
        ow = (w - 1) * sw + dw * (kw - 1) + 1 - pl - pr + int(rng.integers(0, max(sw, dw)))
        if oh < 1 or ow < 1:
            continue
        g = _Geo.of({"n": 1, "h": h, "w": w, "c": cin, "kh": kh, "kw": kw, "sh": sh, "sw": sw, "dh": dh, "dw": dw,
                     "pt": pt, "pb": pb, "pl": pl, "pr": pr, "oh": oh, "ow": ow, "cout": groups * cout_g})
        wc = rng.integers(-128, 128, size=(kh, kw, cin, cout_g))
        eh, ew = kh * dh + 1, kw * dw + 1
        big = _Geo.of({**g.to_attrs(), "h": h + 2 * eh, "w": w + 2 * ew, "pt": pt + eh * sh, "pl": pl + ew * sw})
        ones = tconv_acc_np(np.ones((1, big.h, big.w, cin), dtype=np.int64), wc, big, groups)[0]
        np.testing.assert_array_equal(tconv_tap_sums(wc, g, groups), ones)
        checked += 1


def test_w8a16_spec_where_established_only() -> None:
    """v68 and v73 W8A16 take spec/qnn_conv16.py, a strided depthwise convolution its own (spec/qnn_requant.py's
    "dw_strided"); other archs, 8-bit outputs, 16-bit weights and arithmetic "tflite" keep TFLite's; a plan keeps
    the spec."""
    rng = np.random.default_rng(16)
    attrs = {"stride": [1, 1], "pad_amount": [[1, 1], [1, 1]], "dilation": [1, 1]}

    def rq_of(case: Case, arch=V73, arithmetic: str = "qnn") -> dict:
        step = BUILDERS[case.graph.nodes[0].op_type](case.graph.nodes[0],
                                                      HtpBuildContext(case.graph, arch, arithmetic=arithmetic))
        return step.plan.attrs["rq"]

    conv = Case("Conv2d", [(1, 6, 6, 3)], {**attrs, "group": 1}, rng, weight=rng.normal(size=(3, 3, 3, 4)),
                w_axis=3, bias="acc", **A16)
    assert rq_of(conv)["arith"] == "qnn16" and rq_of(conv, V68)["arith"] == "qnn16"
    assert "arith" not in rq_of(conv, ARCHS["v69"]) and "arith" not in rq_of(conv, ARCHS["v75"])
    assert "arith" not in rq_of(conv, arithmetic="tflite")
    out8 = Case("Conv2d", [(1, 6, 6, 3)], {**attrs, "group": 1}, rng, weight=rng.normal(size=(3, 3, 3, 4)),
                w_axis=3, bias="acc", **{**A16, "obw": 8})
    w16 = Case("Conv2d", [(1, 6, 6, 3)], {**attrs, "group": 1}, rng, weight=rng.normal(size=(3, 3, 3, 4)),
               w_axis=3, bias="acc", **{**A16, "wbw": 16})
    strided = Case("DepthWiseConv2d", [(1, 9, 9, 4)], {**attrs, "stride": [2, 2]}, rng,
                   weight=rng.normal(size=(3, 3, 1, 4)), w_axis=3, bias="acc", **A16)
    for other in (out8, w16):
        assert "arith" not in rq_of(other)
    # a strided depthwise convolution: its 8-bit form (the exact accumulator, the zero point folded in, a 15-bit
    # multiplier) also with 16-bit codes (the fidelity cases: per-tensor 100%, per-channel 99.57%, v68 = v73)
    for arch in (V68, V73):
        rq = rq_of(strided, arch)
        assert rq["arith"] == "qnn" and rq["kernel"] == "dw_strided" and rq["bits"] == 16
        strided.check(arch, arithmetic="qnn", steps=4.0)
        strided.check(arch, mode="float64", arithmetic="qnn", steps=4.0)
    step = BUILDERS["Conv2d"](conv.graph.nodes[0], HtpBuildContext(conv.graph, V73, arithmetic="qnn"))
    plan = StepPlan.from_json(json.loads(json.dumps(step.plan.to_json(), allow_nan=False)), step.plan.stored_arrays())
    assert isinstance(Requant.from_attrs(plan.attrs["rq"], torch.device("cpu")), QnnConv16Requant)
    rebound = bind_step(plan)
    ins = [conv.q[n] for n in step.inputs]
    x = [torch.from_numpy(q).to(torch.int32) for q in ins]
    np.testing.assert_array_equal(rebound.fast(*x).numpy(), step.fast(*x).numpy())
    np.testing.assert_array_equal(np.asarray(rebound.reference(*ins)), np.asarray(step.reference(*ins)))


def test_conv16_spec_constants_equal_the_documented_rule() -> None:
    """Conv16Spec (the kernels' form: offsets, numpy and PyTorch) gives conv16_v73's codes, the rule as the probe
    established it, on random byte sums, biases of both signs, zero points and multipliers."""
    rng = np.random.default_rng(160)
    for _ in range(20):
        ch = int(rng.integers(1, 9))
        real = np.exp(rng.uniform(np.log(2e-6), np.log(60.0), size=ch))
        zx, zo = int(rng.integers(0, 65536)), int(rng.integers(0, 65536))
        w_sum = rng.integers(-3000, 3000, size=ch)
        qb = rng.integers(-(2**31), 2**31, size=ch) >> int(rng.integers(0, 24))
        xh = rng.integers(-(2**22), 2**22, size=(300, ch))
        xl = rng.integers(-(2**22), 2**22, size=(300, ch))
        want = conv16_v73(xh, xl, w_sum, qb, zx, real, zo)
        spec = Conv16Spec.of(real, zo)
        # the kernels' plane sums: the bytes less some constant per plane (here 128, as the int8 GEMMs)
        hoff, loff = spec.offsets(w_sum, qb, zx, 128 * w_sum, 128 * w_sum)
        th, tl = xh - 128 * w_sum, xl - 128 * w_sum
        np.testing.assert_array_equal(spec.apply_np(th, tl, hoff, loff), want)
        consts = [torch.from_numpy(np.array(v, dtype=np.int64)) for v in (hoff, loff, spec.mult, spec.shift)]
        got = spec.apply_t(torch.from_numpy(th).to(torch.int32), torch.from_numpy(tl).to(torch.int32), *consts)
        assert got.dtype == torch.int32
        np.testing.assert_array_equal(got.numpy(), want)
        # v68: the bias already holds the output zero point's share (Conv16Spec.bias)
        real68 = real[real * 256 < 1000]
        if real68.size:
            sel = real * 256 < 1000
            spec = Conv16Spec.of(real68, zo, "v68")
            hoff, loff = spec.offsets(w_sum[sel], qb[sel], zx, 0, 0)
            np.testing.assert_array_equal(spec.apply_np(xh[:, sel], xl[:, sel], hoff, loff),
                                          conv16_v68(xh[:, sel], xl[:, sel], w_sum[sel], qb[sel], zx, real68))
    assert (Conv16Spec.of(np.array([1e-6, 0.3, 100.0]), 0).mult < 1 << 24).all()
    assert (Conv16Spec.of(np.array([1e-6, 0.3, 3.0]), 0, "v68").mult < 1 << 11).all()
    assert conv16_spec_for("v73", "qnn", np.array([200.0]), 0, 16, 8, 16) is None  # M * 256 >= 2^15: not covered
    assert conv16_spec_for("v68", "qnn", np.array([5.0]), 0, 16, 8, 16) is None  # M * 256 >= 2^10: not covered
    assert conv16_spec_for("v69", "qnn", np.array([0.01]), 0, 16, 8, 16) is None


@pytest.mark.parametrize("arch", ["v68", "v73"])
def test_conv16_spec_reproduces_simulator_codes(arch: str) -> None:
    """A probe's measured codes (tests/fidelity/conv16_probe.py's run: a 1x1 convolution of one uint16 input
    channel, zero point 12345, weights 1 and -17, no bias, ``M = 0.3`` from float32 scales, output zero point
    30000): the code steps every 256 input codes (the low byte's product floored away), and v68 sits 43 codes
    below v73 at the zero point (its 11-bit multiplier times the folded zero point's share)."""
    real, zx, zo = np.array([0.3000000219326471] * 2), 12345, 30000
    x = np.array([8249, 8448, 8449, 12288, 12289, 12543, 12544, 16440])
    seen = {"v68": [(28728, 50850), (28805, 49851), (28805, 49775), (29957, 30264), (29957, 30187), (29957, 28958),
                    (30034, 28958), (31186, 9064)],
            "v73": [(28771, 50890), (28848, 49891), (28848, 49814), (30000, 30307), (30000, 30230), (30000, 29002),
                    (30077, 29002), (31229, 9110)]}
    w = np.array([1, -17])
    spec = Conv16Spec.of(real, zo, arch)
    qb = spec.bias(np.zeros(2, dtype=np.int64), 1e-3, np.array([0.05]), None, real)
    hoff, loff = spec.offsets(w, qb, zx, 0, 0)
    codes = spec.apply_np((x >> 8)[:, None] * w, (x & 255)[:, None] * w, hoff, loff)
    np.testing.assert_array_equal(codes, np.array(seen[arch]))


# -- ReduceMean / ReduceSum (spec/qnn_reduce.py) --------------------------------------------------

def _reduce_graph(rng: np.random.Generator, op: str, shape: tuple[int, ...], axes: list[int], bits: int = 8):
    from test_pool_movement import In, near, one_node, rand_enc

    e = rand_enc(rng, bits)
    out = rand_enc(rng, bits, e.scale[0] * float(np.prod([shape[a] for a in axes])) ** 0.5) if op == "ReduceSum" \
        else near(rng, e)
    return one_node(op, [In(shape, e)], {"axes": axes, "keep_dims": bool(rng.integers(0, 2))}, [out])


def _run_both(g, arch, arithmetic: str) -> tuple[np.ndarray, np.ndarray, StepPlan]:
    from openqnn.backends.htp.kernels import HTP_KERNELS

    rng = np.random.default_rng(1)
    node = g.nodes[0]
    step = HTP_KERNELS[node.op_type](node, HtpBuildContext(g, arch, arithmetic=arithmetic))
    x = g.tensors[node.inputs[0]]
    q = rng.integers(0, 1 << x.encoding.bitwidth, size=x.shape, dtype=np.int64)
    t = torch.from_numpy(q).to(torch.uint8 if x.encoding.bitwidth == 8 else torch.int32)
    return np.asarray(step.reference(q)), step.fast(t).numpy().astype(np.int64), step.plan


@pytest.mark.parametrize("arch", [V68, V73], ids=["v68", "v73"])
@pytest.mark.parametrize("op", ["ReduceMean", "ReduceSum"])
def test_reduce_fast_equals_the_qnn_spec(op: str, arch) -> None:
    rng = np.random.default_rng(77 if op == "ReduceMean" else 78)
    for i in range(8):
        rank = int(rng.integers(2, 5))
        shape = tuple(int(rng.integers(1, 9)) for _ in range(rank))
        axes = [[1, 2], [rank - 1], [0, rank - 1]][i % 3] if rank > 2 else [1]
        g = _reduce_graph(rng, op, shape, axes)
        ref, fast, plan = _run_both(g, arch, "qnn")
        assert plan.attrs["qnn"] is not None  # the spec, not TFLite's, is what was checked
        np.testing.assert_array_equal(ref, fast)
        tfl, _, tplan = _run_both(g, arch, "tflite")
        assert tplan.attrs["qnn"] is None and np.abs(ref - tfl).max() <= 1


def test_reduce_spec_is_a_floored_15_bit_multiplier() -> None:
    from openqnn.backends.htp.spec.qnn_reduce import QnnMeanSpec, mean_spec_for

    spec = QnnMeanSpec.of(0.0812262, 13)
    assert 1 << 14 <= spec.mult < 1 << 15 and spec.mult == int(0.0812262 * 2 ** spec.k)
    # the simulator's codes (reduce_probe.py, n = 49, z_out = 13): S * M = 38.50122 gives 38 (exact: 39)
    assert spec.apply_np(np.array([474, 0, -13])).tolist() == [13 + 38, 13, 12]
    s = np.arange(-3000, 3000)
    np.testing.assert_array_equal(spec.apply_t(torch.from_numpy(s)).numpy(), spec.apply_np(s))
    assert mean_spec_for("v75", "qnn", 0.1, 0, 8, 8) is None and mean_spec_for("v68", "qnn", 0.1, 0, 8, 16) is None
    assert mean_spec_for("v68", "tflite", 0.1, 0, 8, 8) is None


def test_reduce_mean_over_axes_1_2_of_4d_rounds_its_multiplier() -> None:
    from openqnn.backends.htp.spec.qnn_reduce import QnnMeanSpec

    # the simulator's codes (MobileNetV2 64x64's [1, 2, 2, 1280] mean, reduce_probe.py --nhwc): S -> code
    m = float(np.float32(0.0008843347722408818)) / float(np.float32(0.0008811780050689098)) / 4
    near, floor = QnnMeanSpec.of(m, 0, nearest=True), QnnMeanSpec.of(m, 0)
    assert near.mult == floor.mult + 1
    assert near.apply_np(np.array([281, 556, 560])).tolist() == [71, 140, 141]
    assert floor.apply_np(np.array([281, 556, 560])).tolist() == [70, 139, 140]
    for shape, axes, nearest in [((1, 2, 2, 12), [1, 2], True), ((1, 12, 2, 2), [2, 3], False),
                                 ((2, 3, 12), [1, 2], False)]:
        g = _reduce_graph(np.random.default_rng(5), "ReduceMean", shape, axes)
        _, _, plan = _run_both(g, V68, "qnn")
        ratio = plan.attrs["ratio"] / plan.attrs["count"]
        assert plan.attrs["qnn"]["mult"] == QnnMeanSpec.of(ratio, 0, nearest=nearest).mult


def test_reduce_16_bit_spec_reproduces_simulator_codes() -> None:
    """The 16-bit forms on sums the simulator answered (v73 = v68; docs/htp-fidelity.md, "16-bit pools,
    reductions and element-wise ops"): S -> code."""
    from openqnn.backends.htp.spec.qnn_reduce import QnnMeanSpec, mean_spec_for

    # ReduceSum, M = 0.011 (M 2^21 = 23068.67: QNN's multiplier is 23068, the shrunk rounding; round(M 2^21)
    # is 23069), z_out 55601, the constant 2^k: floor(S m / 2^k) + 1
    m = float(np.float32(0.00011028415187315278)) / float(np.float32(0.010025831988468436))
    spec = mean_spec_for("v73", "qnn", m, 55601, 16, 16)
    assert spec == QnnMeanSpec.of16(m, 55601, 1, False) and spec.mult == 23068 and spec.one
    # the simulator's codes (t2 probe, v73 = v68); exact rounding gives each but the last one lower, the
    # multiplier 23069 the first four, round half up the 2nd, 4th, 5th and 6th one lower
    sums, seen = [-1852258, -1851554, -1851461, -1848113, 2637], [35227, 35235, 35236, 35273, 55631]
    assert spec.apply_np(np.array(sums)).tolist() == seen
    assert QnnMeanSpec(23069, spec.k, 55601, 65535, True).apply_np(np.array(sums)).tolist() != seen
    assert QnnMeanSpec(23068, spec.k, 55601, 65535, False).apply_np(np.array(sums)).tolist() != seen
    assert mean_spec_for("v73", "qnn", 0.7, 0, 16, 16) is None  # M >= 0.5: another form, not probed
    assert mean_spec_for("v73", "qnn", 0.01, 0, 16, 16, signed=True) is None
    assert mean_spec_for("v75", "qnn", 0.01, 0, 16, 16) is None
    # the pool form (a mean over axes 1 and 2): round half up while e + bitlen(n) >= -2, else the constant 2^k
    # (measured: n = 64 rounds half up at e = -9, adds 2^k at e = -10; n = 63 adds 2^k at e = -9)
    assert not QnnMeanSpec.of16(2.0 ** -9 * 1.5, 0, 64, True).one and QnnMeanSpec.of16(2.0 ** -10 * 1.5, 0, 64, True).one
    assert QnnMeanSpec.of16(2.0 ** -9 * 1.5, 0, 63, True).one and not QnnMeanSpec.of16(2.0 ** -8 * 1.5, 0, 63, True).one
    # a pool's input over 3 MiB (channels padded to 32): a 24-bit multiplier, round half up
    big = mean_spec_for("v68", "qnn", 2.0 ** -15 * 1.5, 0, 16, 16, nearest=True, count=3136, padded_bytes=3211264)
    small = mean_spec_for("v68", "qnn", 2.0 ** -15 * 1.5, 0, 16, 16, nearest=True, count=3136, padded_bytes=3010560)
    assert big is not None and small is not None and big.k == small.k + 9 and not big.one and small.one
    s = np.arange(-300000, 300000, 7)
    for sp in (spec, QnnMeanSpec.of16(0.00123, 30000, 64, True), big):
        np.testing.assert_array_equal(sp.apply_t(torch.from_numpy(s)).numpy(), sp.apply_np(s))


@pytest.mark.parametrize("arch", [V68, V73], ids=["v68", "v73"])
@pytest.mark.parametrize("op", ["ReduceMean", "ReduceSum"])
def test_reduce_16_bit_fast_equals_the_qnn_spec(op: str, arch) -> None:
    from openqnn.backends.htp.spec.qnn_reduce import QnnMeanSpec

    rng = np.random.default_rng(79 if op == "ReduceMean" else 80)
    taken = 0
    for i in range(8):
        shape, axes = [((1, 6, 7, 5), [1, 2]), ((2, 9, 4), [2]), ((1, 5, 3, 8), [2, 3]), ((3, 40), [1])][i % 4]
        g = _reduce_graph(rng, op, shape, axes, bits=16)
        ref, fast, plan = _run_both(g, arch, "qnn")
        taken += plan.attrs["qnn"] is not None
        np.testing.assert_array_equal(ref, fast)
        if plan.attrs["qnn"] is not None:
            n = plan.attrs["count"] if op == "ReduceMean" else 1
            pool = op == "ReduceMean" and axes == [1, 2]
            spec = QnnMeanSpec.of16(plan.attrs["ratio"] / n, plan.attrs["z_out"], plan.attrs["count"], pool)
            assert (plan.attrs["qnn"]["mult"], plan.attrs["qnn"]["one"]) == (spec.mult, spec.one)
    assert taken >= 4


def test_reduce_plan_keeps_the_qnn_arithmetic() -> None:
    g = _reduce_graph(np.random.default_rng(4), "ReduceMean", (2, 7, 9, 5), [1, 2])
    ref, _, plan = _run_both(g, V73, "qnn")
    back = StepPlan.from_json(json.loads(json.dumps(plan.to_json(), allow_nan=False)), plan.stored_arrays())
    q = np.random.default_rng(1).integers(0, 256, size=(2, 7, 9, 5))
    np.testing.assert_array_equal(np.asarray(bind_step(back).reference(q)), ref)


def test_qnn_is_the_default_and_tflite_stays_a_named_mode() -> None:
    assert HtpConfig().arithmetic == "qnn" and HtpConfig(arithmetic="tflite").arithmetic == "tflite"


# -- AveragePool (spec/qnn_pool.py) ----------------------------------------------------------------

def _pool_graph(rng: np.random.Generator, k: list[int], s: list[int], pads: list[list[int]], count_pad: bool,
                bits: int = 8):
    from test_pool_movement import In, near, one_node, rand_enc

    e = rand_enc(rng, bits)
    attrs = {"filter_size": k, "stride": s, "dilation": [1, 1], "pad_amount": pads, "rounding_mode": 0,
             "count_pad_for_edges": count_pad}
    return one_node("PoolAvg2d", [In((2, 9, 11, 5), e)], attrs, [near(rng, e)])


_POOLS = [([3, 3], [1, 1], [[1, 1], [1, 1]], True, "conv"), ([5, 5], [1, 1], [[0, 0], [0, 0]], False, "conv"),
          ([3, 3], [2, 2], [[1, 1], [1, 1]], False, "mean"), ([2, 2], [2, 2], [[0, 0], [0, 0]], False, "mean"),
          ([3, 3], [1, 1], [[1, 1], [1, 1]], False, "mean"), ([3, 2], [1, 1], [[1, 0], [0, 1]], True, "mean")]


@pytest.mark.parametrize("arch", [V68, V73], ids=["v68", "v73"])
@pytest.mark.parametrize("pool", range(len(_POOLS)))
def test_avg_pool_fast_equals_the_qnn_spec(pool: int, arch) -> None:
    from openqnn.backends.htp.spec import qnn_pool

    k, s, pads, count_pad, route = _POOLS[pool]
    rng = np.random.default_rng(40 + pool)
    for _ in range(3):
        g = _pool_graph(rng, k, s, pads, count_pad)
        ref, fast, plan = _run_both(g, arch, "qnn")
        assert plan.attrs["qnn"]["route"] == route
        np.testing.assert_array_equal(ref, fast)
        tfl, _, tplan = _run_both(g, arch, "tflite")
        assert tplan.attrs["qnn"] is None and np.abs(ref - tfl).max() <= 1
    if route == "mean":  # the 15-bit route, by hand on one window: (S * m + 2^(k-1)) >> k, then z_out
        m, sh = qnn_pool.pool_mean_consts(0.1029)
        assert 1 << 14 <= m < 1 << 15 and qnn_pool.pool_mean_np(np.array([-5, 5]), m, sh, 10, 255).tolist() == [9, 11]


@pytest.mark.parametrize("ratio", [0.3, 0.926, 1.37, 1.999, 2.5])
def test_avg_pool_two_stage_rounding_is_two_roundings(ratio: float) -> None:
    """pool_mean_round's one constant equals rounding twice, half up: at 2^-k2 of a code, then to a code."""
    from openqnn.backends.htp.spec import qnn_pool

    s = np.arange(-3000, 3000, dtype=np.int64)
    moved = 0
    for n in (1, 2, 4, 6, 9):
        m, sh = qnn_pool.pool_mean_consts(ratio / n)
        one = qnn_pool.pool_mean_np(s, m, sh, 100, 255, qnn_pool.pool_mean_round(ratio, sh, False))
        assert one.tolist() == qnn_pool.pool_mean_np(s, m, sh, 100, 255).tolist()
        two = qnn_pool.pool_mean_np(s, m, sh, 100, 255, qnn_pool.pool_mean_round(ratio, sh, True))
        if ratio >= 2:
            assert two.tolist() == one.tolist()
            continue
        k2 = min(7, 4 - math.floor(math.log2(ratio)))
        j = sh - k2
        t = (s * m + (1 << (j - 1))) >> j
        assert two.tolist() == np.clip(((t + (1 << (k2 - 1))) >> k2) + 100, 0, 255).tolist()
        assert (two >= one).all()
        moved += int((two != one).sum())
    assert (moved > 0) == (ratio < 2)


def test_avg_pool_plan_keeps_the_qnn_arithmetic() -> None:
    for k, s, pads, count_pad, _ in _POOLS[:3]:
        g = _pool_graph(np.random.default_rng(5), k, s, pads, count_pad)
        ref, _, plan = _run_both(g, V68, "qnn")
        back = StepPlan.from_json(json.loads(json.dumps(plan.to_json(), allow_nan=False)), plan.stored_arrays())
        q = np.random.default_rng(1).integers(0, 256, size=(2, 9, 11, 5))
        np.testing.assert_array_equal(np.asarray(bind_step(back).reference(q)), ref)


_POOLS16 = [([3, 3], [2, 2], [[1, 1], [1, 1]], False, "exact"), ([2, 2], [1, 1], [[0, 0], [0, 0]], False, "exact"),
            ([3, 2], [1, 1], [[0, 0], [0, 0]], True, "exact"), ([2, 2], [2, 2], [[0, 0], [0, 0]], False, "mean"),
            ([2, 2], [2, 2], [[1, 1], [1, 1]], False, "mean"), ([3, 3], [2, 2], [[1, 1], [1, 1]], True, None),
            ([3, 3], [1, 1], [[0, 0], [0, 0]], False, "conv16"), ([5, 5], [1, 1], [[2, 2], [2, 2]], True, "conv16"),
            ([3, 3], [1, 1], [[1, 1], [1, 1]], False, None)]


@pytest.mark.parametrize("arch", [V68, V73], ids=["v68", "v73"])
@pytest.mark.parametrize("pool", range(len(_POOLS16)))
def test_avg_pool_16_bit_fast_equals_the_qnn_spec(pool: int, arch) -> None:
    """uint16 pools: the measured routes (spec/qnn_pool.py route16) in the plan, the fast path equal to the reference,
    the "exact" route equal to exact rounding of S * s_in / (s_out * n) but for values within 2^-31 of a half."""
    from openqnn.backends.htp.spec import qnn_pool

    k, s, pads, count_pad, route = _POOLS16[pool]
    padded = any(a or b for a, b in pads)
    conv = qnn_pool.conv_route(k, s, (1, 1), padded, count_pad)
    assert (qnn_pool.route16(k, s, (1, 1), padded, count_pad) if not conv else "conv16") == route
    rng = np.random.default_rng(60 + pool)
    for _ in range(2):
        g = _pool_graph(rng, k, s, pads, count_pad, bits=16)
        ref, fast, plan = _run_both(g, arch, "qnn")
        np.testing.assert_array_equal(ref, fast)
        assert (plan.attrs["qnn"] is None) == (route is None)
        if route == "conv16":
            assert plan.attrs["qnn"]["route"] == "conv16"
            back = StepPlan.from_json(json.loads(json.dumps(plan.to_json(), allow_nan=False)), plan.stored_arrays())
            q = np.random.default_rng(2).integers(0, 65536, size=(2, 9, 11, 5))
            np.testing.assert_array_equal(np.asarray(bind_step(back).reference(q)),
                                          np.asarray(bind_step(plan).reference(q)))
        if route == "exact":
            m, sh, rnd = qnn_pool.pool16_consts(0.3123, "exact")
            x = np.arange(-40000, 40000, 13, dtype=np.int64)
            exact = np.clip(np.floor(x * 0.3123 + 0.5) + 7, 0, 65535)
            assert np.array_equal(qnn_pool.pool_mean_np(x, np.int64(m), np.int64(sh), 7, 65535, np.int64(rnd)), exact)


def test_avg_pool_takes_the_qnn_spec_only_where_established() -> None:
    from test_pool_movement import In, near, one_node, rand_enc

    rng = np.random.default_rng(9)
    e = rand_enc(rng, 16)
    g = one_node("PoolAvg2d", [In((1, 6, 6, 2), e)], {"filter_size": [3, 3], "stride": [1, 1], "dilation": [1, 1],
                                                     "pad_amount": [[1, 1], [1, 1]], "rounding_mode": 0,
                                                     "count_pad_for_edges": True}, [near(rng, e)])
    assert _run_both(g, V73, "qnn")[2].attrs["qnn"]["route"] == "conv16"  # 16-bit: the W8A16 depthwise route
    assert _run_both(g, ARCHS["v75"], "qnn")[2].attrs["qnn"] is None
    g8 = _pool_graph(rng, [3, 3], [1, 1], [[1, 1], [1, 1]], True)
    assert _run_both(g8, ARCHS["v75"], "qnn")[2].attrs["qnn"] is None


# -- Resize on floats (spec/qnn_resize.py) -----------------------------------------------------------

def _resize_graph(rng: np.random.Generator, interp: str, mode: str, bits: int = 8, antialias: bool = False):
    from test_pool_movement import In, near, one_node, rand_enc

    e = rand_enc(rng, bits)
    attrs = {"output_shape": [2, 11, 7, 3], "interpolation_mode": interp, "transformation_mode": mode,
             "antialias": antialias}
    return one_node("Resize", [In((2, 5, 6, 3), e)], attrs, [near(rng, e)])


@pytest.mark.parametrize("arch", [V68, V73], ids=["v68", "v73"])
@pytest.mark.parametrize("mode", ["half_pixel", "align_corners", "asymmetric"])
def test_resize_fast_equals_the_qnn_float_spec(mode: str, arch) -> None:
    from openqnn.backends.htp.spec import qnn_resize

    rng = np.random.default_rng(61)
    for _ in range(3):
        g = _resize_graph(rng, "linear", mode)
        ref, fast, plan = _run_both(g, arch, "qnn")
        assert plan.kernel == "htp.resize_float"
        np.testing.assert_array_equal(ref, fast)
        tfl, _, tplan = _run_both(g, arch, "tflite")
        assert tplan.kernel == "htp.resize_filter" and np.abs(ref - tfl).max() <= 1
        back = StepPlan.from_json(json.loads(json.dumps(plan.to_json(), allow_nan=False)), plan.stored_arrays())
        q = np.random.default_rng(1).integers(0, 256, size=(2, 5, 6, 3))
        np.testing.assert_array_equal(np.asarray(bind_step(back).reference(q)), ref)
    # the quantization by hand: 128.4375 codes is a float16 tie that goes to 128.5 (even), then away: 129 (exact
    # rounding: 128); 128.43 is float16 128.375: 128; -3.5 rounds away from zero: -4
    y = np.array([128.4375, 128.43, -3.5], dtype=np.float32) * np.float32(0.5)
    assert qnn_resize.quantize(y, 0.5, 10, 255).tolist() == [139, 138, 6]


def test_float16_rounding_is_one_rounding() -> None:
    """The fast path's float16 rounding equals numpy's (float64 -> float16 directly), ties and near-ties
    included; torch's own cast rounds through float32 and differs on some."""
    from openqnn.backends.htp.spec import qnn_resize

    rng = np.random.default_rng(3)
    ties = (np.arange(1024, 2048) + 0.5) * 2.0**-3
    p = np.concatenate([rng.uniform(-300, 300, 20000), rng.uniform(-1e-5, 1e-5, 200), ties, ties + 1e-12,
                        ties - 1e-12, -ties, [0.0, 65504.0, 65519.0, 65520.0, 1e6]])
    ours = qnn_resize.to_float16_t(torch.from_numpy(p)).numpy()
    np.testing.assert_array_equal(ours, qnn_resize.to_float16(p))
    assert (torch.from_numpy(p).to(torch.float16).double().numpy() != ours).any()


def test_resize_takes_the_float_spec_only_where_established() -> None:
    rng = np.random.default_rng(62)
    # 16-bit: the float route too, quantized in float32 (tests/backends/htp/test_qnn_resize16.py)
    assert _run_both(_resize_graph(rng, "linear", "half_pixel", bits=16), V73, "qnn")[2].kernel == "htp.resize_float"
    assert _run_both(_resize_graph(rng, "cubic", "half_pixel"), V73, "qnn")[2].kernel == "htp.resize_filter"
    assert _run_both(_resize_graph(rng, "linear", "pytorch_half_pixel", antialias=True), V73,
                     "qnn")[2].kernel == "htp.resize_filter"
    assert _run_both(_resize_graph(rng, "linear", "half_pixel"), ARCHS["v75"], "qnn")[2].kernel == "htp.resize_filter"


# -- Select (Where): QnnConvertSpec on each run-time operand ------------------------------------------

@pytest.mark.parametrize("arch", [V68, V73], ids=["v68", "v73"])
def test_select_fast_equals_the_qnn_spec(arch) -> None:
    from test_pool_movement import In, near, one_node, rand_enc

    from openqnn.backends.htp.spec.qnn_eltwise import QnnConvertSpec
    from openqnn.ir.dtype import DType

    rng = np.random.default_rng(71)
    for _ in range(4):
        ea = rand_enc(rng, 8)
        eb, eo = near(rng, ea), near(rng, ea)
        g = one_node("ElementWiseSelect", [In((2, 3, 6), None, DType.BOOL_8), In((2, 3, 6), ea), In((1, 3, 1), eb)],
                     {}, [eo])
        node = g.nodes[0]
        c = rng.random((2, 3, 6)) < 0.5
        a, b = rng.integers(0, 256, (2, 3, 6)), rng.integers(0, 256, (1, 3, 1))
        outs = {}
        for arithmetic in ("qnn", "tflite"):
            step = HTP_KERNELS[node.op_type](node, HtpBuildContext(g, arch, arithmetic=arithmetic))
            ref = np.asarray(step.reference(c, a, b))
            fast = step.fast(torch.from_numpy(c), torch.from_numpy(a).to(torch.uint8),
                             torch.from_numpy(b).to(torch.uint8)).numpy().astype(np.int64)
            np.testing.assert_array_equal(ref, fast)
            outs[arithmetic] = ref
            assert ("qnn" in step.plan.attrs["parts"][1]) == (arithmetic == "qnn")
        conv = [QnnConvertSpec.of(e.scale[0], -e.offset[0], eo.scale[0], -eo.offset[0]) for e in (ea, eb)]
        assert conv[0] is not None and conv[1] is not None
        np.testing.assert_array_equal(outs["qnn"], np.where(c, conv[0].apply_np(a), conv[1].apply_np(b)))
        assert np.abs(outs["qnn"] - outs["tflite"]).max() <= 1


@pytest.mark.parametrize("arch", [V68, V73], ids=["v68", "v73"])
def test_select_16_bit_fast_equals_the_qnn_spec(arch) -> None:
    from test_pool_movement import In, near, one_node, rand_enc

    from openqnn.backends.htp.spec.qnn_eltwise import QnnConvert16Spec
    from openqnn.ir.dtype import DType

    rng = np.random.default_rng(72)
    for _ in range(3):
        ea = rand_enc(rng, 16)
        eb, eo = near(rng, ea), near(rng, ea)
        g = one_node("ElementWiseSelect", [In((2, 3, 6), None, DType.BOOL_8), In((2, 3, 6), ea), In((1, 3, 1), eb)],
                     {}, [eo])
        node = g.nodes[0]
        c = rng.random((2, 3, 6)) < 0.5
        a, b = rng.integers(0, 65536, (2, 3, 6)), rng.integers(0, 65536, (1, 3, 1))
        step = HTP_KERNELS[node.op_type](node, HtpBuildContext(g, arch, arithmetic="qnn"))
        ref = np.asarray(step.reference(c, a, b))
        fast = step.fast(torch.from_numpy(c), torch.from_numpy(a).to(torch.int32),
                         torch.from_numpy(b).to(torch.int32)).numpy().astype(np.int64)
        np.testing.assert_array_equal(ref, fast)
        conv = [QnnConvert16Spec.of(e.scale[0], -e.offset[0], eo.scale[0], -eo.offset[0], select=True)
                for e in (ea, eb)]
        assert conv[0] is not None and conv[1] is not None
        np.testing.assert_array_equal(ref, np.where(c, conv[0].apply_np(a), conv[1].apply_np(b)))


# -- ElementWiseAdd / ElementWiseSubtract (spec/qnn_eltwise.py) -----------------------------------

def _add_step(op: str, specs: list, arch, arithmetic: str, rng: np.random.Generator):
    """A one-node Add / Subtract graph (test_elementwise's helpers), its htp step and random input codes."""
    from test_elementwise import _calibrate_output, _feeds, _graph

    g = _graph(op, specs)
    feeds = _feeds(g, rng)
    _calibrate_output(g, feeds, specs[0][1].bitwidth if specs[0][2] is None else specs[1][1].bitwidth, rng)
    node = g.nodes[0]
    step = HTP_KERNELS[node.op_type](node, HtpBuildContext(g, arch, arithmetic=arithmetic))
    return g, step, [np.asarray(feeds[x], np.int64) for x in step.inputs]


def _both_paths(g, step, ins: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    from openqnn.backends.htp.kernels.registry import storage_dtype

    fast_in = [torch.from_numpy(q).to(storage_dtype(g.tensors[x].encoding.bitwidth)) for x, q in zip(step.inputs, ins)]
    return np.asarray(step.reference(*ins)), step.fast(*fast_in).numpy().astype(np.int64)


@pytest.fixture(params=["tables", "direct"])
def elt_fast_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Two 8-bit operands are looked up in a table of the reference; "direct" computes them instead."""
    from openqnn.backends.htp.kernels import elementwise

    if request.param == "direct":
        monkeypatch.setattr(elementwise, "_TABLE_MAX", 0)
    return str(request.param)


_QNN_KERNEL = {"ElementWiseAdd": "htp.add_qnn", "ElementWiseSubtract": "htp.add_qnn",
               "ElementWiseMultiply": "htp.multiply_qnn"}


@pytest.mark.parametrize("arch", [V68, V73], ids=["v68", "v73"])
@pytest.mark.parametrize("bw", [8, 16])
@pytest.mark.parametrize("op", ["ElementWiseAdd", "ElementWiseSubtract", "ElementWiseMultiply"])
def test_add_sub_mul_fast_equals_the_qnn_spec(op: str, bw: int, arch, elt_fast_mode: str) -> None:
    from test_elementwise import SHAPES, _param_enc, _rand_enc

    rng = np.random.default_rng([bw, len(op), 7])
    taken = 0
    for trial in range(12):
        sa, sb = SHAPES[trial % len(SHAPES)]
        specs: list = [(sa, _rand_enc(rng, bw), None), (sb, _rand_enc(rng, bw), None)]
        if trial % 3 == 0 and bw == 8:  # a static operand (8-bit codes of its own encoding), sometimes first
            data = rng.uniform(-1.5, 1.5, sb)
            specs[1] = (sb, _param_enc(data), data)
            if trial % 2:
                specs.reverse()
        g, step, ins = _add_step(op, specs, arch, "qnn", rng)
        scalar_constant = bw == 8 and any(d is not None and np.size(d) == 1 for _, _, d in specs)
        if step.plan.kernel != _QNN_KERNEL[op]:  # TFLite's only where the spec does not reach
            assert scalar_constant or op == "ElementWiseMultiply"
            continue
        assert not scalar_constant
        taken += 1
        ref, fast = _both_paths(g, step, ins)
        np.testing.assert_array_equal(ref, fast)
        tstep = HTP_KERNELS[op](g.nodes[0], HtpBuildContext(g, arch, arithmetic="tflite"))
        assert tstep.plan.kernel != step.plan.kernel
        assert np.abs(ref - np.asarray(tstep.reference(*ins))).max() <= (1 if bw == 8 else 2)
    assert taken >= 8  # the spec, not TFLite's, is what was checked


def test_add_spec_reproduces_simulator_codes() -> None:
    """Codes read off QNN's HTP simulator (tests/fidelity/eltwise_probe.py, v68 = v73) where exact rounding
    gives one less."""
    from openqnn.backends.htp.spec.qnn_eltwise import QnnAddSpec

    spec = QnnAddSpec.of(0.03366, 19, 0.01065, 4, 0.035732, 44, subtract=False)
    assert spec is not None and (spec.mult_a, spec.mult_b, spec.rsh) == (7717, 2442, 5)
    qa, qb = np.array([2, 36, 69, 89, 119, 150, 211]), np.array([254, 217, 210, 234, 213, 162, 90])
    assert spec.apply_np(qa, qb).tolist() == [103, 124, 153, 179, 201, 215, 251]
    va = ((qa - 19) * np.float32(0.03366) + (qb - 4) * np.float32(0.01065)) / np.float32(0.035732) + 44
    assert np.floor(va + 0.5).tolist() == [102, 123, 152, 178, 200, 214, 250]
    q = np.arange(65536).reshape(256, 256)
    for s in (spec, QnnAddSpec.of(1e-4, 30000, 3e-4, 100, 2e-4, 65000, subtract=True, bitwidth=16, complement=True)):
        assert s is not None
        np.testing.assert_array_equal(s.apply_t(torch.from_numpy(q % 256 if s.qmax == 255 else q),
                                                torch.from_numpy(q.T % 256 if s.qmax == 255 else q.T)).numpy(),
                                      s.apply_np(q % 256 if s.qmax == 255 else q, q.T % 256 if s.qmax == 255 else q.T))


def test_add_spec_shifts_left_where_the_output_step_is_finer_than_the_inputs_sum_over_64() -> None:
    """BERT's attention-mask Add (scores + a mask of scale 39.2, codes 0 / 255, into scale 0.102): QNN's rsh is
    -3, the sum less its zero shifted left by 3, z_o added after. Codes read off the simulator
    (tests/fidelity/eltwise_probe.py --regime wide, v68 = v73): steps of 8 codes from z_o = 244 at the
    scores' codes 11, 96 and 181, the masked ones 0; exact rounding moves in steps of one code."""
    from openqnn.backends.htp.spec.qnn_eltwise import QnnAddSpec

    spec = QnnAddSpec.of(0.00947863588146135, 117, 39.21568627450981, 255, 0.10187072365307341, 244, subtract=False)
    assert spec is not None and (spec.mult_a, spec.mult_b, spec.rsh, spec.lsh, spec.post) == (3, 12319, 0, 3, 244)
    qa = np.arange(256)
    unmasked = spec.apply_np(qa, np.full(256, 255))
    assert (np.flatnonzero(np.diff(unmasked)) + 1).tolist() == [11, 96, 181]
    assert unmasked[[0, 11, 96, 181, 255]].tolist() == [228, 236, 244, 252, 252]
    assert spec.apply_np(qa, np.zeros(256, np.int64)).max() == 0 and spec.apply_np(qa, np.full(256, 254)).max() == 0
    # a probe with b = 400 exactly and a = 3: floor(3 (q_a - 128) / 8) * 8 + 128, the row q_b = z_b - 1 -400 off
    spec = QnnAddSpec.of(0.3, 128, 40.0, 255, 0.1, 128, subtract=False)
    assert spec is not None and spec.lsh == 3
    assert (np.flatnonzero(np.diff(spec.apply_np(qa, np.full(256, 254)))) + 1).tolist() == [
        222, 224, 227, 230, 232, 235, 238, 240, 243, 246, 248, 251, 254]
    # either side of a + b = 64 (the existing rsh = 0 form below), far beyond it (rsh -15), not beyond -15
    assert QnnAddSpec.of(0.0435, 37, 63.41, 250, 1.0, 159, subtract=False).lsh == 0  # type: ignore[union-attr]
    assert QnnAddSpec.of(0.7348, 128, 64.0, 255, 1.0, 128, subtract=False).lsh == 1  # type: ignore[union-attr]
    assert QnnAddSpec.of(0.04, 128, 1.2e6, 119, 1.0, 128, subtract=True).lsh == 15  # type: ignore[union-attr]
    assert QnnAddSpec.of(0.04, 128, 2.2e6, 119, 1.0, 128, subtract=False) is None
    q = np.arange(65536).reshape(256, 256)
    for s in (spec, QnnAddSpec.of(0.04, 10, 1.2e6, 119, 1.0, 200, subtract=True)):
        assert s is not None
        np.testing.assert_array_equal(s.apply_t(torch.from_numpy(q % 256), torch.from_numpy(q.T % 256)).numpy(),
                                      s.apply_np(q % 256, q.T % 256))
    old = spec.to_attrs()
    del old["lsh"], old["post"]  # a plan written before these fields reads as the rsh >= 0 form
    assert QnnAddSpec.from_attrs(old) == QnnAddSpec(**{**spec.to_attrs(), "lsh": 0, "post": 0})


@pytest.mark.parametrize("arch", [V68, V73], ids=["v68", "v73"])
@pytest.mark.parametrize("op", ["ElementWiseAdd", "ElementWiseSubtract"])
def test_add_fast_equals_the_qnn_spec_for_a_mask_like_operand(op: str, arch, elt_fast_mode: str) -> None:
    """An attention mask's Add: scores of scale ~0.01 plus a mask (or a Subtract of it) of scale ~40 into an
    output of scale ~0.1 (QNN's rsh < 0), broadcast over the heads and query rows; the table and the direct
    fast paths equal the reference, which is the spec."""
    from test_elementwise import _enc, _feeds, _graph

    rng = np.random.default_rng([len(op), 3])
    for trial in range(4):
        scores = _enc(-1.2 * (trial + 1), 1.1 * (trial + 1), 8)
        mask = _enc(-10000.0 * (trial + 1), 0.0, 8) if trial % 2 else _enc(-5000.0, 5000.0, 8)
        g = _graph(op, [((1, 4, 16, 16), scores, None), ((1, 1, 1, 16), mask, None)])
        g.tensors["out"].encoding = _enc(-24.0 - trial, 2.0 + trial, 8)
        feeds = _feeds(g, rng)
        step = HTP_KERNELS[op](g.nodes[0], HtpBuildContext(g, arch, arithmetic="qnn"))
        assert step.plan.kernel == "htp.add_qnn" and step.plan.attrs["spec"]["lsh"] > 0
        ins = [np.asarray(feeds[x], np.int64) for x in step.inputs]
        ref, fast = _both_paths(g, step, ins)
        np.testing.assert_array_equal(ref, fast)
        e = [g.tensors[x].encoding for x in (*step.inputs, "out")]
        spec = QnnAddSpec.of(e[0].scale[0], -e[0].offset[0], e[1].scale[0], -e[1].offset[0], e[2].scale[0],
                             -e[2].offset[0], subtract=op == "ElementWiseSubtract")
        assert spec is not None
        np.testing.assert_array_equal(ref, spec.apply_np(*ins))


def test_add_sub16_complements_a_broadcast_subtrahend() -> None:
    from test_elementwise import _rand_enc

    from openqnn.backends.htp.spec.qnn_eltwise import complements

    assert complements((1, 5, 7, 9), (1, 5, 1, 1)) and complements((64, 1024), (1024,)) and complements((5,), ())
    assert not complements((4, 2, 3, 5), (1, 2, 3, 5)) and not complements((2, 2, 8, 3, 3), (2, 1, 8, 3, 3))
    rng = np.random.default_rng(8)
    e = _rand_enc(rng, 16)
    for shapes, comp in [(((1, 4, 5, 6), (1, 4, 1, 6)), True), (((3, 4, 5, 6), (1, 4, 5, 6)), False)]:
        _, step, _ = _add_step("ElementWiseSubtract", [(shapes[0], e, None), (shapes[1], _rand_enc(rng, 16), None)], V73,
                               "qnn", rng)
        assert (step.plan.attrs["spec"]["acc_bias"] != 0) == comp


def test_add_plan_keeps_the_qnn_arithmetic() -> None:
    from test_elementwise import _rand_enc

    rng = np.random.default_rng(6)
    for bw in (8, 16):
        _, step, ins = _add_step("ElementWiseSubtract", [((2, 3, 4), _rand_enc(rng, bw), None),
                                                         ((3, 1), _rand_enc(rng, bw), None)], V68, "qnn", rng)
        back = StepPlan.from_json(json.loads(json.dumps(step.plan.to_json(), allow_nan=False)),
                                  step.plan.stored_arrays())
        np.testing.assert_array_equal(np.asarray(bind_step(back).reference(*ins)), np.asarray(step.reference(*ins)))


def test_add_mul_take_the_qnn_spec_only_where_established() -> None:
    from test_elementwise import _param_enc, _rand_enc

    rng = np.random.default_rng(10)
    e8, e16 = _rand_enc(rng, 8), _rand_enc(rng, 16)
    one = np.array([0.7])
    for arch, specs in [(ARCHS["v75"], [((4,), e8, None), ((4,), e8, None)]),  # another arch
                        (V73, [((4,), e8, None), ((4,), e16, None)]),  # mixed widths: not probed
                        (V73, [((4,), e8, None), ((1,), _param_enc(one), one)])]:  # a constant 8-bit scalar
        for op in ("ElementWiseAdd", "ElementWiseMultiply"):
            _, step, _ = _add_step(op, specs, arch, "qnn", rng)
            assert step.plan.kernel in ("htp.add", "htp.multiply")
    _, step, _ = _add_step("ElementWiseAdd", [((4,), e16, None), ((1,), _rand_enc(rng, 16), np.array([0.7]))], V73,
                           "qnn", rng)
    assert step.plan.kernel == "htp.add_qnn"  # 16-bit constant scalars follow the spec


# -- the bias: QNN's own conversion of the int32 bias (spec/qnn_requant.py's qnn_bias, docs/htp-fidelity.md) --------

_SX, _SW = np.float32(0.03138083102656346), np.float32(0.00042531293208204854)  # tests/fidelity/conv_bias_probe.py's


def test_qnn_bias_reproduces_measured_simulator_offsets() -> None:
    """Offsets the simulator (v73) showed on tests/fidelity/conv_bias_probe.py's convolution, no simulator
    needed: per-tensor, biases 1..64 lose a step at 25, 41, 50 and 59; per-channel beside a bias of 2^30 the
    biases 1000..1062 are re-quantized to multiples of 4 (2^30 / 2^28) and truncated; beside 63 they move as
    the float32 arithmetic makes them; v68 keeps the biases as given."""
    from openqnn.backends.htp.spec.qnn_requant import qnn_bias

    b = np.arange(1, 65)
    d = qnn_bias("v73", b, float(_SX), np.array([_SW])) - b
    assert np.flatnonzero(d).tolist() == [24, 40, 49, 58] and set(d.tolist()) == {0, -1}
    assert np.array_equal(qnn_bias("v73", -b, float(_SX), np.array([_SW])), -qnn_bias("v73", b, float(_SX), np.array([_SW])))
    b = np.r_[np.arange(1000, 1063), 1 << 30]
    got = qnn_bias("v73", b, float(_SX), np.full(64, _SW, np.float32))[:20]
    assert got.tolist() == [1000, 1000, 1000, 1004, 1004, 1004, 1004, 1008, 1008, 1008, 1008, 1012, 1012, 1012, 1012,
                            1016, 1016, 1016, 1016, 1019]  # measured (the last: 1020 truncated after float32)
    b = np.r_[np.arange(32), np.full(32, 63)]  # the doc's "biases 0..31, then 32 x 63"
    d = (qnn_bias("v73", b, float(_SX), np.full(64, _SW, np.float32)) - b)[:32]
    assert "".join(".-"[int(-v)] for v in d) == ".--.-...-.......-........-......"  # measured
    assert np.array_equal(qnn_bias("v68", b, float(_SX), np.full(64, _SW, np.float32)), b)  # no spec: as given


def test_v68_qnn_bias_reproduces_measured_simulator_offsets() -> None:
    """v68 (simulator offsets on tests/fidelity/conv_bias_probe.py's convolution, output zero point 110 and
    0): biases 1000..1062 beside 2^30 re-quantized to multiples of 4 and rounded, ties to even (1002 -> 1000,
    1062 -> 1064); per-tensor biases 1..64 kept; a near-half sum rounds up."""
    from openqnn.backends.htp.spec.qnn_requant import QnnRequantSpec, qnn_bias

    so = np.float32(0.0046933319054397885)
    sw = np.full(64, _SW, np.float32)
    real = np.float64(_SX) * sw.astype(np.float64) / np.float64(so)
    for zo in (110, 0):
        spec = QnnRequantSpec.of("v68", real, zo)
        b = np.r_[np.arange(1000, 1063), 1 << 30]
        d = (qnn_bias("v68", b, float(_SX), sw, None, spec, real) - b)[:63]
        assert d.tolist() == [0, -1, -2, 1] * 15 + [0, -1, 2]  # measured
        b = np.arange(1, 65)
        pt = qnn_bias("v68", b, float(_SX), sw[:1], float(_SX * _SW), spec, real)
        assert np.array_equal(pt, b)  # measured: no offset
    # measured (v68, zero point 110; three channels of a random probe): bias 614 beside a largest |bias| of
    # 1039, zo / M = 17729.4997: the float32 sum is 18343.5 and rounds up (+1), where float64 would round down
    sw2 = np.array([0.0001380268658977002, 0.0017054174095392227, 0.0009279253426939249], np.float32)
    real2 = np.float64(_SX) * sw2.astype(np.float64) / np.float64(so)
    b2 = np.array([-1039, 59, 614])
    d2 = qnn_bias("v68", b2, float(_SX), sw2, None, QnnRequantSpec.of("v68", real2, 110), real2) - b2
    assert d2.tolist() == [0, 0, 1]


# ResNet-18 224x224 (tests/fidelity/cases.py, W8A8 per channel) layer1.0 conv2 on v68: channels 12, 16 and 45 and
# the two channels that set the largest |bias| (47) and weight scale (59), which fix P and B; scales as exported
_RN_SX, _RN_SO, _RN_ZO = 0.005502989515662193, np.float32(0.006573433987796307), 144
_RN_B = np.array([4736, -15300, -12512, -32166, -8704])
_RN_SW = np.array([0.0010086578549817204, 0.0009177025640383363, 0.0007479274063371122, 0.0008325745002366602,
                   0.0016259743133559823], np.float32)


def _rn_offsets() -> list[int]:
    from openqnn.backends.htp.spec.qnn_requant import QnnRequantSpec, qnn_bias

    real = np.float64(np.float32(_RN_SX)) * _RN_SW.astype(np.float64) / np.float64(_RN_SO)
    spec = QnnRequantSpec.of("v68", real, _RN_ZO)
    return (qnn_bias("v68", _RN_B, _RN_SX, _RN_SW, None, spec, real) - _RN_B).tolist()


def test_v68_bias_resnet18_tie_that_rounds_up() -> None:
    """Measured (python -m tests.fidelity.model_layers --model resnet18 --full --arch 68 --save): channel 16's
    float32 sum is exactly 172136.5 (bias -15300.0, zo / M_c = 187436.5) and the simulator rounds it up, as the
    rule does."""
    d = _rn_offsets()
    assert d[1] == 0 and d[3:] == [0, 0]


def test_v68_bias_resnet18_ties_that_round_down() -> None:
    """Measured as above: channels 12 and 45 are 1 lower on the simulator than ``fl(zo / fl(M))`` (M the float64
    ratio of the float32 scales) makes them (4736.00049 + 170534.5 = 175270.5, -12512.00098 + 229983.5 = 217471.5:
    ties rounded up). QNN's multiplier is the largest one times the weight-scale ratio, ``fl(fl(fl(s_x s_w_max) /
    s_o) * fl(s_w_c / s_w_max))`` (channel 59 has the largest weight scale), whose shares put both sums below the
    half (docs/htp-fidelity.md, "The v68 bias ties (stop 25)")."""
    assert _rn_offsets()[0] == 0 and _rn_offsets()[2] == 0


def test_v68_bias_share_uses_the_largest_multiplier_times_the_weight_scale_ratio() -> None:
    """The simulator's share of the output zero point for one weight scale (targeted probes, v68: every channel's
    weight scale alike, biases at fine offsets around a tie): ``fl(zo / fl(fl(s_x s_w) / s_o))``, which here
    is one float32 step away from ``fl(zo / fl(M))`` with M the float64 ratio (zo 110: 27846.5 -> 27846.498;
    zo 200: 113105.492 -> 113105.5), so that a bias of 1371 rounds down and one of 505 up: measured offsets 0 and
    +1 where the float64 ratio's share gives +1 and 0."""
    from openqnn.backends.htp.spec.qnn_requant import QnnRequantSpec, qnn_bias

    so = np.float32(0.0046933319054397885)
    for sw, zo, b, d in ((0.0005907978629693389, 110, 1371, 0), (0.000264461908955127, 200, 505, 1)):
        w = np.full(2, sw, np.float32)
        real = np.float64(_SX) * w.astype(np.float64) / np.float64(so)
        spec = QnnRequantSpec.of("v68", real, zo)
        bias = np.array([b, 2000])
        old = np.floor(np.float32(b) + np.float32(np.float32(zo) / real.astype(np.float32)[0]) + 0.5) - spec.pre[0] - b
        got = (qnn_bias("v68", bias, float(_SX), w, None, spec, real) - bias)[0]
        assert got == d and old != d


@pytest.mark.parametrize("per_channel", [False, True])
def test_conv_and_fully_connected_plans_take_qnns_bias_on_v73(per_channel: bool) -> None:
    """The plan's bias array (which every fast kernel adds) is QNN's conversion on v73 and the bias as given on
    v68 and under TFLite's arithmetic."""
    from openqnn.backends.htp.spec.qnn_requant import qnn_bias

    rng = np.random.default_rng(31)
    case = Case("Conv2d", [(1, 6, 6, 3)], {**_conv_attrs(rng, (3, 3)), "group": 1}, rng,
                weight=rng.normal(size=(3, 3, 3, 16)), w_axis=3 if per_channel else None, bias="acc", **A8)
    g = case.graph
    node = g.nodes[0]
    plain = BUILDERS["Conv2d"](node, HtpBuildContext(g, V68, arithmetic="tflite")).plan.arrays["bias"]
    assert np.array_equal(BUILDERS["Conv2d"](node, HtpBuildContext(g, V73, arithmetic="tflite")).plan.arrays["bias"],
                          plain)
    v73 = BUILDERS["Conv2d"](node, HtpBuildContext(g, V73, arithmetic="qnn")).plan.arrays["bias"]
    w_scale = np.asarray(g.tensors[node.inputs[1]].encoding.scale, np.float64)
    b_enc = g.tensors[node.inputs[2]].encoding
    expected = qnn_bias("v73", plain, float(g.tensors["x0"].encoding.scale[0]), w_scale,
                        None if per_channel else float(b_enc.scale[0]))
    assert np.array_equal(v73, expected)
    case.check(V73, arithmetic="qnn")  # the fast kernels add it as the reference does


def test_conv16_v73_low_bytes_floored_and_double_rounding() -> None:
    """The W8A16 v73 convolution spec (spec/qnn_conv16.py): the low bytes' products count only in units of 256
    (one input channel of weight 1: the code steps every 256 input codes), and the 7-bit intermediate rounding
    rounds up just below a half."""
    from openqnn.backends.htp.spec.qnn_conv16 import conv16_v73

    x = np.arange(1024, dtype=np.int64)
    out = conv16_v73((x >> 8)[:, None], (x & 255)[:, None], np.array([1]), np.array([0]), 0, np.array([0.3]), 100)
    assert np.array_equal(out[:, 0], 100 + np.floor((x >> 8) * 256 * 0.3 + 0.5).astype(np.int64))
    # a * M * 256 = 0.4990234375 + tiny: exact rounding gives 0, the 7-bit intermediate (63.87 -> 64) gives 1
    t = 0.4990234375 / 64
    assert conv16_v73(np.array([[64]]), np.array([[0]]), np.array([1]), np.array([0]), 0,
                      np.array([t / 256]), 0)[0, 0] == 1
