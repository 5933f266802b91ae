"""openqnn.onnx_backend against ONNX's backend interface: the official runner, run_node, dynamic dims."""

from __future__ import annotations

import unittest

import numpy as np
import pytest
from onnx import TensorProto, helper

from openqnn import onnx_backend
from openqnn.onnx_backend import OpenQnnBackend

# cases from ONNX's own runner (onnx.backend.test.BackendTest) that cover the adapter's paths:
# a plain op, shape-like inputs fed as graph inputs (frozen), several outputs, an int64 output
_RUNNER_CASES = ("test_relu", "test_reshape_reduced_dims", "test_slice_neg", "test_split_variable_parts_2d_opset18",
                 "test_argmax_default_axis_example", "test_add_bcast")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the case generators' own overflow/div-by-zero
def test_official_backend_runner():
    import onnx.backend.test

    bt = onnx.backend.test.BackendTest(OpenQnnBackend, __name__)
    bt.include("^(" + "|".join(_RUNNER_CASES) + ")_cpu$")
    suite = unittest.TestSuite()
    loader = unittest.TestLoader()
    for case in bt.test_cases.values():
        suite.addTests(loader.loadTestsFromTestCase(case))
    result = unittest.TestResult()
    suite.run(result)
    problems = [f"{t.id()}: {tb.strip().splitlines()[-1]}" for t, tb in result.failures + result.errors]
    assert not problems, "\n".join(problems)
    ran = result.testsRun - len(result.skipped)
    assert ran == len(_RUNNER_CASES)


def test_supports_device():
    import torch

    assert onnx_backend.supports_device("CPU")
    assert onnx_backend.supports_device("CUDA") == torch.cuda.is_available()
    assert not onnx_backend.supports_device("TPU")


def test_run_node_list_and_dict():
    node = helper.make_node("Add", ["a", "b"], ["c"])
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.ones(3, np.float32)
    (c,) = onnx_backend.run_node(node, [a, b])
    np.testing.assert_array_equal(c, a + b)
    out = onnx_backend.run_node(node, {"a": a, "b": b})
    np.testing.assert_array_equal(out["c"], a + b)
    assert out.c.dtype == np.float32


def test_run_node_outputs_info_sets_dtype():
    node = helper.make_node("ArgMax", ["x"], ["y"], axis=1, keepdims=0)
    x = np.array([[1, 5, 2], [7, 0, 3]], np.float32)
    (y,) = onnx_backend.run_node(node, [x], outputs_info=[(np.int64, (2,))])
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, [1, 0])


def _model(dims, out_dims, opset=17):
    node = helper.make_node("Relu", ["x"], ["y"])
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_dims)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def test_dynamic_dims_come_from_the_run_and_are_cached():
    rep = onnx_backend.prepare(_model(["N", 3], ["N", 3]))
    for n in (2, 5, 2):
        x = np.linspace(-1, 1, n * 3, dtype=np.float32).reshape(n, 3)
        (y,) = rep.run([x])
        np.testing.assert_array_equal(y, np.maximum(x, 0))
    assert len(rep._cache) == 2


def test_static_model_converts_in_prepare():
    node = helper.make_node("NoSuchOp", ["x"], ["y"])
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(Exception, match="NoSuchOp"):
        onnx_backend.prepare(model, check_model=False)


def test_shape_input_is_frozen_per_value():
    node = helper.make_node("Reshape", ["x", "shape"], ["y"])
    g = helper.make_graph([node], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6]),
                           helper.make_tensor_value_info("shape", TensorProto.INT64, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None])])
    rep = onnx_backend.prepare(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    assert rep.run([x, np.array([3, 4])])[0].shape == (3, 4)
    assert rep.run([x, np.array([4, 3])])[0].shape == (4, 3)
    assert rep.frozen_inputs == {"shape"}


def test_old_opset_model_is_upgraded():
    node = helper.make_node("Not", ["x"], ["y"])
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.BOOL, [3])],
                          [helper.make_tensor_value_info("y", TensorProto.BOOL, [3])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 1)])
    (y,) = onnx_backend.run_model(model, [np.array([True, False, True])])
    np.testing.assert_array_equal(y, [False, True, False])
