"""Steps as data for the GEMM kernels (issue 12): FullyConnected, MatMul, Conv2d, DepthWiseConv2d and
TransposeConv2d plans are JSON plus named arrays, and bind back to the same bits of both paths without
analysing anything again (no requantization multipliers, no static operands, no proofs)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch
from test_conv_linear import BUILDERS, V73, Case, _conv_attrs, _variant, conv_impl  # noqa: F401  (a fixture)

from openqnn.backends.htp.kernels import conv, gemm, linear, requant
from openqnn.backends.htp.kernels.registry import HtpBuildContext, HtpStep, bind_step, storage_dtype
from openqnn.backends.plan import StepPlan

# prepare-time work a binder must not do: it reads the plan
_ANALYSIS = [(requant, "quantize_multiplier"), (requant, "requant_for"), (gemm, "static_operand"), (gemm, "bias_q"),
             (gemm, "int8_split"), (gemm, "qconv_bound"), (linear, "requant_for"), (linear, "static_operand"),
             (linear, "bias_q"), (conv, "requant_for"), (conv, "static_operand"), (conv, "bias_q"),
             (conv, "qconv_bound"), (conv, "channel_parts"), (conv, "_float32_exact")]


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
    back = StepPlan.from_json(doc, dict(plan.arrays))
    assert back.to_json() == plan.to_json()
    with monkeypatch.context() as m:
        for mod, name in _ANALYSIS:
            if hasattr(mod, name):
                m.setattr(mod, name, _boom)
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
