"""Structure after the convert pipeline: what fuses, folds and cancels — and values still match ORT."""

from __future__ import annotations

import math

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import openqnn
from helpers import assert_matches_ort, make_model

F = TensorProto.FLOAT


def _c(name: str, value) -> object:
    return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)


def _counts(model) -> dict[str, int]:
    return openqnn.convert(model).count_ops()


def test_erf_gelu_fuses_into_gelu(rng) -> None:
    nodes = [
        helper.make_node("Div", ["x", "sqrt2"], ["a"]),
        helper.make_node("Erf", ["a"], ["b"]),
        helper.make_node("Add", ["b", "one"], ["c"]),
        helper.make_node("Mul", ["x", "c"], ["d"]),
        helper.make_node("Mul", ["d", "half"], ["y"]),
    ]
    m = make_model(nodes, [("x", F, [2, 16])], [("y", F, [2, 16])],
                   [_c("sqrt2", math.sqrt(2)), _c("one", 1.0), _c("half", 0.5)], opset=13)
    assert _counts(m) == {"Gelu": 1}
    assert_matches_ort(m, {"x": rng.standard_normal((2, 16)).astype(np.float32)})


def test_half_first_gelu_variant(rng) -> None:
    nodes = [
        helper.make_node("Mul", ["x", "half"], ["h"]),
        helper.make_node("Mul", ["x", "inv_sqrt2"], ["a"]),
        helper.make_node("Erf", ["a"], ["b"]),
        helper.make_node("Add", ["one", "b"], ["c"]),
        helper.make_node("Mul", ["h", "c"], ["y"]),
    ]
    m = make_model(nodes, [("x", F, [3, 8])], [("y", F, [3, 8])],
                   [_c("inv_sqrt2", 1 / math.sqrt(2)), _c("one", 1.0), _c("half", 0.5)], opset=13)
    assert _counts(m) == {"Gelu": 1}
    assert_matches_ort(m, {"x": rng.standard_normal((3, 8)).astype(np.float32)})


def test_hardswish_pattern(rng) -> None:
    nodes = [
        helper.make_node("Add", ["x", "three"], ["a"]),
        helper.make_node("Clip", ["a", "zero", "six"], ["b"]),
        helper.make_node("Mul", ["x", "b"], ["c"]),
        helper.make_node("Div", ["c", "six"], ["y"]),
    ]
    m = make_model(nodes, [("x", F, [1, 4, 5, 5])], [("y", F, [1, 4, 5, 5])],
                   [_c("three", 3.0), _c("zero", 0.0), _c("six", 6.0)], opset=13)
    assert _counts(m) == {"HardSwish": 1}
    assert_matches_ort(m, {"x": 4 * rng.standard_normal((1, 4, 5, 5)).astype(np.float32)})


def test_matmul_add_becomes_fully_connected_with_bias(rng) -> None:
    w = rng.standard_normal((16, 8)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])]
    m = make_model(nodes, [("x", F, [2, 5, 16])], [("y", F, [2, 5, 8])], [_c("w", w), _c("b", b)])
    g = openqnn.convert(m)
    assert g.count_ops() == {"FullyConnected": 1}
    assert len(g.nodes[0].inputs) == 3 and g.nodes[0].inputs[2]
    assert_matches_ort(m, {"x": rng.standard_normal((2, 5, 16)).astype(np.float32)})


