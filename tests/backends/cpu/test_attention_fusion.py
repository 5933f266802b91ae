"""The cpu plan's attention fusion: ``MatMul(Q, K^T) -> [scale] -> [+ mask] -> Softmax -> MatMul(., V)`` as one
step must compute what the unfused plan and ONNX Runtime compute, leave alone chains it cannot take whole,
and read back from a context's step plans."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import openqnn
from helpers import ort_run
from openqnn.backends.cpu.plan import Plan
from openqnn.backends.cpu.steps import plan_steps


def _attention(scale_op: str | None = "Div", mask: str | None = "bias", axis: int = -1, heads: int = 2, s: int = 7,
               d: int = 5, scores_out: bool = False) -> onnx.ModelProto:
    """q, k, v inputs [1, heads, s, d]; mask input [1, 1, 1, s] (``bias``) or [1, heads, s, s] (``full``)."""
    f = TensorProto.FLOAT
    ins = [helper.make_tensor_value_info(n, f, [1, heads, s, d]) for n in ("q", "k", "v")]
    nodes, inits = [], []
    nodes.append(helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]))
    nodes.append(helper.make_node("MatMul", ["q", "kt"], ["scores"]))
    x = "scores"
    if scale_op is not None:
        inits.append(numpy_helper.from_array(np.array(np.sqrt(d) if scale_op == "Div" else 1 / np.sqrt(d), np.float32),
                                             "c"))
        nodes.append(helper.make_node(scale_op, [x, "c"], ["scaled"]))
        x = "scaled"
    if mask is not None:
        ins.append(helper.make_tensor_value_info("mask", f, [1, 1, 1, s] if mask == "bias" else [1, heads, s, s]))
        nodes.append(helper.make_node("Add", [x, "mask"], ["masked"]))
        x = "masked"
    nodes.append(helper.make_node("Softmax", [x], ["p"], axis=axis))
    nodes.append(helper.make_node("MatMul", ["p", "v"], ["y"]))
    outs = [helper.make_tensor_value_info("y", f, None)]
    if scores_out:
        outs.append(helper.make_tensor_value_info("scores", f, None))
    g = helper.make_graph(nodes, "attention", ins, outs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _feeds(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for i in model.graph.input:
        shape = [d.dim_value for d in i.type.tensor_type.shape.dim]
        feeds[i.name] = rng.standard_normal(shape).astype(np.float32)
    if "mask" in feeds:
        feeds["mask"] = np.where(rng.random(feeds["mask"].shape) < 0.3, -10000.0, 0.0).astype(np.float32)
    return feeds


def _check(model: onnx.ModelProto) -> Plan:
    graph = openqnn.convert(model)
    fused, plain = Plan(graph), Plan(graph, fuse=False)
    feeds = _feeds(model)
    ours, unfused, ref = fused.run(feeds), plain.run(feeds), ort_run(model, feeds)
    for o, r in zip(model.graph.output, ref):
        np.testing.assert_allclose(ours[o.name], unfused[o.name], rtol=1e-5, atol=1e-5, err_msg=o.name)
        np.testing.assert_allclose(ours[o.name], r, rtol=1e-5, atol=1e-5, err_msg=o.name)
    return fused


@pytest.mark.parametrize("scale_op", ["Div", "Mul", None])
@pytest.mark.parametrize("mask", ["bias", "full", None])
def test_attention_chain_runs_as_one_step(scale_op: str | None, mask: str | None) -> None:
    plan = _check(_attention(scale_op, mask))
    assert plan.op_types.count("Attention") == 1
    assert "Softmax" not in plan.op_types and "MatMul" not in plan.op_types


def test_chains_it_cannot_take_whole_stay_apart() -> None:
    """Softmax over another axis; the scores also a graph output."""
    for model in (_attention(axis=2), _attention(scores_out=True)):
        plan = _check(model)
        assert "Attention" not in plan.op_types and "Softmax" in plan.op_types


def test_the_encoder_fuses_every_layer_and_matches_onnx_runtime(tmp_path) -> None:
    torch = pytest.importorskip("torch")

    class Layer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qkv = torch.nn.ModuleList(torch.nn.Linear(16, 16) for _ in range(3))

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            q, k, v = (m(x).reshape(1, 9, 4, 4).transpose(1, 2) for m in self.qkv)
            p = torch.softmax(q @ k.transpose(-1, -2) / 2.0 + mask, dim=-1)
            return (p @ v).transpose(1, 2).reshape(1, 9, 16)

    torch.manual_seed(0)
    x, mask = torch.randn(1, 9, 16), torch.zeros(1, 1, 1, 9)
    mask[..., -2:] = -10000.0
    path = tmp_path / "layer.onnx"
    torch.onnx.export(Layer().eval(), (x, mask), str(path), input_names=["x", "mask"], output_names=["y"], dynamo=False)
    graph = openqnn.convert(path)
    plan = Plan(graph)
    assert plan.op_types.count("Attention") == 1
    feeds = {"x": x.numpy(), "mask": mask.numpy()}
    np.testing.assert_allclose(plan.run(feeds)["y"], ort_run(onnx.load(str(path)), feeds)[0], rtol=1e-5, atol=1e-5)


def test_the_attention_step_reads_back_from_its_plan() -> None:
    """A context holds the step as data: bound from its plan read back, it computes the same."""
    model = _attention("Div", "bias")
    graph = openqnn.convert(model)
    plans = plan_steps(graph)
    assert [p.kernel for p in plans].count("cpu.attention") == 1
    feeds = _feeds(model, 1)
    fresh = Plan(graph).run(feeds)["y"]
    read = Plan.from_plans(graph, plans).run(feeds)["y"]
    np.testing.assert_array_equal(fresh, read)


def _split_heads(q_perm: tuple[int, ...] = (0, 2, 1, 3), k_perm: tuple[int, ...] = (0, 2, 3, 1), heads: int = 3,
                 s: int = 11, d: int = 6, merge: bool = True, b: int = 2) -> onnx.ModelProto:
    """Projections' rows x_q, x_k, x_v [b, s, heads d] split into heads by Reshape + Transpose (K transposed
    straight to [b, h, d, s] by default), attention with a padding mask, the heads merged back (``merge``)."""
    f = TensorProto.FLOAT
    ins = [helper.make_tensor_value_info(n, f, [b, s, heads * d]) for n in ("xq", "xk", "xv")]
    ins.append(helper.make_tensor_value_info("mask", f, [b, 1, 1, s]))
    shape = numpy_helper.from_array(np.array([b, s, heads, d], np.int64), "split")
    merged = numpy_helper.from_array(np.array([b, s, heads * d], np.int64), "merged")
    c = numpy_helper.from_array(np.array(np.sqrt(d), np.float32), "c")
    nodes = []
    for n, perm in (("xq", q_perm), ("xk", k_perm), ("xv", (0, 2, 1, 3))):
        nodes.append(helper.make_node("Reshape", [n, "split"], [n + "4"]))
        nodes.append(helper.make_node("Transpose", [n + "4"], [n + "h"], perm=list(perm)))
    k_ready = "xkh" if k_perm == (0, 2, 3, 1) else "kt"
    if k_ready == "kt":
        nodes.append(helper.make_node("Transpose", ["xkh"], ["kt"], perm=[0, 1, 3, 2]))
    nodes += [helper.make_node("MatMul", ["xqh", k_ready], ["scores"]),
              helper.make_node("Div", ["scores", "c"], ["scaled"]),
              helper.make_node("Add", ["scaled", "mask"], ["masked"]),
              helper.make_node("Softmax", ["masked"], ["p"], axis=-1),
              helper.make_node("MatMul", ["p", "xvh"], ["ctx" if merge else "y"])]
    if merge:
        nodes += [helper.make_node("Transpose", ["ctx"], ["ctx_t"], perm=[0, 2, 1, 3]),
                  helper.make_node("Reshape", ["ctx_t", "merged"], ["y"])]
    g = helper.make_graph(nodes, "heads", ins, [helper.make_tensor_value_info("y", f, None)], [shape, merged, c])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("merge", [True, False])
@pytest.mark.parametrize("k_perm", [(0, 2, 3, 1), (0, 2, 1, 3)])
def test_the_head_split_and_merge_run_inside_the_attention_step(merge: bool, k_perm: tuple[int, ...]) -> None:
    """The Reshape / Transpose nodes that split the projections into heads and merge them back join the step:
    one step for the whole chain, reading the projections' rows where they lie."""
    model = _split_heads(k_perm=k_perm, merge=merge)
    plan = _check(model)
    assert plan.op_types == ["Attention"]
    doc = next(p for p in plan_steps(openqnn.convert(model)) if p.kernel == "cpu.attention").attrs
    # (the converter folds K's last transpose into the MatMul's transpose_in1)
    assert doc["heads"] == {"pre": [2, 2, 2], "post": 2 if merge else 0}


