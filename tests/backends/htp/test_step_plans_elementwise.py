"""Steps as data for the element-wise and normalization kernels: each quantized single-op graph's step
carries a StepPlan whose attributes survive JSON, and binding the plan read back (its arrays
read-only, as from a context) does no prepare-time analysis and gives the bits of the step prepare
made, on both paths."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_elementwise import BW, Spec, _calibrate_output, _enc, _feeds, _graph, _param_enc, _rand_enc

from openqnn.backends.htp.arch import ARCHS
from openqnn.backends.htp.kernels import HTP_KERNELS, HtpBuildContext, elementwise
from openqnn.backends.htp.kernels.registry import bind_step, storage_dtype
from openqnn.backends.plan import StepPlan
from openqnn.ir import Graph
from openqnn.ir.tensor import Encoding


def _no_analysis(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*a: object, **k: object) -> None:
        raise AssertionError("prepare-time work while binding a plan")

    for name in ("quantize_multiplier", "_per_code", "act_params", "operand_params"):
        monkeypatch.setattr(elementwise, name, refuse)


def _round_trip(g: Graph, feeds: dict[str, np.ndarray], kernel: str, monkeypatch: pytest.MonkeyPatch) -> StepPlan:
    node = g.nodes[0]
    step = HTP_KERNELS[node.op_type](node, HtpBuildContext(g, ARCHS["v73"]))
    plan = step.plan
    assert plan is not None and plan.kernel == kernel and plan.op_type == node.op_type
    assert list(plan.inputs) == step.inputs and list(plan.outputs) == list(node.outputs)
    arrays = {}
    for k, v in plan.arrays.items():
        a = np.array(v)
        a.flags.writeable = False
        arrays[k] = a
    back = StepPlan.from_json(json.loads(json.dumps(plan.to_json(), allow_nan=False)), arrays)
    assert back.to_json() == plan.to_json()
    with monkeypatch.context() as m:
        _no_analysis(m)
        again = bind_step(back)
    ref_in = [np.asarray(feeds[x], np.int64) for x in step.inputs]
    bits = [g.tensors[x].encoding.bitwidth for x in step.inputs]  # type: ignore[union-attr]

    def fast_in() -> list[torch.Tensor]:
        return [torch.from_numpy(x.copy()).to(storage_dtype(b)) for x, b in zip(ref_in, bits)]

    want = step.reference(*ref_in)
    np.testing.assert_array_equal(again.reference(*ref_in), want)
    np.testing.assert_array_equal(step.fast(*fast_in()).numpy().astype(np.int64), want)
    got = again.fast(*fast_in())
    assert got.dtype == storage_dtype(g.tensors[node.outputs[0]].encoding.bitwidth)  # type: ignore[union-attr]
    np.testing.assert_array_equal(got.numpy().astype(np.int64), want)
    return plan


def _run(g: Graph, kernel: str, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch,
         fixed_out: Encoding | None = None) -> StepPlan:
    feeds = _feeds(g, rng)
    if fixed_out is None:
        _calibrate_output(g, feeds, g.tensors[g.inputs[0]].encoding.bitwidth, rng)  # type: ignore[union-attr]
    else:
        g.tensors["out"].encoding = fixed_out
    return _round_trip(g, feeds, kernel, monkeypatch)


@pytest.fixture(params=["tables", "direct"])
def fast_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "direct":
        monkeypatch.setattr(elementwise, "_TABLE_MAX", 0)
    return str(request.param)


# -- element-wise ------------------------------------------------------------------------------

_BINARY = {"ElementWiseAdd": "htp.add", "ElementWiseSubtract": "htp.add", "ElementWiseMultiply": "htp.multiply",
           "ElementWiseDivide": "htp.divide", "ElementWiseMaximum": "htp.max_min",
           "ElementWiseMinimum": "htp.max_min"}


@pytest.mark.parametrize("bw", BW)
@pytest.mark.parametrize("op", sorted(_BINARY))
def test_binary_plans(op: str, bw: int, fast_mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng([bw, len(op)])
    c1 = rng.uniform(0.5, 2.0, (1,))
    c4 = rng.uniform(0.5, 2.0, (3, 1))
    for other in [((2, 3, 4), _rand_enc(rng, bw), None), ((3, 1), _rand_enc(rng, bw), None),
                  ((1,), _param_enc(c1), c1), ((3, 1), _param_enc(c4), c4)]:
        plan = _run(_graph(op, [((2, 3, 4), _rand_enc(rng, bw), None), other]), _BINARY[op], rng, monkeypatch)
        one_code_space = other[2] is not None and other[2].size == 1
        tabled = fast_mode == "tables" and (bw == 8 or one_code_space) and (other[2] is None or one_code_space)
        assert ("table" in plan.arrays) == tabled
        if tabled and other[2] is None:
            assert plan.arrays["table"].size == 1 << 16


@pytest.mark.parametrize("bw", BW)
@pytest.mark.parametrize("op,attrs", [("Relu", {}), ("ReluMinMax", {"min_value": -0.25, "max_value": 0.5})])
def test_relu_plans(op: str, attrs: dict, bw: int, fast_mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(bw)
    _run(_graph(op, [((2, 5, 7), _rand_enc(rng, bw), None)], attrs), "htp.relu", rng, monkeypatch)
    enc = _enc(-1.0, 3.0, bw)
    _run(_graph(op, [((2, 5, 7), enc, None)], attrs), "htp.relu_clip", rng, monkeypatch, fixed_out=enc)
    if op == "Relu":
        enc = _enc(0.0, 3.0, bw)
        _run(_graph(op, [((2, 5, 7), enc, None)], attrs), "htp.relu_noop", rng, monkeypatch, fixed_out=enc)


@pytest.mark.parametrize("bw", BW)
def test_prelu_plans(bw: int, fast_mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(10 + bw)
    shape = (2, 3, 4, 8)
    coeff = rng.uniform(0.0, 0.5, (8,))
    alpha = np.array([-0.2])
    specs: list[tuple[Spec, str]] = [(((8,), _param_enc(coeff), coeff), "htp.prelu"),
                                     (((1,), _param_enc(alpha), alpha), "htp.leaky_relu"),
                                     (((4, 8), _rand_enc(rng, bw), None), "htp.prelu")]
    for spec, kernel in specs:
        _run(_graph("Prelu", [(shape, _rand_enc(rng, bw), None), spec]), kernel, rng, monkeypatch)
