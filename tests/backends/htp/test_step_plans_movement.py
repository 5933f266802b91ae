"""Steps as data for the htp movement and resize kernels: each builder returns a step with a
:class:`StepPlan` whose attributes are JSON; the plan read back from JSON binds, without the graph or
any prepare-time analysis, to callables that give the same bits on both paths."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch
from test_pool_movement import ARCH, In, _movement_cases, enc, feeds_for, near, one_node, rand_enc

from openqnn.backends.htp.kernels import (
    HTP_KERNELS,
    HtpBuildContext,
    common,
    logical,
    movement,
    pooling,
    reduce,
    resize,
)
from openqnn.backends.htp.kernels.registry import HtpStep, bind_step, storage_dtype
from openqnn.backends.plan import StepPlan
from openqnn.ir.dtype import DType
from openqnn.ir.graph import Graph
from openqnn.ir.tensor import Encoding


def _fast_in(g: Graph, name: str, v: np.ndarray) -> torch.Tensor:
    e = g.tensors[name].encoding
    t = torch.from_numpy(np.ascontiguousarray(v))
    return t.to(storage_dtype(e.bitwidth)) if e is not None else t


def _outs(v: Any) -> list[np.ndarray]:
    vs = list(v) if isinstance(v, tuple) else [v]
    return [np.asarray(x.numpy() if isinstance(x, torch.Tensor) else x) for x in vs]


_NO_ANALYSIS = ("act_q", "flow", "static_value", "quantize_multiplier", "quantized_io", "_fixed_rows", "_pad_index",
                "resize_plan", "_counts", "_check", "_geometry", "mean_multiplier",
                "operand_params", "_raw", "_raw_statics", "_scaler_attrs")
_MODULES = [common, movement, resize, pooling, reduce, logical]


def check_plan(g: Graph, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch, kernel: str | None = None) -> StepPlan:
    """The node's step has a JSON plan; its plan read back binds (with no analysis) to the same bits."""
    node = g.nodes[0]
    step: HtpStep = HTP_KERNELS[node.op_type](node, HtpBuildContext(g, ARCH))
    plan = step.plan
    assert isinstance(plan, StepPlan), node.op_type
    if kernel is not None:
        assert plan.kernel == kernel
    assert all(isinstance(v, np.ndarray) for v in plan.arrays.values())
    back = StepPlan.from_json(json.loads(json.dumps(plan.to_json(), allow_nan=False)), plan.stored_arrays())
    assert back.to_json() == plan.to_json()

    with monkeypatch.context() as m:  # binding reads the plan only: no encodings, no graph, no analysis
        for mod in _MODULES:
            for name in _NO_ANALYSIS:
                if hasattr(mod, name):
                    m.setattr(mod, name, lambda *a, **k: (_ for _ in ()).throw(AssertionError("analysis on bind")))
        m.setattr(HtpBuildContext, "__getattribute__", lambda *a: (_ for _ in ()).throw(AssertionError("ctx on bind")))
        again = bind_step(back)

    feeds = feeds_for(g, rng)
    ref_in = [feeds[x] for x in step.inputs]
    fast_in = [_fast_in(g, x, feeds[x]) for x in step.inputs]
    assert again.inputs == step.inputs and again.outputs == step.outputs
    made_ref, made_fast = _outs(step.reference(*ref_in)), _outs(step.fast(*fast_in))
    back_ref, back_fast = _outs(again.reference(*ref_in)), _outs(again.fast(*fast_in))
    for a, b, c, d in zip(made_ref, back_ref, made_fast, back_fast):
        assert a.dtype == b.dtype and c.dtype == d.dtype
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(c, d)
        np.testing.assert_array_equal(b.astype(np.int64), d.astype(np.int64))
    return plan


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("same", [True, False])
def test_movement_plans(bits: int, same: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(bits + 10 * same)
    for op, ins, attrs, nout in _movement_cases(rng, bits):
        assert ins[0].e is not None
        g = one_node(op, ins, attrs, [near(rng, ins[0].e, same) for _ in range(nout)])
        check_plan(g, rng, monkeypatch)


def test_static_inputs_are_constant_plans(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    e = rand_enc(rng, 8)
    w = rng.standard_normal((4, 6)).astype(np.float32)
    cases = [("Reshape", [In((4, 6), e, data=w)], {"shape": [24]}, 1),
             ("Transpose", [In((4, 6), e, data=w)], {"perm": [1, 0]}, 1),
             ("Split", [In((4, 6), e, data=w)], {"axis": 1, "split_index": [2]}, 2),
             ("Gather", [In((4, 6), e, data=w), In((2,), None, DType.INT_64, np.array([3, 0]))], {"axis": 0}, 1),
             ("Concat", [In((4, 6), e, data=w), In((4, 6), e, data=-w)], {"axis": 0}, 1)]
    for op, ins, attrs, nout in cases:
        g = one_node(op, ins, attrs, [near(rng, e) for _ in range(nout)])
        assert check_plan(g, rng, monkeypatch, "htp.const").inputs == ()


def test_concat_and_raw_and_cast_plans(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    e0, e1 = rand_enc(rng, 8), rand_enc(rng, 8)
    out = rand_enc(rng, 8, max(e0.scale[0], e1.scale[0]) * 1.2)
    w = rng.standard_normal((2, 3, 4)).astype(np.float32)
    static = Encoding(8, tuple(float(v) for v in np.abs(w).max(axis=(0, 2)) / 120), (-128,) * 3, axis=1,
                      symmetric=True)
    g = one_node("Concat", [In((2, 3, 5), e0), In((2, 3, 4), static, data=w), In((2, 3, 2), e1)], {"axis": -1}, [out])
    plan = check_plan(g, rng, monkeypatch, "htp.concat")
    assert [("static" in p) for p in plan.attrs["parts"]] == [False, True, False]

    ids = In((2, 6), None, DType.INT_64)
    check_plan(one_node("Reshape", [ids], {"shape": [3, 4]}, [None]), rng, monkeypatch, "htp.reshape")
    check_plan(one_node("Gather", [ids, In((3,), None, DType.INT_64, np.array([5, 0, 2]))], {"axis": 1}, [None]),
               rng, monkeypatch, "htp.gather")
    check_plan(one_node("Concat", [ids, In((2, 1), None, DType.INT_64, np.array([[7], [8]]))], {"axis": 1}, [None]),
               rng, monkeypatch, "htp.concat")
    assert check_plan(one_node("Cast", [ids], {"dtype": DType.INT_32}, [None]), rng, monkeypatch,
                      "htp.copy").attrs["flow"] == {"raw": "INT_32"}
    e = enc(8, 0.1, 3)
    check_plan(one_node("Cast", [In((3, 4), e)], {"dtype": DType.FLOAT_16}, [enc(8, 0.12, 10)]), rng, monkeypatch,
               "htp.copy")
    check_plan(one_node("Cast", [In((3, 4), e)], {"dtype": DType.INT_32}, [None]), rng, monkeypatch, "htp.cast_table")
    check_plan(one_node("Cast", [In((3, 4), e)], {"dtype": DType.BOOL_8}, [None]), rng, monkeypatch, "htp.cast_table")
    check_plan(one_node("Cast", [In((3, 4), None, DType.INT_32)], {"dtype": DType.FLOAT_32}, [enc(16, 0.01, 30000)]),
               rng, monkeypatch, "htp.cast_codes")


def test_transpose_image_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(6)
    e = rand_enc(rng, 8)
    plan = check_plan(one_node("Transpose", [In((2, 3, 5, 7), e)], {"perm": [0, 2, 3, 1]}, [e]), rng, monkeypatch)
    assert plan.attrs["nchw3_to_nhwc"] is True


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("interp, mode, antialias", [
    ("nearest", "asymmetric", False),
    ("nearest", "tf_crop_and_resize", False),
    ("linear", "half_pixel", False),
    ("linear", "pytorch_half_pixel", True),
    ("linear", "tf_crop_and_resize", False),
    ("cubic", "half_pixel", False),
])
def test_resize_plans(bits: int, interp: str, mode: str, antialias: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(bits)
    for out_hw in [(11, 7), (3, 4), (5, 6)]:
        e = rand_enc(rng, bits)
        attrs: dict[str, Any] = {"output_shape": [2, *out_hw, 3], "interpolation_mode": interp,
                                 "transformation_mode": mode, "antialias": antialias, "extrapolation_value": 0.25}
        if mode == "tf_crop_and_resize":
            attrs["roi"] = [0.0, -0.2, 0.1, 0.0, 1.0, 0.9, 1.3, 1.0]
        g = one_node("Resize", [In((2, 5, 6, 3), e)], attrs, [near(rng, e, same=interp == "nearest")])
        kernel = "htp.copy" if out_hw == (5, 6) else "htp.resize_nearest" if interp == "nearest" else "htp.resize_filter"
        plan = check_plan(g, rng, monkeypatch, kernel)
        assert ("mask" in plan.arrays) == (mode == "tf_crop_and_resize" and kernel != "htp.copy")
    raw = one_node("Resize", [In((1, 2, 3, 1), None, DType.INT_64)],
                   {"output_shape": [1, 4, 5, 1], "interpolation_mode": "nearest"}, [None])
    assert check_plan(raw, rng, monkeypatch, "htp.resize_nearest").attrs["flow"] == {"raw": "INT_64"}


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("op", ["PoolMax2d", "PoolAvg2d", "PoolMax3d", "PoolAvg3d"])
def test_pool_plans(op: str, bits: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(bits)
    n = 3 if op.endswith("3d") else 2
    shape = (2, *([7, 6, 5][:n]), 3)
    for same, pad, count_pad in [(True, 0, False), (False, 1, False), (True, 1, True), (False, 1, True)]:
        e = rand_enc(rng, bits)
        attrs = {"filter_size": [3] * n, "stride": [2] * n, "pad_amount": [[pad, pad]] * n}
        if op.startswith("PoolAvg"):
            attrs["count_pad_for_edges"] = count_pad
        g = one_node(op, [In(shape, e)], attrs, [near(rng, e, same)])
        plan = check_plan(g, rng, monkeypatch, "htp.pool_max" if "Max" in op else "htp.pool_avg")
        if "Avg" in op:
            assert ("mult" in plan.arrays) == (not same)


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("op", ["ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin"])
def test_reduce_plans(op: str, bits: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(bits)
    for axes, keep, same in [([1, 2], True, True), ([0, 3], False, False), ([3], True, False), ([], True, False)]:
        e = rand_enc(rng, bits)
        scale = e.scale[0] * 3 if op == "ReduceSum" else e.scale[0]
        out = e if same and op != "ReduceSum" else rand_enc(rng, bits, scale * float(rng.uniform(0.8, 1.3)))
        g = one_node(op, [In((2, 5, 4, 3), e)], {"axes": axes, "keep_dims": keep}, [out])
        kernel = ("htp.reshape" if not axes else "htp.reduce_minmax" if op in ("ReduceMax", "ReduceMin")
                  else "htp.reduce_sum")
        check_plan(g, rng, monkeypatch, kernel)
    wide = one_node(op, [In((4, 300, 200), e)], {"axes": [1, 2], "keep_dims": False}, [out])
    check_plan(wide, rng, monkeypatch)


@pytest.mark.parametrize("exclusive, reverse", [(False, False), (True, False), (False, True), (True, True)])
def test_cumulative_sum_plans(exclusive: bool, reverse: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    g = one_node("CumulativeSum", [In((3, 7), None, DType.INT_32)], {"axis": 1, "exclusive": exclusive,
                                                                    "reverse": reverse}, [None])
    assert check_plan(g, rng, monkeypatch, "htp.cumsum").attrs["dtype"] == g.tensors[g.outputs[0]].dtype.name


def test_logical_plans(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(11)
    i64, b8 = DType.INT_64, DType.BOOL_8
    ids, mask = In((2, 5), None, i64), In((2, 5), None, b8)
    const = In((1, 5), None, i64, np.arange(5).reshape(1, 5))
    for op, kernel in [("ElementWiseAdd", "htp.int_arith"), ("ElementWiseMultiply", "htp.int_arith"),
                       ("ElementWiseSubtract", "htp.int_arith")]:
        check_plan(one_node(op, [ids, const], {}, [None]), rng, monkeypatch, kernel)
    for op in ["ElementWiseAnd", "ElementWiseOr", "ElementWiseXor"]:
        check_plan(one_node(op, [mask, mask], {}, [None]), rng, monkeypatch, "htp.logic")
    check_plan(one_node("ElementWiseNot", [mask], {}, [None]), rng, monkeypatch, "htp.logic")
    e, e2 = enc(8, 0.05, 100), enc(16, 0.002, 30000)
    for op in ["ElementWiseEqual", "ElementWiseGreater", "ElementWiseLessEqual"]:
        check_plan(one_node(op, [ids, const], {}, [None]), rng, monkeypatch, "htp.compare")
        check_plan(one_node(op, [In((2, 5), e), In((2, 5), e)], {}, [None]), rng, monkeypatch, "htp.compare")
        plan = check_plan(one_node(op, [In((2, 5), e), In((2, 5), e2)], {}, [None]), rng, monkeypatch, "htp.compare")
        assert all("multiplier" in a for a in plan.attrs["scalers"])
        w = In((1, 5), e2, data=np.linspace(-1, 1, 5, dtype=np.float32).reshape(1, 5))
        check_plan(one_node(op, [In((2, 5), e), w], {}, [None]), rng, monkeypatch, "htp.compare")
    check_plan(one_node("ElementWiseIsNan", [In((2, 5), e)], {}, [None]), rng, monkeypatch, "htp.predicate")
    out = enc(8, 0.06, 90)
    w = In((2, 5), e2, data=rng.standard_normal((2, 5)).astype(np.float32))
    check_plan(one_node("ElementWiseSelect", [mask, In((2, 5), e), w], {}, [out]), rng, monkeypatch, "htp.select")
    cmask = In((2, 5), None, b8, rng.integers(0, 2, (2, 5)).astype(np.bool_))
    check_plan(one_node("ElementWiseSelect", [cmask, In((2, 5), e), In((2, 5), e2)], {}, [out]), rng, monkeypatch,
               "htp.select")
    check_plan(one_node("ElementWiseSelect", [mask, ids, const], {}, [None]), rng, monkeypatch, "htp.select")