def test_native_attention_matches_pytorchs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The native kernel (where built) and PyTorch's scaled_dot_product_attention agree, for the head split and
    for operands given as they are."""
    from openqnn.backends.cpu import native

    if native.library() is None:
        pytest.skip("the native float32 kernels are not built here")
    for model in (_split_heads(), _attention("Mul", "full", heads=3, s=21, d=40)):
        graph = openqnn.convert(model)
        feeds = _feeds(model, 2)
        with_native = Plan(graph)
        assert [p for p in with_native.paths if p[0] == "Attention"] == [("Attention", "native")]
        ours = with_native.run(feeds)
        monkeypatch.setenv("OPENQNN_CPU_NATIVE", "0")
        monkeypatch.setattr(native, "library", lambda: None)
        sdpa = Plan(graph)
        assert [p for p in sdpa.paths if p[0] == "Attention"] == [("Attention", "sdpa")]
        np.testing.assert_allclose(ours["y"], sdpa.run(feeds)["y"], rtol=1e-5, atol=1e-6)
        monkeypatch.undo()


def test_a_fully_masked_row_gives_nan_as_softmax_does_or_zeros_under_the_guard() -> None:
    model = _attention(None, "full", heads=1, s=4, d=3)
    graph = openqnn.convert(model)
    feeds = _feeds(model)
    feeds["mask"][0, 0, 1, :] = -np.inf  # (a runtime mask: the converter's mask pass does not see it)
    plan = Plan(graph)
    y = plan.run(feeds)["y"]
    assert np.isfinite(np.delete(y[0, 0], 1, axis=0)).all()
    # (the native kernel gives Softmax's NaN; PyTorch's scaled_dot_product_attention, where it runs, zeros)
    assert np.isnan(y[0, 0, 1]).all() if ("Attention", "native") in plan.paths else not np.isfinite(y[0, 0, 1]).any() or (
        y[0, 0, 1] == 0).all()
    import torch

    from openqnn.backends.cpu import native

    if native.library() is not None:
        q = np.random.default_rng(0).standard_normal((1, 1, 4, 3)).astype(np.float32)
        mask = np.zeros((1, 1, 4, 4), np.float32)
        mask[0, 0, 2] = -np.inf
        t = [torch.from_numpy(a) for a in (q, mask)]
        att = native.Attention((1, 1, 4, 4, 3, 3), 0.5, (12, 12, 3, 1), (12, 12, 3, 1), (12, 12, 3, 1), (12, 12, 3, 1),
                               (1, 1, 4, 3), zero_empty=True)
        out = att.run(t[0], t[0], t[0], t[1]).numpy()
        assert (out[0, 0, 2] == 0).all() and np.isfinite(out).all()


def test_a_head_split_that_needs_a_copy_stays_apart() -> None:
    """Q's heads made by a Reshape that merges the batch and head axes of a transposed tensor (no view): that split
    stays its own steps; K's transpose joins the attention step."""
    f = TensorProto.FLOAT
    b, s, h, d = 2, 5, 3, 4
    ins = [helper.make_tensor_value_info("xq", f, [b, s, h, d]),
           *(helper.make_tensor_value_info(n, f, [b * h, s, d]) for n in ("k", "v"))]
    shape = numpy_helper.from_array(np.array([b * h, s, d], np.int64), "bh")
    nodes = [helper.make_node("Transpose", ["xq"], ["qt"], perm=[0, 2, 1, 3]),
             helper.make_node("Reshape", ["qt", "bh"], ["q"]),
             helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["q", "kt"], ["scores"]),
             helper.make_node("Softmax", ["scores"], ["p"], axis=-1),
             helper.make_node("MatMul", ["p", "v"], ["y"])]
    g = helper.make_graph(nodes, "copy", ins, [helper.make_tensor_value_info("y", f, None)], [shape])
    plan = _check(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    assert plan.op_types == ["Transpose", "Reshape", "Attention"]
    assert next(p for p in plan_steps(openqnn.convert(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])))
                if p.kernel == "cpu.attention").attrs["heads"] == {"pre": [0, 1, 0], "post": 0}


