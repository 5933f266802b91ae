"""Steps as data for the GEMM kernels (issue 12): FullyConnected, MatMul, Conv2d, DepthWiseConv2d and
TransposeConv2d plans are JSON plus named arrays, and bind back to the same bits of both paths without
analysing anything again (no requantization multipliers, no static operands, no proofs)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import test_conv_linear
import torch
from test_conv_linear import BUILDERS, V73, Case, _conv_attrs, _variant, transpose_conv_case

from openqnn.backends.htp import native
from openqnn.backends.htp.kernels import conv, gemm, linear, requant
from openqnn.backends.htp.kernels.registry import HtpBuildContext, HtpStep, bind_step, storage_dtype
from openqnn.backends.plan import StepPlan

conv_impl = test_conv_linear.conv_impl  # the fixture: fused / oneDNN / im2col convolutions

# prepare-time work a binder must not do: it reads the plan
_ANALYSIS = [(requant, "quantize_multiplier"), (requant, "requant_for"), (gemm, "static_operand"), (gemm, "bias_q"),
             (gemm, "int8_split"), (gemm, "qconv_bound"), (linear, "requant_for"), (linear, "static_operand"),
             (linear, "bias_q"), (conv, "requant_for"), (conv, "static_operand"), (conv, "bias_q"),
             (conv, "qconv_bound"), (conv, "channel_parts"), (conv, "_float32_exact"),
             # the requantization form (fold / window / int64, its constants, the float32 estimate's bound)
             (requant.Requant, "form"), (requant.Requant, "_decide"), (requant.Requant, "_window"),
             (requant.Requant, "reference"), (requant._Affine, "center"), (requant, "_form_eps"),
             (requant, "_estimate_error"),
             # QNN's requantization: its constants come from the plan
             (requant.QnnRequantSpec, "of"), (native, "qnn_int_form")]


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("prepare-time analysis while binding a plan")


def _run(step: HtpStep, case: Case) -> tuple[np.ndarray, np.ndarray]:
    ins = [case.q[n] for n in step.inputs]
    ref = np.asarray(step.reference(*ins))
    fast = step.fast(*[torch.from_numpy(q).to(storage_dtype(case.graph.tensors[n].encoding.bitwidth))
                       for n, q in zip(step.inputs, ins)])
    return ref, fast.numpy()


def _round_trip(case: Case, monkeypatch: pytest.MonkeyPatch, mode: str | None = None) -> StepPlan:
    node = case.graph.nodes[0]
    step = BUILDERS[node.op_type](node, HtpBuildContext(case.graph, V73), mode)
    plan = step.plan
    assert plan is not None and plan.op_type == node.op_type
    doc = json.loads(json.dumps(plan.to_json(), allow_nan=False))
    back = StepPlan.from_json(doc, plan.stored_arrays())
    assert back.to_json() == plan.to_json()
    with monkeypatch.context() as m:
        for mod, name in _ANALYSIS:
            if hasattr(mod, name):
                m.setattr(mod, name, _boom)
        for name in ("weight_split", "folded_offset"):  # weights packed and zero points folded at prepare
            m.setattr(gemm.ConvCore, name, staticmethod(_boom))
        rebound = bind_step(back)
    ref, fast = _run(step, case)
    ref2, fast2 = _run(rebound, case)
    np.testing.assert_array_equal(ref2, ref)
    np.testing.assert_array_equal(fast2, fast)
    assert fast2.dtype == fast.dtype
    np.testing.assert_array_equal(fast2.astype(np.int64), ref2)
    return plan


# -- FullyConnected and MatMul ------------------------------------------------------------------

@pytest.mark.parametrize("mode", [None, "float64"])
@pytest.mark.parametrize("seed", range(6))
def test_fully_connected_plan(seed: int, mode: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(400 + seed)
    k, units = int(rng.integers(1, 40)), int(rng.integers(1, 20))
    lead = tuple(int(d) for d in rng.integers(1, 5, size=int(rng.integers(1, 3))))
    case = Case("FullyConnected", [(*lead, k)], {"keep_dims": bool(rng.random() < 0.5)}, rng,
                weight=rng.normal(size=(units, k)), w_axis=0 if rng.random() < 0.5 else None, **_variant(rng))
    plan = _round_trip(case, monkeypatch, mode)
    assert plan.kernel == "htp.fully_connected" and plan.attrs["gemm"] in ("fused", "core")


def test_fully_connected_fused_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    """An 8-bit layer wide enough for native/int8.c's fused GEMM where this machine has it."""
    rng = np.random.default_rng(3)
    case = Case("FullyConnected", [(6, 64)], {"keep_dims": True}, rng, weight=rng.normal(size=(32, 64)), w_axis=0)
    plan = _round_trip(case, monkeypatch)
    if gemm.native.library() is not None and gemm.native.int8_available():
        assert plan.attrs["gemm"] == "fused" and "fused_init" in plan.arrays


