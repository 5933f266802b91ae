"""The cpu plan's epilogue fusion (Conv2d / FullyConnected + ElementWiseAdd + Relu/ReluMinMax) and the
oneDNN kernels behind it: fused plans must compute what the unfused plan and ONNX Runtime compute,
and fusion must leave alone whatever another reader or the caller still needs."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import openqnn
from helpers import FLOAT, make_model, ort_run
from openqnn.backends.cpu.kernels.conv import Epilogue, fusable
from openqnn.backends.cpu.plan import Plan, fuse_epilogues, keep_freed_memory


def _conv(name: str, x: str, out: str, cin: int, cout: int, rng: np.random.Generator, k: int = 3,
          pads: tuple[int, int, int, int] = (1, 1, 1, 1), group: int = 1, stride: int = 1,
          bias: bool = True) -> tuple[onnx.NodeProto, list[onnx.TensorProto]]:
    w = numpy_helper.from_array((rng.standard_normal((cout, cin // group, k, k)) * 0.3).astype(np.float32), f"{name}_w")
    inits = [w]
    ins = [x, w.name]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(cout).astype(np.float32), f"{name}_b"))
        ins.append(inits[-1].name)
    node = helper.make_node("Conv", ins, [out], name=name, kernel_shape=[k, k], pads=list(pads), group=group,
                            strides=[stride, stride])
    return node, inits


def _clip(x: str, out: str, lo: float | None, hi: float | None) -> tuple[onnx.NodeProto, list[onnx.TensorProto]]:
    inits, ins = [], [x]
    for v, n in ((lo, f"{out}_lo"), (hi, f"{out}_hi")):
        if v is None:
            ins.append("")
        else:
            inits.append(numpy_helper.from_array(np.array(v, np.float32), n))
            ins.append(n)
    while ins[-1] == "":
        ins.pop()
    return helper.make_node("Clip", ins, [out], name=out), inits


def _plans(model: onnx.ModelProto) -> tuple[openqnn.Graph, Plan, Plan]:
    graph = openqnn.convert(model)
    return graph, Plan(graph), Plan(graph, fuse=False)


def _check(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> Plan:
    """Fused and unfused plans agree with each other and with ONNX Runtime; returns the fused plan."""
    _, fused, plain = _plans(model)
    ours, unfused, ref = fused.run(feeds), plain.run(feeds), ort_run(model, feeds)
    for o, r in zip(model.graph.output, ref):
        np.testing.assert_allclose(ours[o.name], unfused[o.name], rtol=1e-5, atol=1e-5, err_msg=o.name)
        np.testing.assert_allclose(ours[o.name], r, rtol=1e-4, atol=1e-4, err_msg=o.name)
    return fused


def _residual_block(rng: np.random.Generator, act: str = "Relu", c: int = 8) -> onnx.ModelProto:
    """x -> stem -> relu = h; h -> conv_a -> relu -> conv_b -> (+ h) -> act -> y (a ResNet basic block)."""
    n0, i0 = _conv("stem", "x", "h0", c, c, rng, k=1, pads=(0, 0, 0, 0))
    n1, i1 = _conv("conv_a", "h", "a", c, c, rng)
    n2, i2 = _conv("conv_b", "a_relu", "b", c, c, rng)
    nodes = [n0, helper.make_node("Relu", ["h0"], ["h"], name="relu_stem"), n1,
             helper.make_node("Relu", ["a"], ["a_relu"], name="relu_a"), n2,
             helper.make_node("Add", ["b", "h"], ["s"], name="add")]
    inits = i0 + i1 + i2
    if act == "Relu":
        nodes.append(helper.make_node("Relu", ["s"], ["y"], name="relu_out"))
    else:
        clip, ci = _clip("s", "y", 0.0, 6.0)
        nodes.append(clip)
        inits += ci
    return make_model(nodes, [("x", FLOAT, (2, c, 9, 9))], [("y", FLOAT, None)], inits)


def test_residual_block_fuses_into_two_steps(rng: np.random.Generator) -> None:
    model = _residual_block(rng)
    plan = _check(model, {"x": rng.standard_normal((2, 8, 9, 9), dtype=np.float32)})
    convs = [t for t in plan.op_types if t.startswith("Conv2d")]
    assert convs == ["Conv2d+Relu", "Conv2d+Relu", "Conv2d+ElementWiseAdd+Relu"]
    assert "Relu" not in plan.op_types and "ElementWiseAdd" not in plan.op_types


def test_add_then_clip_runs_the_clip_after_the_fused_add(rng: np.random.Generator) -> None:
    # oneDNN allows only Relu after a fused add: ReluMinMax then runs in PyTorch, same step
    model = _residual_block(rng, act="Clip")
    assert not fusable(Epilogue("other", (0.0, 6.0))) and fusable(Epilogue("other", (0.0, math.inf)))
    plan = _check(model, {"x": rng.standard_normal((2, 8, 9, 9), dtype=np.float32) * 3})
    assert "Conv2d+ElementWiseAdd+ReluMinMax" in plan.op_types


@pytest.mark.parametrize(("lo", "hi"), [(0.0, 6.0), (-1.0, 1.0), (0.5, None), (None, 0.25)])
def test_conv_clip_bounds(rng: np.random.Generator, lo: float | None, hi: float | None) -> None:
    conv, inits = _conv("conv", "x", "c", 4, 6, rng)
    clip, ci = _clip("c", "y", lo, hi)
    model = make_model([conv, clip], [("x", FLOAT, (1, 4, 7, 7))], [("y", FLOAT, None)], inits + ci)
    plan = _check(model, {"x": rng.standard_normal((1, 4, 7, 7), dtype=np.float32) * 2})
    assert len(plan.op_types) == 3  # the input and output transposes around one fused step


def test_depthwise_strided_and_asymmetric_padding(rng: np.random.Generator) -> None:
    dw, i1 = _conv("dw", "x", "d", 8, 8, rng, group=8, stride=2, pads=(0, 0, 1, 1))
    pw, i2 = _conv("pw", "d6", "p", 8, 16, rng, k=1, pads=(0, 0, 0, 0), bias=False)
    clip, ci = _clip("d", "d6", 0.0, 6.0)
    model = make_model([dw, clip, pw, helper.make_node("Relu", ["p"], ["y"])], [("x", FLOAT, (1, 8, 10, 10))],
                       [("y", FLOAT, None)], i1 + i2 + ci)
    plan = _check(model, {"x": rng.standard_normal((1, 8, 10, 10), dtype=np.float32) * 2})
    assert "DepthWiseConv2d+ReluMinMax" in plan.op_types and "Conv2d+Relu" in plan.op_types


@pytest.mark.parametrize(("group", "dilation", "stride"), [(2, 1, 1), (1, 2, 1), (4, 2, 2), (16, 1, 2)])
def test_grouped_dilated_strided_conv_relu(rng: np.random.Generator, group: int, dilation: int, stride: int) -> None:
    w = numpy_helper.from_array((rng.standard_normal((16, 16 // group, 3, 3)) * 0.3).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "b")
    conv = helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], group=group, dilations=[dilation] * 2,
                            strides=[stride] * 2, pads=[dilation, dilation, dilation, dilation])
    model = make_model([conv, helper.make_node("Relu", ["c"], ["y"])], [("x", FLOAT, (2, 16, 11, 11))],
                       [("y", FLOAT, None)], [w, b])
    plan = _check(model, {"x": rng.standard_normal((2, 16, 11, 11), dtype=np.float32)})
    assert any(t.endswith("Conv2d+Relu") for t in plan.op_types)


def test_float16_conv_relu_takes_the_reference_path(rng: np.random.Generator) -> None:
    w = numpy_helper.from_array((rng.standard_normal((8, 4, 3, 3)) * 0.3).astype(np.float16), "w")
    b = numpy_helper.from_array(rng.standard_normal(8).astype(np.float16), "b")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"])]
    model = make_model(nodes, [("x", TensorProto.FLOAT16, (1, 4, 6, 6))], [("y", TensorProto.FLOAT16, None)], [w, b])
    _, fused, plain = _plans(model)
    x = rng.standard_normal((1, 4, 6, 6)).astype(np.float16)
    got = fused.run({"x": x})["y"]
    assert got.dtype == np.float16 and "Conv2d+Relu" in fused.op_types
    np.testing.assert_array_equal(got, plain.run({"x": x})["y"])


def test_no_fusion_when_an_intermediate_is_needed_elsewhere(rng: np.random.Generator) -> None:
    # c is a graph output; d has two readers; so neither Relu nor Add may be folded away
    c1, i1 = _conv("c1", "x", "c", 4, 4, rng)
    c2, i2 = _conv("c2", "x", "d", 4, 4, rng)
    nodes = [c1, helper.make_node("Relu", ["c"], ["r"], name="relu_c"), c2,
             helper.make_node("Add", ["d", "r"], ["s"], name="add"),
             helper.make_node("Sigmoid", ["d"], ["g"], name="sig"), helper.make_node("Mul", ["s", "g"], ["y"])]
    model = make_model(nodes, [("x", FLOAT, (1, 4, 6, 6))], [("y", FLOAT, None), ("c", FLOAT, None)], i1 + i2)
    graph, fused, _ = _plans(model)
    assert fuse_epilogues(graph) == []
    assert fused.op_types.count("Conv2d") == 2
    _check(model, {"x": rng.standard_normal((1, 4, 6, 6), dtype=np.float32)})


def test_broadcast_add_is_not_fused(rng: np.random.Generator) -> None:
    conv, inits = _conv("conv", "x", "c", 4, 4, rng)
    inits.append(numpy_helper.from_array(rng.standard_normal((1, 4, 1, 1)).astype(np.float32), "shift"))
    nodes = [conv, helper.make_node("Add", ["c", "shift"], ["s"]), helper.make_node("Relu", ["s"], ["y"])]
    model = make_model(nodes, [("x", FLOAT, (1, 4, 5, 5))], [("y", FLOAT, None)], inits)
    plan = _check(model, {"x": rng.standard_normal((1, 4, 5, 5), dtype=np.float32)})
    assert [t for t in plan.op_types if t != "Transpose"] == ["Conv2d", "ElementWiseAdd", "Relu"]


def test_add_of_a_conv_output_to_itself(rng: np.random.Generator) -> None:
    conv, inits = _conv("conv", "x", "c", 4, 4, rng)
    model = make_model([conv, helper.make_node("Add", ["c", "c"], ["y"])], [("x", FLOAT, (1, 4, 5, 5))],
                       [("y", FLOAT, None)], inits)
    _check(model, {"x": rng.standard_normal((1, 4, 5, 5), dtype=np.float32)})


def test_runtime_weights_take_the_reference_path(rng: np.random.Generator) -> None:
    # a weight fed at run time cannot be prepacked: F.conv2d plus the epilogue in PyTorch
    c2, inits = _conv("c2", "x", "d", 3, 5, rng)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="c1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]), c2,
             helper.make_node("Add", ["c", "d"], ["s"]), helper.make_node("Relu", ["s"], ["y"])]
    model = make_model(nodes, [("x", FLOAT, (1, 3, 6, 6)), ("w", FLOAT, (5, 3, 3, 3))], [("y", FLOAT, None)], inits)
    feeds = {"x": rng.standard_normal((1, 3, 6, 6), dtype=np.float32),
             "w": rng.standard_normal((5, 3, 3, 3), dtype=np.float32)}
    plan = _check(model, feeds)
    assert plan.op_types.count("Conv2d+ElementWiseAdd+Relu") == 1 and plan.op_types.count("Conv2d") == 1


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("rows", [1, 64])  # 64 x 128 x 64 takes oneDNN's inner product, 1 row PyTorch's GEMM
def test_fully_connected_with_residual_add(rng: np.random.Generator, rows: int, relu: bool) -> None:
    w = numpy_helper.from_array(rng.standard_normal((128, 64)).astype(np.float32) * 0.1, "w")
    b = numpy_helper.from_array(rng.standard_normal(64).astype(np.float32), "b")
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["h"]), helper.make_node("Add", ["r", "h"], ["s" if relu else "y"])]
    if relu:
        nodes.append(helper.make_node("Relu", ["s"], ["y"]))
    model = make_model(nodes, [("x", FLOAT, (rows, 128)), ("r", FLOAT, (rows, 64))], [("y", FLOAT, None)], [w, b])
    plan = _check(model, {"x": rng.standard_normal((rows, 128), dtype=np.float32),
                          "r": rng.standard_normal((rows, 64), dtype=np.float32)})
    assert plan.op_types == ["FullyConnected+ElementWiseAdd" + ("+Relu" if relu else "")]


@pytest.mark.parametrize("rows", [2, 64])
def test_projections_of_one_input_share_a_gemm(rng: np.random.Generator, rows: int) -> None:
    """q, k, v = x @ Wq, x @ Wk, x @ Wv (one with a residual add, which keeps it apart)."""
    inits, nodes = [], []
    for i, n in enumerate((64, 32, 64, 64)):
        inits += [numpy_helper.from_array(rng.standard_normal((128, n)).astype(np.float32) * 0.1, f"w{i}"),
                  numpy_helper.from_array(rng.standard_normal(n).astype(np.float32), f"b{i}")]
        nodes += [helper.make_node("MatMul", ["x", f"w{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"y{i}" if i < 3 else "h"])]
    nodes.append(helper.make_node("Add", ["h", "r"], ["y3"]))
    outs = [(f"y{i}", FLOAT, None) for i in range(4)]
    model = make_model(nodes, [("x", FLOAT, (1, rows, 128)), ("r", FLOAT, (1, rows, 64))], outs, inits)
    graph = openqnn.convert(model)
    assert graph.count_ops()["FullyConnected"] == 4
    plan = _check(model, {"x": rng.standard_normal((1, rows, 128), dtype=np.float32),
                          "r": rng.standard_normal((1, rows, 64), dtype=np.float32)})
    assert sorted(plan.op_types) == ["FullyConnected*3", "FullyConnected+ElementWiseAdd"]


def test_fused_plan_runs_other_batch_sizes_of_the_same_graph_shape(rng: np.random.Generator) -> None:
    """Weights are packed for the graph's input shape; the plan must still be right when re-run."""
    model = _residual_block(rng, c=16)
    _, fused, plain = _plans(model)
    for seed in range(3):
        x = np.random.default_rng(seed).standard_normal((2, 16, 9, 9), dtype=np.float32)
        np.testing.assert_allclose(fused.run({"x": x})["y"], plain.run({"x": x})["y"], rtol=1e-5, atol=1e-5)


def test_keep_freed_memory_is_idempotent() -> None:
    first = keep_freed_memory()
    assert keep_freed_memory() == first
