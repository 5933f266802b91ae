"""3-D Conv / ConvTranspose / MaxPool / AveragePool, dilated 2-D pools, MaxPool's Indices output and
ConvTranspose's output_shape, against ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import openqnn
from helpers import FLOAT, INT64, assert_matches_ort, make_model


def _run(op: str, x_shape, attrs: dict, weights: list | None = None, outputs: int = 1, dynamic_w: bool = False,
         seed: int = 0, opset: int = 19, dtype=np.float32, rtol: float = 1e-4, atol: float = 1e-5):
    """One-node model ``op(x, *weights)``; weights are initializers, or graph inputs when ``dynamic_w``."""
    rng = np.random.default_rng(seed)
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    names, inits, inputs = ["x"], [], [("x", elem, x_shape)]
    if np.issubdtype(dtype, np.floating):
        x = rng.standard_normal(x_shape).astype(dtype)
    else:
        x = rng.permutation(np.arange(int(np.prod(x_shape))) % 251).reshape(x_shape).astype(dtype)
    feeds = {"x": x}
    for i, w in enumerate(weights or []):
        name = f"w{i}"
        names.append(name)
        if dynamic_w:
            inputs.append((name, FLOAT, w.shape))
            feeds[name] = w
        else:
            inits.append(numpy_helper.from_array(w, name))
    outs = ["y", "z"][:outputs]
    node = helper.make_node(op, names, outs, **attrs)
    out_types = [("y", elem, None), ("z", INT64, None)][:outputs]
    model = make_model([node], inputs, out_types, inits, opset=opset)
    return assert_matches_ort(model, feeds, rtol=rtol, atol=atol)


def _w(*shape: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# -- Conv 3-D ----------------------------------------------------------------------------------------

CONV3D_CASES = [
    # (x shape, weight shape, with bias, attrs)
    ((1, 2, 5, 6, 7), (3, 2, 3, 3, 3), False, {}),
    ((2, 2, 5, 6, 7), (3, 2, 3, 3, 3), True, {"pads": [1, 1, 1, 1, 1, 1]}),
    ((1, 3, 6, 7, 8), (4, 3, 3, 2, 3), True, {"pads": [0, 1, 2, 1, 0, 1], "strides": [2, 1, 2]}),
    ((1, 2, 7, 8, 9), (2, 2, 3, 3, 2), False, {"dilations": [2, 1, 3], "strides": [1, 2, 1]}),
    ((1, 4, 5, 5, 5), (6, 2, 3, 3, 3), True, {"group": 2, "pads": [1, 1, 1, 1, 1, 1]}),
    ((1, 4, 5, 5, 5), (8, 1, 3, 3, 3), True, {"group": 4}),  # depthwise, multiplier 2
    ((1, 2, 5, 6, 7), (3, 2, 3, 2, 3), False, {"auto_pad": "SAME_UPPER", "strides": [2, 2, 2]}),
    ((1, 2, 5, 6, 7), (3, 2, 2, 3, 2), False, {"auto_pad": "SAME_LOWER"}),
    ((1, 2, 5, 6, 7), (3, 2, 3, 3, 3), False, {"auto_pad": "VALID", "kernel_shape": [3, 3, 3]}),
]


@pytest.mark.parametrize("x_shape, w_shape, bias, attrs", CONV3D_CASES)
def test_conv3d(x_shape, w_shape, bias, attrs) -> None:
    weights = [_w(*w_shape)] + ([_w(w_shape[0], seed=2)] if bias else [])
    _run("Conv", x_shape, attrs, weights)


def test_conv3d_dynamic_weights() -> None:
    _run("Conv", (1, 2, 4, 5, 6), {"pads": [1, 0, 1, 0, 1, 1]}, [_w(3, 2, 2, 3, 3), _w(3, seed=2)],
         dynamic_w=True)


def test_conv3d_is_one_channel_last_node() -> None:
    x_shape, w = (1, 2, 4, 5, 6), _w(3, 2, 3, 3, 3)
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1] * 6)
    model = make_model([node], [("x", FLOAT, x_shape)], [("y", FLOAT, None)], [numpy_helper.from_array(w, "w")])
    graph = openqnn.convert(model)
    convs = [n for n in graph.nodes if n.op_type == "Conv3d"]
    assert len(convs) == 1
    assert graph.tensors[convs[0].inputs[1]].shape == (3, 3, 3, 2, 3)  # [kd, kh, kw, cin, cout]
    assert graph.tensors[convs[0].outputs[0]].shape == (1, 4, 5, 6, 3)  # NDHWC


# -- ConvTranspose 3-D --------------------------------------------------------------------------------

TCONV3D_CASES = [
    ((1, 1, 3, 4, 5), (1, 2, 3, 3, 3), False, {}),
    ((2, 2, 3, 4, 3), (2, 3, 3, 2, 3), True, {"strides": [2, 1, 2], "pads": [1, 0, 1, 0, 1, 1]}),
    ((1, 2, 3, 3, 3), (2, 2, 3, 3, 3), True, {"strides": [2, 2, 2], "output_padding": [1, 0, 1]}),
    ((1, 2, 3, 4, 3), (2, 2, 2, 3, 2), False, {"dilations": [2, 1, 2], "strides": [1, 2, 1]}),
    ((1, 4, 3, 3, 3), (4, 2, 3, 3, 3), True, {"group": 2, "strides": [2, 2, 2], "pads": [1, 1, 1, 1, 1, 1]}),
    ((1, 2, 3, 4, 3), (2, 2, 3, 3, 3), False, {"strides": [2, 2, 2], "output_shape": [8, 9, 7]}),
    ((1, 2, 3, 4, 3), (2, 2, 3, 3, 3), False, {"strides": [2, 2, 2], "auto_pad": "SAME_UPPER"}),
]


@pytest.mark.parametrize("x_shape, w_shape, bias, attrs", TCONV3D_CASES)
def test_conv_transpose3d(x_shape, w_shape, bias, attrs) -> None:
    weights = [_w(*w_shape)] + ([_w(w_shape[1] * attrs.get("group", 1), seed=2)] if bias else [])
    _run("ConvTranspose", x_shape, attrs, weights)


def test_conv_transpose3d_dynamic_weights() -> None:
    _run("ConvTranspose", (1, 2, 3, 3, 4), {"strides": [2, 1, 2]}, [_w(2, 3, 2, 2, 3), _w(3, seed=2)],
         dynamic_w=True)


# -- ConvTranspose output_shape (2-D and 1-D) ------------------------------------------------------------

OUTPUT_SHAPE_CASES = [
    # the ONNX node test: target longer than the full output -> extra output padding at the end
    ((1, 1, 3, 3), (1, 2, 3, 3), {"strides": [3, 2], "output_shape": [10, 8]}),
    # odd positive total padding: NOTSET and SAME_LOWER pad more at the beginning, SAME_UPPER at the end
    ((1, 1, 3, 3), (1, 1, 3, 3), {"strides": [2, 2], "output_shape": [6, 6]}),
    ((1, 1, 3, 3), (1, 1, 3, 3), {"strides": [2, 2], "output_shape": [6, 5], "auto_pad": "SAME_UPPER"}),
    ((1, 1, 3, 3), (1, 1, 3, 3), {"strides": [2, 2], "output_shape": [6, 5], "auto_pad": "SAME_LOWER"}),
    ((1, 2, 3, 4), (2, 2, 3, 3), {"strides": [2, 3], "output_shape": [5, 9]}),
    ((1, 2, 3, 4), (2, 2, 3, 3), {"strides": [2, 2], "output_shape": [8, 9], "output_padding": [1, 1]}),
    ((1, 2, 3, 4), (2, 2, 2, 2), {"strides": [3, 3], "dilations": [2, 1], "output_shape": [10, 12]}),
    ((1, 2, 5), (2, 3, 3), {"strides": [2], "output_shape": [12]}),
    # SAME without output_shape where the full output is shorter than in * stride
    ((1, 2, 3, 4), (2, 2, 1, 1), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
]


@pytest.mark.parametrize("x_shape, w_shape, attrs", OUTPUT_SHAPE_CASES)
def test_conv_transpose_output_shape(x_shape, w_shape, attrs) -> None:
    _run("ConvTranspose", x_shape, attrs, [_w(*w_shape), _w(w_shape[1], seed=2)])


# -- 3-D pools --------------------------------------------------------------------------------------------

POOL3D_CASES = [
    {"kernel_shape": [2, 2, 2]},
    {"kernel_shape": [3, 2, 3], "strides": [2, 1, 2], "pads": [1, 0, 1, 1, 1, 0]},
    {"kernel_shape": [2, 2, 2], "dilations": [2, 2, 2]},
    {"kernel_shape": [3, 3, 3], "strides": [2, 2, 2], "ceil_mode": 1},
    {"kernel_shape": [3, 2, 3], "strides": [3, 2, 2], "dilations": [2, 1, 2], "ceil_mode": 1, "pads": [1, 1, 0, 1, 0, 1]},
    {"kernel_shape": [3, 3, 3], "strides": [2, 2, 2], "auto_pad": "SAME_UPPER"},
    {"kernel_shape": [2, 3, 2], "auto_pad": "SAME_LOWER"},
]


@pytest.mark.parametrize("attrs", POOL3D_CASES)
def test_max_pool3d(attrs) -> None:
    _run("MaxPool", (2, 3, 7, 8, 9), attrs)


@pytest.mark.parametrize("attrs", POOL3D_CASES)
@pytest.mark.parametrize("count_include_pad", [0, 1])
def test_average_pool3d(attrs, count_include_pad) -> None:
    _run("AveragePool", (2, 3, 7, 8, 9), {**attrs, "count_include_pad": count_include_pad})


def test_max_pool3d_large_dilated_windows() -> None:
    _run("MaxPool", (1, 1, 16, 16, 16), {"kernel_shape": [5, 5, 5], "strides": [3, 3, 3], "dilations": [2, 2, 2],
                                         "ceil_mode": 1})


def test_max_pool3d_uint8() -> None:
    _run("MaxPool", (1, 2, 5, 6, 7), {"kernel_shape": [2, 3, 2], "pads": [1, 1, 1, 0, 0, 0]}, dtype=np.uint8)


# -- dilated 2-D pools --------------------------------------------------------------------------------

DILATED_2D_CASES = [
    {"kernel_shape": [2, 2], "dilations": [2, 2], "ceil_mode": 1},  # the ONNX node test's attributes
    {"kernel_shape": [3, 2], "dilations": [2, 3]},
    {"kernel_shape": [3, 3], "dilations": [2, 2], "strides": [2, 1], "pads": [2, 1, 1, 2]},
    {"kernel_shape": [3, 3], "dilations": [2, 2], "strides": [3, 3], "pads": [1, 1, 1, 1], "ceil_mode": 1},
    {"kernel_shape": [2, 3], "dilations": [3, 2], "strides": [2, 3], "pads": [0, 2, 1, 0], "ceil_mode": 1},
    # (auto_pad SAME with dilations is left out: ONNX Runtime sizes the pads without the dilation)
]


@pytest.mark.parametrize("attrs", DILATED_2D_CASES)
@pytest.mark.parametrize("count_include_pad", [0, 1])
def test_average_pool2d_dilated(attrs, count_include_pad) -> None:
    _run("AveragePool", (2, 3, 9, 10), {**attrs, "count_include_pad": count_include_pad})


def test_average_pool1d_dilated() -> None:
    _run("AveragePool", (2, 3, 11), {"kernel_shape": [3], "dilations": [2], "pads": [1, 2], "count_include_pad": 1})


@pytest.mark.parametrize("p", [1, 2, 3])
def test_lp_pool2d_dilated(p) -> None:
    _run("LpPool", (1, 3, 9, 10), {"kernel_shape": [3, 2], "dilations": [2, 2], "strides": [1, 2], "p": p,
                                   "pads": [1, 0, 1, 1]}, rtol=1e-4, atol=1e-4)


# -- MaxPool with Indices ---------------------------------------------------------------------------------

INDICES_CASES = [
    {"kernel_shape": [5, 5], "pads": [2, 2, 2, 2]},  # the ONNX node tests' attributes
    {"kernel_shape": [2, 2], "strides": [2, 2]},
    {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 0, 1, 1]},
    {"kernel_shape": [2, 2], "dilations": [2, 2]},
    {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
    {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"},
]


@pytest.mark.parametrize("attrs", INDICES_CASES)
@pytest.mark.parametrize("storage_order", [0, 1])
def test_max_pool_with_indices(attrs, storage_order) -> None:
    _run("MaxPool", (2, 3, 7, 6), {**attrs, "storage_order": storage_order}, outputs=2)


@pytest.mark.parametrize("storage_order", [0, 1])
def test_max_pool1d_with_indices(storage_order) -> None:
    _run("MaxPool", (2, 3, 9), {"kernel_shape": [3], "strides": [2], "pads": [1, 1], "storage_order": storage_order},
         outputs=2)


def test_max_pool_storage_order_without_indices() -> None:
    _run("MaxPool", (1, 2, 6, 6), {"kernel_shape": [2, 2], "storage_order": 1})


def test_max_pool_with_indices_node_test_values() -> None:
    """The ONNX node test's values: ties cannot happen, indices follow column-major storage order."""
    x = np.arange(1, 26, dtype=np.float32).reshape(1, 1, 5, 5)
    node = helper.make_node("MaxPool", ["x"], ["y", "z"], kernel_shape=[2, 2], strides=[2, 2], storage_order=1)
    model = make_model([node], [("x", FLOAT, x.shape)], [("y", FLOAT, None), ("z", TensorProto.INT64, None)])
    _, z = assert_matches_ort(model, {"x": x})
    np.testing.assert_array_equal(z, [[[[6, 16], [8, 18]]]])