@pytest.mark.parametrize("out_is_bn", [False, True])
def test_batchnorm_folds_into_conv(rng, out_is_bn: bool) -> None:
    w = rng.standard_normal((6, 3, 3, 3)).astype(np.float32)
    stats = [_c("s", rng.uniform(0.5, 2, 6)), _c("bb", rng.standard_normal(6)), _c("mu", rng.standard_normal(6)),
             _c("var", rng.uniform(0.5, 2, 6))]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "bb", "mu", "var"], ["bn"], epsilon=1e-3)]
    if not out_is_bn:
        nodes.append(helper.make_node("Relu", ["bn"], ["y"]))
    out = "bn" if out_is_bn else "y"
    m = make_model(nodes, [("x", F, [1, 3, 8, 8])], [(out, F, [1, 6, 8, 8])], [_c("w", w), *stats])
    counts = _counts(m)
    assert "Batchnorm" not in counts and counts["Conv2d"] == 1
    assert_matches_ort(m, {"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)}, rtol=1e-4, atol=1e-4)


def test_layout_transposes_cancel_between_spatial_ops(rng) -> None:
    """Conv -> Relu -> MaxPool -> Conv keeps NHWC throughout: one transpose in, one out."""
    w1 = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    w2 = rng.standard_normal((5, 4, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("MaxPool", ["b"], ["c"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Add", ["c", "c"], ["d"]),
             helper.make_node("Conv", ["d", "w2"], ["y"])]
    m = make_model(nodes, [("x", F, [1, 3, 10, 10])], [("y", F, [1, 5, 4, 4])], [_c("w1", w1), _c("w2", w2)])
    counts = _counts(m)
    assert counts["Transpose"] == 2, counts
    assert_matches_ort(m, {"x": rng.standard_normal((1, 3, 10, 10)).astype(np.float32)})


def test_shape_subgraph_folds_to_static_reshape(rng) -> None:
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape (as exporters write flatten) folds away."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["y"]),
    ]
    inits = [numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.array([0], np.int64), "axes0"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus1")]
    m = make_model(nodes, [("x", F, [2, 3, 4])], [("y", F, [2, 12])], inits, opset=13)
    assert _counts(m) == {"Reshape": 1}
    assert_matches_ort(m, {"x": rng.standard_normal((2, 3, 4)).astype(np.float32)})


def _tanh_gelu_nodes(cube: str) -> list:
    """0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))), x^3 as GPT-2's Pow or torchscript's x * x * x."""
    if cube == "pow":
        head = [helper.make_node("Pow", ["x", "three"], ["k"])]
    else:
        head = [helper.make_node("Mul", ["x", "x"], ["x2"]), helper.make_node("Mul", ["x", "x2"], ["k"])]
    return [*head, helper.make_node("Mul", ["c", "k"], ["ck"]), helper.make_node("Add", ["x", "ck"], ["a"]), helper.make_node("Mul", ["s", "a"], ["sa"]), helper.make_node("Tanh", ["sa"], ["t"]), helper.make_node("Add", ["one", "t"], ["u"]), helper.make_node("Mul", ["x", "u"], ["v"]), helper.make_node("Mul", ["half", "v"], ["y"])]


def test_half_first_tanh_gelu_keeps_its_consumers(rng) -> None:
    """GPT-2's NewGELU: (0.5 * x) comes before the cube; what reads the GELU still follows it."""
    nodes = [helper.make_node("Mul", ["x", "half"], ["h"]), helper.make_node("Pow", ["x", "three"], ["k"]),
             *_tanh_gelu_nodes("pow")[1:6], helper.make_node("Mul", ["h", "u"], ["v"]),
             helper.make_node("MatMul", ["v", "w"], ["y"])]
    inits = [_c("three", 3.0), _c("c", 0.044715), _c("s", math.sqrt(2 / math.pi)), _c("one", 1.0), _c("half", 0.5),
             _c("w", rng.standard_normal((16, 4)))]
    m = make_model(nodes, [("x", F, [2, 16])], [("y", F, [2, 4])], inits, opset=13)
    assert _counts(m) == {"Gelu": 1, "FullyConnected": 1}
    assert_matches_ort(m, {"x": (3 * rng.standard_normal((2, 16))).astype(np.float32)})


@pytest.mark.parametrize("cube", ["pow", "mul"])
def test_tanh_gelu_fuses_into_gelu(rng, cube: str) -> None:
    inits = [_c("three", 3.0), _c("c", 0.044715), _c("s", math.sqrt(2 / math.pi)), _c("one", 1.0), _c("half", 0.5)]
    m = make_model(_tanh_gelu_nodes(cube), [("x", F, [2, 16])], [("y", F, [2, 16])], inits, opset=13)
    g = openqnn.convert(m)
    assert g.count_ops() == {"Gelu": 1} and g.nodes[0].attrs["approximate"] == "tanh"
    assert_matches_ort(m, {"x": (3 * rng.standard_normal((2, 16))).astype(np.float32)})


def test_tanh_gelu_with_other_coefficient_stays(rng) -> None:
    inits = [_c("three", 3.0), _c("c", 0.05), _c("s", math.sqrt(2 / math.pi)), _c("one", 1.0), _c("half", 0.5)]
    m = make_model(_tanh_gelu_nodes("pow"), [("x", F, [2, 16])], [("y", F, [2, 16])], inits, opset=13)
    assert "Gelu" not in _counts(m)


def _rms_nodes(style: str, gamma: bool) -> list:
    """RMSNorm as exporters write it: Llama/T5 (Div(1, Sqrt)), dynamo (Reciprocal), or x / Sqrt."""
    nodes = [helper.make_node("Pow", ["x", "two"], ["p"]) if style != "mul" else helper.make_node("Mul", ["x", "x"], ["p"]),
             helper.make_node("ReduceMean", ["p"], ["m"], axes=[-1], keepdims=1),
             helper.make_node("Add", ["m", "eps"], ["e"]),
             helper.make_node("Sqrt", ["e"], ["s"])]
    n = "n" if gamma else "y"
    if style == "div":
        nodes.append(helper.make_node("Div", ["x", "s"], [n]))
    elif style == "reciprocal":
        nodes += [helper.make_node("Reciprocal", ["s"], ["r"]), helper.make_node("Mul", ["x", "r"], [n])]
    else:
        nodes += [helper.make_node("Div", ["one", "s"], ["r"]), helper.make_node("Mul", ["x", "r"], [n])]
    if gamma:
        nodes.append(helper.make_node("Mul", ["gamma", n], ["y"]))
    return nodes


@pytest.mark.parametrize("style", ["one_over", "reciprocal", "div", "mul"])
@pytest.mark.parametrize("gamma", [True, False])
def test_rms_norm_fuses(rng, style: str, gamma: bool) -> None:
    inits = [_c("two", 2.0), _c("eps", 1e-6), _c("one", 1.0), _c("gamma", rng.uniform(0.5, 1.5, 16))]
    m = make_model(_rms_nodes(style, gamma), [("x", F, [2, 5, 16])], [("y", F, [2, 5, 16])], inits, opset=13)
    g = openqnn.convert(m)
    assert g.count_ops() == {"RmsNorm": 1}
    assert g.nodes[0].attrs["epsilon"] == pytest.approx(1e-6) and list(g.nodes[0].attrs["axes"]) == [2]
    x = rng.standard_normal((2, 5, 16)).astype(np.float32)
    x[0, 1] = 0.0  # a zero row (a padding token's zero embedding)
    assert_matches_ort(m, {"x": x})


def test_rms_norm_needs_the_last_axis_and_private_intermediates(rng) -> None:
    nodes = _rms_nodes("one_over", False)
    nodes[1] = helper.make_node("ReduceMean", ["p"], ["m"], axes=[1], keepdims=1)
    inits = [_c("two", 2.0), _c("eps", 1e-6), _c("one", 1.0)]
    m = make_model(nodes, [("x", F, [2, 5, 16])], [("y", F, [2, 5, 16])], inits, opset=13)
    assert "RmsNorm" not in _counts(m)
    m = make_model(_rms_nodes("one_over", False), [("x", F, [2, 5, 16])], [("y", F, [2, 5, 16]), ("m", F, [2, 5, 1])],
                   inits, opset=13)
    assert "RmsNorm" not in _counts(m)


def _layer_norm_nodes(affine: bool, mean_axis: int = -1) -> list:
    """F.layer_norm as torch exports it before opset 17 (no LayerNormalization)."""
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[mean_axis], keepdims=1),
             helper.make_node("Sub", ["x", "m"], ["d"]),
             helper.make_node("Pow", ["d", "two"], ["p"]),
             helper.make_node("ReduceMean", ["p"], ["v"], axes=[-1], keepdims=1),
             helper.make_node("Add", ["v", "eps"], ["e"]),
             helper.make_node("Sqrt", ["e"], ["s"]),
             helper.make_node("Div", ["d", "s"], ["n" if affine else "y"])]
    if affine:
        nodes += [helper.make_node("Mul", ["n", "gamma"], ["g"]), helper.make_node("Add", ["g", "beta"], ["y"])]
    return nodes


@pytest.mark.parametrize("affine", [True, False])
def test_decomposed_layer_norm_fuses(rng, affine: bool) -> None:
    inits = [_c("two", 2.0), _c("eps", 1e-12), _c("gamma", rng.uniform(0.5, 1.5, 16)), _c("beta", rng.uniform(-1, 1, 16))]
    m = make_model(_layer_norm_nodes(affine), [("x", F, [2, 5, 16])], [("y", F, [2, 5, 16])], inits, opset=13)
    g = openqnn.convert(m)
    assert g.count_ops() == {"LayerNorm": 1}
    assert len(g.nodes[0].inputs) == (3 if affine else 2)
    assert_matches_ort(m, {"x": (2 + rng.standard_normal((2, 5, 16))).astype(np.float32)})


def test_mean_over_another_axis_is_no_layer_norm(rng) -> None:
    inits = [_c("two", 2.0), _c("eps", 1e-12), _c("gamma", rng.uniform(0.5, 1.5, 16)), _c("beta", rng.uniform(-1, 1, 16))]
    m = make_model(_layer_norm_nodes(True, mean_axis=1), [("x", F, [2, 5, 16])], [("y", F, [2, 5, 16])], inits,
                   opset=13)
    assert "LayerNorm" not in _counts(m)
    assert_matches_ort(m, {"x": rng.standard_normal((2, 5, 16)).astype(np.float32)})


def test_bloom_gelu_fuses_into_gelu(rng) -> None:
    """BLOOM's bloom_gelu_forward: x * 0.5 * (1 + tanh(0.79788456 * x * (1 + 0.044715 * x * x)))."""
    nodes = [helper.make_node("Mul", ["x", "half"], ["h"]), helper.make_node("Mul", ["x", "s"], ["a"]),
             helper.make_node("Mul", ["x", "c"], ["b"]), helper.make_node("Mul", ["b", "x"], ["q"]),
             helper.make_node("Add", ["q", "one"], ["d"]), helper.make_node("Mul", ["a", "d"], ["e"]),
             helper.make_node("Tanh", ["e"], ["t"]), helper.make_node("Add", ["t", "one"], ["u"]),
             helper.make_node("Mul", ["h", "u"], ["v"]), helper.make_node("MatMul", ["v", "w"], ["y"])]
    inits = [_c("half", 0.5), _c("s", 0.79788456), _c("c", 0.044715), _c("one", 1.0),
             _c("w", rng.standard_normal((16, 4)))]
    m = make_model(nodes, [("x", F, [2, 16])], [("y", F, [2, 4])], inits, opset=13)
    g = openqnn.convert(m)
    assert g.count_ops() == {"Gelu": 1, "FullyConnected": 1}
    assert assert_matches_ort(m, {"x": (3 * rng.standard_normal((2, 16))).astype(np.float32)}) is not None
