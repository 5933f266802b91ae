"""ONNX Runtime as the exact oracle for integer results: unfused on every CPU.

ORT's fused int8 convolution on x86 CPUs without VNNI multiplies u8 activations by s8 weights with
``vpmaddubsw``, which adds each pair of products into int16 with saturation. The tests' oracle helper
(``tests/helpers.py: ort_session``) therefore turns ORT's graph optimizations off: a QDQ model then
runs DequantizeLinear, a float Conv and QuantizeLinear, which is within one rounding step of exact
integer arithmetic on any CPU. Here the data is chosen so that the pair sums do overflow int16, and the
oracle still agrees with exact integer arithmetic.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from helpers import ort_session

pytest.importorskip("onnxruntime")

SX, SW, SY = 1 / 255, 0.01, 0.25  # input, weight and output scales; zero points 0, 0, 128


def _qdq_conv(w: np.ndarray) -> onnx.ModelProto:
    def q(name: str, x: str, scale: str, zp: str) -> onnx.NodeProto:
        return helper.make_node("QuantizeLinear", [x, scale, zp], [name])

    def dq(name: str, x: str, scale: str, zp: str) -> onnx.NodeProto:
        return helper.make_node("DequantizeLinear", [x, scale, zp], [name])

    inits = [numpy_helper.from_array(np.float32(v), n) for n, v in (("sx", SX), ("sw", SW), ("sy", SY))]
    inits += [numpy_helper.from_array(np.uint8(0), "zx"), numpy_helper.from_array(np.int8(0), "zw"),
              numpy_helper.from_array(np.uint8(128), "zy"), numpy_helper.from_array(w, "wq")]
    nodes = [q("xq", "x", "sx", "zx"), dq("xd", "xq", "sx", "zx"), dq("wd", "wq", "sw", "zw"),
             helper.make_node("Conv", ["xd", "wd"], ["y"], pads=[1, 1, 1, 1]),
             q("yq", "y", "sy", "zy"), dq("out", "yq", "sy", "zy")]
    graph = helper.make_graph(nodes, "qdq_conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 6, 6])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 8, 6, 6])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def _exact(xq: np.ndarray, w: np.ndarray, saturate_pairs: bool) -> np.ndarray:
    """Output codes from int64 sums of u8 x s8 products; ``saturate_pairs`` adds the products in
    consecutive input-channel pairs with int16 saturation first, as vpmaddubsw does."""
    xp = np.pad(xq.astype(np.int64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    cols = np.stack([xp[0, :, i:i + 6, j:j + 6] for i in range(3) for j in range(3)], axis=1)  # [C, 9, 6, 6]
    prods = cols[None] * w.astype(np.int64)[:, :, :, :, None, None].reshape(8, 16, 9, 1, 1)    # [O, C, 9, 6, 6]
    if saturate_pairs:
        prods = np.clip(prods[:, 0::2] + prods[:, 1::2], -32768, 32767)
    acc = prods.sum(axis=(1, 2))
    return np.clip(np.round(acc * (SX * SW / SY)) + 128, 0, 255)


def test_unfused_ort_is_exact_where_int16_pair_sums_saturate() -> None:
    rng = np.random.default_rng(0)
    w = np.where(rng.random((8, 16, 3, 3)) < 0.5, -128, 127).astype(np.int8)
    w[:, 1::2] = w[:, 0::2]  # both products of a pair share a sign: their int16 sum overflows
    x = rng.integers(200, 256, (1, 16, 6, 6)).astype(np.float32) / 255
    xq = np.round(x * 255)
    exact, saturated = _exact(xq, w, False), _exact(xq, w, True)
    assert np.abs(exact - saturated).max() >= 10, "the data must make saturating pair sums go wrong"

    model = _qdq_conv(w)
    ours = np.round(ort_session(model).run(None, {"x": x})[0] / SY) + 128
    assert np.abs(ours - exact).max() <= 1  # float accumulation: at most one rounding step at a tie
    assert np.mean(ours == exact) >= 0.99


def test_oracle_helper_runs_unfused() -> None:
    import onnxruntime as ort

    sess = ort_session(_qdq_conv(np.ones((8, 16, 3, 3), np.int8)))
    assert sess.get_session_options().graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