def test_a_broken_head_split_in_a_plan_is_refused() -> None:
    from openqnn.errors import ContextError

    model = _split_heads()
    graph = openqnn.convert(model)
    plans = plan_steps(graph)
    step = next(p for p in plans if p.kernel == "cpu.attention")
    for bad in ({"pre": [2, 2], "post": 2}, {"pre": [9, 2, 2], "post": 2}, {"pre": [1, 3, 2], "post": 2}, "x"):
        step.attrs["heads"] = bad
        with pytest.raises(ContextError, match=r"cpu\.attention step holds|do not read one another's outputs"):
            Plan.from_plans(graph, plans)


def test_pytorchs_exported_sdpa_fuses_whole(tmp_path) -> None:
    """torch.onnx's scaled_dot_product_attention (Q and K each scaled by a scalar, ``Where(IsNaN(p), 0, p)`` after
    the Softmax: Hugging Face's exports) runs as one step. (The converter's finite_attention_masks pass makes the
    mask's -inf -1e4, so no row is all -inf here: the guard's zeros are the kernel's, tested above.)"""
    torch = pytest.importorskip("torch")

    class Layer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qkv = torch.nn.ModuleList(torch.nn.Linear(24, 24) for _ in range(3))

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            q, k, v = (m(x).reshape(1, 10, 3, 8).transpose(1, 2) for m in self.qkv)
            y = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            return y.transpose(1, 2).reshape(1, 10, 24)

    torch.manual_seed(0)
    x, mask = torch.randn(1, 10, 24), torch.ones(1, 1, 10, 10, dtype=torch.bool)  # (a boolean mask: the guard)
    mask[..., -3:] = False
    path = tmp_path / "sdpa.onnx"
    torch.onnx.export(Layer().eval(), (x, mask), str(path), input_names=["x", "mask"], output_names=["y"],
                      dynamo=False, opset_version=17)
    graph = openqnn.convert(path)
    assert {"ElementWiseIsNan", "ElementWiseSelect"} <= {n.op_type for n in graph.nodes}
    plan = Plan(graph)
    assert plan.op_types == ["FullyConnected*3", "ElementWiseSelect", "Attention"]  # (the Select: the mask's -inf)
    feeds = {"x": x.numpy(), "mask": mask.numpy()}
    ours, ref = plan.run(feeds)["y"], ort_run(onnx.load(str(path)), feeds)[0]
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(ours, Plan.from_plans(graph, plan_steps(graph)).run(feeds)["y"])


