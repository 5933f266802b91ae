"""Non-finite values in calibration never crash quantization: weights or constants holding NaN / +-inf and
calibration inputs that are all NaN give a warning naming the tensors and finite encodings."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import openqnn
from helpers import make_model

F = TensorProto.FLOAT


def _model(weight: np.ndarray):  # type: ignore[no-untyped-def]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])]
    return make_model(nodes, [("x", F, [2, 4])], [("y", F, [2, 3])],
                      [numpy_helper.from_array(weight.astype(np.float32), "w")])


def _messages(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records)


def test_weights_with_nan_and_inf_warn_and_quantize(caplog: pytest.LogCaptureFixture) -> None:
    w = np.random.default_rng(0).standard_normal((4, 3))
    w[0, 0], w[1, 2] = np.nan, np.inf
    graph = openqnn.convert(_model(w))
    x = np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)
    with caplog.at_level(logging.WARNING, logger="openqnn"):
        q = openqnn.quantize(graph, [{"x": x}])
    assert "'w'" in _messages(caplog) and "non-finite" in _messages(caplog)
    enc = q.tensors["w"].encoding
    assert enc is not None and all(np.isfinite(enc.scale))
    for backend in ("cpu", "htp"):
        assert np.all(np.isfinite(openqnn.Session(q, backend=backend).run({"x": x})["y"]))


def test_all_nan_calibration_input_warns_and_names_it(caplog: pytest.LogCaptureFixture) -> None:
    graph = openqnn.convert(_model(np.random.default_rng(0).standard_normal((4, 3))))
    with caplog.at_level(logging.WARNING, logger="openqnn"):
        q = openqnn.quantize(graph, [{"x": np.full((2, 4), np.nan, np.float32)}])
    assert "no finite value" in _messages(caplog) and "'x'" in _messages(caplog)
    assert all(t.encoding is not None and np.isfinite(t.encoding.scale[0]) for t in q.tensors.values()
               if t.dtype.is_float and not t.is_static)


def test_some_nan_calibration_values_are_ignored() -> None:
    graph = openqnn.convert(_model(np.random.default_rng(0).standard_normal((4, 3))))
    x = np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)
    bad = x.copy()
    bad[0, 1] = np.nan
    bad[1, 3] = -np.inf
    enc = openqnn.quantize(graph, [{"x": bad}, {"x": x}]).tensors["x"].encoding
    clean = openqnn.quantize(graph, [{"x": x}]).tensors["x"].encoding
    assert enc == clean