@pytest.mark.parametrize("mode", [None, "float64"])
@pytest.mark.parametrize("seed", range(6))
def test_matmul_static_plan(seed: int, mode: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(500 + seed)
    m, k, n = (int(v) for v in rng.integers(1, 12, size=3))
    tb, ta = bool(rng.random() < 0.4), bool(rng.random() < 0.3)
    lead = tuple(int(d) for d in rng.integers(1, 4, size=int(rng.integers(0, 3))))
    w = rng.normal(size=(n, k) if tb else (k, n))
    v = _variant(rng)
    v.pop("bias")
    case = Case("MatMul", [(*lead, k, m) if ta else (*lead, m, k)], {"transpose_in0": ta, "transpose_in1": tb}, rng,
                weight=w, w_axis=(0 if tb else 1) if rng.random() < 0.5 else None, **v)
    assert _round_trip(case, monkeypatch, mode).attrs["kind"] == "rows"


@pytest.mark.parametrize("mode", [None, "float64"])
@pytest.mark.parametrize("seed", range(6))
def test_matmul_act_act_plan(seed: int, mode: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(600 + seed)
    m, k, n = (int(v) for v in rng.integers(1, 20, size=3))
    ta, tb = bool(rng.random() < 0.3), bool(rng.random() < 0.5)
    heads = int(rng.integers(1, 4))
    a_shape = (2, heads, k, m) if ta else (2, heads, m, k)
    b_shape = ((heads, n, k) if tb else (heads, k, n)) if rng.random() < 0.5 else ((1, n, k) if tb else (1, k, n))
    xbw = int(rng.choice([8, 8, 16]))
    case = Case("MatMul", [a_shape, b_shape], {"transpose_in0": ta, "transpose_in1": tb}, rng, xbw=xbw,
                obw=int(rng.choice([8, xbw])), act_act=True)
    assert _round_trip(case, monkeypatch, mode).attrs["kind"] in ("act_act", "float64")


# -- convolutions ------------------------------------------------------------------------------------

def _expect_kind(plan: StepPlan, conv_impl: str) -> None:
    """The kernel choice is the builder's, recorded in the plan; the fixture takes libraries away."""
    kind = plan.attrs["kind"]
    assert kind in plan.attrs["kinds"]
    if conv_impl != "fused":
        assert kind != "fused"
    if conv_impl == "im2col":
        assert kind != "int8_conv"


@pytest.mark.parametrize("seed", range(8))
def test_conv2d_plan(seed: int, conv_impl: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(seed)
    kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    group = int(rng.choice([1, 1, 2, 3]))
    cin, cout = group * int(rng.integers(1, 6)), group * int(rng.integers(1, 6))
    attrs = {**_conv_attrs(rng, (kh, kw)), "group": group}
    xshape = (int(rng.integers(1, 3)), int(rng.integers(kh * 2, 12)), int(rng.integers(kw * 2, 12)), cin)
    w = rng.normal(size=(kh, kw, cin // group, cout))
    case = Case("Conv2d", [xshape], attrs, rng, weight=w, w_axis=3 if rng.random() < 0.5 else None, **_variant(rng))
    plan = _round_trip(case, monkeypatch)
    assert plan.kernel == "htp.conv2d"
    _expect_kind(plan, conv_impl)


@pytest.mark.parametrize("seed", range(6))
def test_depthwise_plan(seed: int, conv_impl: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Depthwise convolutions, 8-bit over many channels (the fused kernel's domain) and mixed precisions."""
    rng = np.random.default_rng(700 + seed)
    c = int(rng.choice([16, 24, 33, 64])) if seed % 2 else int(rng.integers(1, 9))
    kh, kw = [(3, 3), (5, 5), (1, 7)][seed % 3]
    attrs = _conv_attrs(rng, (kh, kw))
    xshape = (int(rng.integers(1, 3)), int(rng.integers(kh * 2, 16)), int(rng.integers(kw * 2, 16)), c)
    variant = {} if seed % 2 else _variant(rng)
    case = Case("DepthWiseConv2d", [xshape], attrs, rng, weight=rng.normal(size=(kh, kw, 1, c)),
                w_axis=3 if seed % 3 else None, **variant)
    plan = _round_trip(case, monkeypatch)
    _expect_kind(plan, conv_impl)
    if conv_impl == "fused" and seed % 2 and gemm.native.library() is not None:
        assert plan.attrs["kind"] == "fused" and "fused_init" in plan.arrays


@pytest.mark.parametrize("seed", range(6))
def test_pointwise_plan(seed: int, conv_impl: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(800 + seed)
    cin, cout = int(rng.choice([3, 16, 37, 64])), int(rng.choice([1, 16, 70]))
    xshape = (int(rng.integers(1, 3)), int(rng.integers(1, 14)), int(rng.integers(1, 14)), cin)
    stride = [1, 1] if seed < 3 else [int(v) for v in rng.integers(1, 4, size=2)]
    attrs = {"stride": stride, "pad_amount": [[0, 0], [0, 0]], "dilation": [1, 1], "group": 1}
    case = Case("Conv2d", [xshape], attrs, rng, weight=rng.normal(size=(1, 1, cin, cout)),
                w_axis=3 if seed % 2 else None, obw=16 if seed % 3 == 2 else 8)
    plan = _round_trip(case, monkeypatch)
    _expect_kind(plan, conv_impl)
    if conv_impl == "fused" and gemm.native.library() is not None:  # (requant_impl "torch" takes it away)
        assert plan.attrs["kind"] == "fused"


def test_conv_split_input_channels_plan(conv_impl: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """oneDNN's convolution on parts of the input channels: the parts are the plan's."""
    from openqnn.backends.htp.kernels import conv as conv_kernels

    if not conv_kernels._qconv_exact():  # the machine's oneDNN, whatever the conv_impl fixture takes away
        pytest.skip("oneDNN's int8 convolution is not exact here (it saturates without VNNI, or is capped below it): "
                    "no channel split is planned")
    rng = np.random.default_rng(11)
    attrs = {"stride": [1, 1], "pad_amount": [[1, 1], [1, 1]], "dilation": [1, 1], "group": 1}
    w = rng.choice([-1.0, 1.0], size=(3, 3, 256, 8)) * rng.uniform(0.9, 1.0, size=(3, 3, 256, 8))
    plan = _round_trip(Case("Conv2d", [(1, 5, 6, 256)], attrs, rng, weight=w, w_axis=3), monkeypatch)
    assert plan.attrs["parts"] == [[0, 64], [64, 128], [128, 192], [192, 256]]
    _expect_kind(plan, conv_impl)


@pytest.mark.parametrize("seed", range(6))
def test_transpose_conv2d_plan(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    case = transpose_conv_case(seed)
    assert _round_trip(case, monkeypatch).kernel == "htp.transpose_conv2d"


@pytest.mark.parametrize("op", ["Conv2d", "DepthWiseConv2d", "TransposeConv2d"])
def test_conv_float64_mode_plan(op: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(300)
    for _ in range(2):
        attrs = _conv_attrs(rng, (3, 3))
        if op == "TransposeConv2d":
            attrs.update(output_padding=[0, 0], group=1)
        elif op == "Conv2d":
            attrs["group"] = 1
        w = rng.normal(size=(3, 3, 1, 8)) if op == "DepthWiseConv2d" else rng.normal(size=(3, 3, 4, 4))
        case = Case(op, [(1, 9, 9, 4)], attrs, rng, weight=w, w_axis=3, **_variant(rng))
        plan = _round_trip(case, monkeypatch, "float64")
        assert plan.attrs["mode"] == "float64" and plan.attrs.get("kind", "core") in ("float_conv", "core")


def test_plan_falls_back_on_a_machine_without_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plan that chose a native kernel binds, where that library is missing, to the next kind it
    lists: the same bits."""
    rng = np.random.default_rng(5)
    attrs = {"stride": [1, 1], "pad_amount": [[1, 1], [1, 1]], "dilation": [1, 1]}
    case = Case("DepthWiseConv2d", [(1, 12, 12, 32)], attrs, rng, weight=rng.normal(size=(3, 3, 1, 32)), w_axis=3)
    step = BUILDERS["DepthWiseConv2d"](case.graph.nodes[0], HtpBuildContext(case.graph, V73), None)
    assert step.plan is not None
    if gemm.native.library() is not None and gemm.native.int8_available():
        assert step.plan.attrs["kind"] == "fused" and step.plan.attrs["kinds"][1:] == ["int8_conv", "float_conv"]
    monkeypatch.setattr(gemm.native, "int8_available", lambda: False)
    monkeypatch.setattr(conv, "_onednn_qconv_ok", lambda device: False)
    ref, fast = _run(bind_step(step.plan), case)
    np.testing.assert_array_equal(fast.astype(np.int64), ref)
    np.testing.assert_array_equal(ref, _run(step, case)[0])
