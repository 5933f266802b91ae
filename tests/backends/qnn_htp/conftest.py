"""A small conv net (made here, seeded), float and quantized, with its inputs, for the qnn-htp tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import openqnn
from helpers import make_model
from openqnn.ir.graph import Graph

SHAPE = (1, 3, 12, 12)


def conv_net() -> Graph:
    """Conv 3->8 (3x3, pad 1) -> Relu -> Conv 8->4 (3x3, stride 2), float."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array((0.3 * rng.standard_normal((8, 3, 3, 3))).astype(np.float32), "w1")
    b1 = numpy_helper.from_array((0.1 * rng.standard_normal(8)).astype(np.float32), "b1")
    w2 = numpy_helper.from_array((0.2 * rng.standard_normal((4, 8, 3, 3))).astype(np.float32), "w2")
    nodes = [helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["output"], strides=[2, 2])]
    model = make_model(nodes, [("input", TensorProto.FLOAT, SHAPE)], [("output", TensorProto.FLOAT, [1, 4, 5, 5])],
                       [w1, b1, w2])
    model.graph.name = "convnet"
    return openqnn.convert(model)


def _feeds(n: int, seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"input": rng.standard_normal(SHAPE).astype(np.float32)} for _ in range(n)]


@pytest.fixture
def float_graph() -> Graph:
    return conv_net()


@pytest.fixture
def feeds() -> list[dict[str, np.ndarray]]:
    """Three inputs (not the calibration data)."""
    return _feeds(3, seed=1)


@pytest.fixture(scope="session")
def qgraph() -> Graph:
    return openqnn.quantize(conv_net(), _feeds(8, seed=0))


@pytest.fixture
def qmodel(qgraph: Graph, feeds: list[dict[str, np.ndarray]], tmp_path: Path) -> Path:
    """The quantized net saved as <tmp>/convnet_net.json, with three raw inputs and their input list."""
    json_path, _ = openqnn.save(qgraph, tmp_path / "convnet.cpp")
    lines = []
    for i, feed in enumerate(feeds):
        feed["input"].tofile(tmp_path / f"in{i}.raw")
        lines.append(f"{tmp_path / f'in{i}.raw'}\n")
    (tmp_path / "input_list.txt").write_text("".join(lines))
    return json_path