def test_post_ln_residual_layer_norm_joins_the_gemm_step() -> None:
    """FullyConnected + residual Add + LayerNorm (BERT's post-LN) is one step, LayerNorm applied in place on the
    GEMM's output; the same values as the unfused plan and ONNX Runtime, and from its plan read back."""
    f = TensorProto.FLOAT
    rng = np.random.default_rng(3)
    w, b = rng.standard_normal((24, 40)).astype(np.float32), rng.standard_normal(40).astype(np.float32)
    gm, bt = rng.standard_normal(40).astype(np.float32), rng.standard_normal(40).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["fc"]),
             helper.make_node("Add", ["fc", "r"], ["s"]),
             helper.make_node("LayerNormalization", ["s", "g", "bt"], ["y"], axis=-1, epsilon=1e-5)]
    g = helper.make_graph(nodes, "postln", [helper.make_tensor_value_info("x", f, [1, 7, 24]),
                                            helper.make_tensor_value_info("r", f, [1, 7, 40])],
                          [helper.make_tensor_value_info("y", f, None)],
                          [numpy_helper.from_array(a, n) for a, n in ((w, "w"), (b, "b"), (gm, "g"), (bt, "bt"))])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    plan = _check(model)
    assert plan.op_types == ["FullyConnected+ElementWiseAdd+LayerNorm"]
    graph = openqnn.convert(model)
    feeds = _feeds(model, 4)
    np.testing.assert_array_equal(Plan(graph).run(feeds)["y"], Plan.from_plans(graph, plan_steps(graph)).run(feeds)["y"])
