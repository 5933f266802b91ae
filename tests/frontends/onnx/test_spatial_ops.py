"""Resize, Upsample, InstanceNormalization, GroupNormalization, LRN, LpNormalization, DepthToSpace,
SpaceToDepth and Pad against ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

import openqnn
from helpers import FLOAT, INT64, assert_matches_ort, make_model, openqnn_run
from openqnn.errors import ConversionError


def _init(name: str, data) -> object:
    return numpy_helper.from_array(np.asarray(data), name)


def _check(op: str, shape, attrs: dict, opset: int, inputs: list = (), rtol: float = 1e-4, atol: float = 1e-5,
           seed: int = 0):
    """One-node model ``op(x, *inputs)``; ``inputs`` holds numpy constants, None (absent) or names."""
    rng = np.random.default_rng(seed)
    names, inits = ["x"], []
    for i, v in enumerate(inputs):
        if v is None:
            names.append("")
        else:
            names.append(f"in{i}")
            inits.append(_init(f"in{i}", v))
    while names and names[-1] == "":
        names.pop()
    node = helper.make_node(op, names, ["y"], **attrs)
    model = make_model([node], [("x", FLOAT, shape)], [("y", FLOAT, None)], inits, opset=opset)
    x = rng.standard_normal(shape).astype(np.float32)
    return assert_matches_ort(model, {"x": x}, rtol=rtol, atol=atol)


# -- Resize / Upsample ----------------------------------------------------------------------------------

F32 = np.float32
NCHW = (1, 3, 5, 7)
UP = np.array([1, 1, 2.0, 1.5], F32)
DOWN = np.array([1, 1, 0.6, 0.45], F32)
AC_UP = np.array([1, 1, 2, 3], F32)
AC_DOWN = np.array([1, 1, 0.6, 3 / 7], F32)

RESIZE_CASES = [
    # opset 10: scales input only, asymmetric coordinates
    (10, {"mode": "nearest"}, UP, None, NCHW),
    (10, {"mode": "nearest"}, DOWN, None, NCHW),
    (10, {"mode": "nearest"}, np.array([1, 1, 2, 2], F32), None, NCHW),
    (10, {"mode": "linear"}, UP, None, NCHW),
    (10, {"mode": "linear"}, DOWN, None, NCHW),
    # opset 11: every coordinate transformation, nearest rounding, cubic
    *[(11, {"mode": m, "coordinate_transformation_mode": c}, s, None, NCHW)
      for m in ("nearest", "linear", "cubic")
      for c in ("half_pixel", "pytorch_half_pixel", "asymmetric", "tf_half_pixel_for_nn")
      for s in (UP, DOWN)
      if not (c == "tf_half_pixel_for_nn" and m != "nearest")],
    # align_corners: scales whose output lengths are whole (see test_resize_align_corners_follows_onnx)
    *[(11, {"mode": m, "coordinate_transformation_mode": "align_corners"}, s, None, NCHW)
      for m in ("nearest", "linear", "cubic") for s in (AC_UP, AC_DOWN)],
    (11, {"mode": "linear", "coordinate_transformation_mode": "align_corners"}, None, np.array([1, 3, 4, 10]),
     NCHW),
    *[(11, {"mode": "nearest", "nearest_mode": n, "coordinate_transformation_mode": c}, s, None, NCHW)
      for n in ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
      for c in ("half_pixel", "asymmetric")
      for s in (UP, DOWN, np.array([1, 1, 3, 0.5], F32))],
    (11, {"mode": "cubic", "cubic_coeff_a": -0.5}, UP, None, NCHW),
    (11, {"mode": "cubic", "exclude_outside": 1}, UP, None, NCHW),
    (11, {"mode": "cubic", "exclude_outside": 1, "coordinate_transformation_mode": "align_corners"}, AC_DOWN, None,
     NCHW),
    (11, {"mode": "linear"}, None, np.array([1, 3, 9, 4]), NCHW),  # sizes
    (11, {"mode": "nearest"}, None, np.array([1, 3, 2, 13]), NCHW),
    (11, {"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize", "extrapolation_value": 2.5},
     np.array([1, 1, 2, 2], F32), None, NCHW, np.array([0, 0, -0.2, 0.1, 1, 1, 0.9, 1.3], F32)),
    (11, {"mode": "nearest", "coordinate_transformation_mode": "tf_crop_and_resize"},
     None, np.array([1, 3, 6, 5]), NCHW, np.array([0, 0, 0.1, -0.3, 1, 1, 0.7, 1.2], F32)),
    (11, {"mode": "cubic", "coordinate_transformation_mode": "tf_crop_and_resize", "extrapolation_value": -1.0},
     np.array([1, 1, 1.6, 0.8], F32), None, NCHW, np.array([0, 0, 0.2, -0.25, 1, 1, 1.1, 0.8], F32)),
    # other ranks and layouts
    (11, {"mode": "linear"}, np.array([1.5, 2.5], F32), None, (4, 6)),
    (11, {"mode": "cubic"}, np.array([2, 0.75], F32), None, (4, 8)),
    (11, {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
     np.array([1, 1, 2, 1.5, 0.5], F32), None, (1, 2, 3, 4, 6)),
    (11, {"mode": "nearest"}, np.array([1, 1, 2.5], F32), None, (2, 3, 5)),
    (11, {"mode": "nearest"}, np.array([1, 2, 1.5, 1], F32), None, NCHW),  # channels resized: ONNX layout
    (11, {"mode": "linear"}, np.array([1, 2, 1.5, 1], F32), None, NCHW),
    (11, {"mode": "nearest"}, np.array([1, 1, 1.2, 1.1], F32), None, (1, 2, 4, 4)),  # output == input: a copy
    # opset 13: sizes with scales absent
    (13, {"mode": "cubic", "coordinate_transformation_mode": "pytorch_half_pixel"}, None, np.array([1, 3, 3, 11]),
     NCHW),
    (13, {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}, None,
     np.array([1, 3, 10, 14]), NCHW),
    # opset 18: antialias, axes, keep_aspect_ratio_policy
    *[(18, {"mode": m, "antialias": 1, **extra}, s, None, (1, 2, 9, 12))
      for m in ("linear", "cubic")
      for s in (np.array([1, 1, 0.5, 0.34], F32), np.array([1, 1, 0.8, 1.6], F32))
      for extra in ({}, {"exclude_outside": 1}, {"coordinate_transformation_mode": "pytorch_half_pixel"})],
    (18, {"mode": "linear", "antialias": 1, "coordinate_transformation_mode": "align_corners"},
     np.array([1, 1, 1 / 3, 0.25], F32), None, (1, 2, 9, 12)),
    (18, {"mode": "linear", "axes": [2, 3]}, np.array([2, 0.5], F32), None, NCHW),
    (18, {"mode": "nearest", "axes": [-1]}, None, np.array([10]), NCHW),
    *[(18, {"mode": "linear", "axes": [2, 3], "keep_aspect_ratio_policy": p}, None, np.array([8, 8]), NCHW)
      for p in ("stretch", "not_larger", "not_smaller")],
    (18, {"mode": "cubic", "axes": [3, 2], "keep_aspect_ratio_policy": "not_larger"}, None, np.array([20, 4]), NCHW),
    (18, {"mode": "nearest", "keep_aspect_ratio_policy": "not_smaller"}, None, np.array([1, 3, 3, 9]), NCHW),
    # opset 19: half_pixel_symmetric
    *[(19, {"mode": m, "coordinate_transformation_mode": "half_pixel_symmetric"}, s, None, NCHW)
      for m in ("nearest", "linear", "cubic") for s in (UP, DOWN)],
    (19, {"mode": "linear", "coordinate_transformation_mode": "half_pixel_symmetric"}, None, np.array([1, 3, 8, 3]),
     NCHW),
]


def _case_id(case) -> str:
    opset, attrs, scales, sizes, shape = case[:5]
    bits = [f"op{opset}", *(f"{k}={v}" for k, v in attrs.items())]
    bits.append("scales=" + ",".join(f"{v:g}" for v in scales) if scales is not None else
                "sizes=" + ",".join(str(v) for v in sizes))
    return "-".join(bits) + "-" + "x".join(map(str, shape))


@pytest.mark.parametrize("case", RESIZE_CASES, ids=[_case_id(c) for c in RESIZE_CASES])
def test_resize(case):
    opset, attrs, scales, sizes, shape = case[:5]
    roi = case[5] if len(case) > 5 else None
    if opset == 10:
        inputs = [scales]
    else:
        empty_roi = np.zeros(0, F32) if opset < 13 else None
        roi_in = roi if roi is not None else empty_roi
        if sizes is None:
            inputs = [roi_in, scales]
        else:
            inputs = [roi_in, np.zeros(0, F32) if opset < 13 else None, sizes.astype(np.int64)]
    _check("Resize", shape, attrs, opset, inputs, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("opset", [7, 9])
@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("scales", [[1, 1, 2, 2], [1, 1, 1.5, 3]])
def test_upsample(opset, mode, scales):
    s = np.array(scales, F32)
    if opset == 7:
        _check("Upsample", NCHW, {"mode": mode, "scales": s.tolist()}, opset)
    else:
        _check("Upsample", NCHW, {"mode": mode}, opset, [s])


@pytest.mark.parametrize("dtype", [np.uint8, np.int32])
def test_resize_nearest_integer(dtype):
    node = helper.make_node("Resize", ["x", "", "s"], ["y"], mode="nearest")
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    model = make_model([node], [("x", elem, NCHW)], [("y", elem, None)], [_init("s", UP)], opset=13)
    x = np.random.default_rng(6).integers(0, 100, NCHW).astype(dtype)
    assert_matches_ort(model, {"x": x})


def test_resize_align_corners_follows_onnx():
    """With scales, align_corners maps through the resized length scale * in (ONNX's reference), not
    the rounded output length (what ONNX Runtime and PyTorch use); the two differ when scale * in is
    not whole. ONNX's own node test test_resize_downsample_scales_linear_align_corners has this case."""
    node = helper.make_node("Resize", ["x", "", "s"], ["y"], mode="linear", coordinate_transformation_mode="align_corners")
    model = make_model([node], [("x", FLOAT, (1, 1, 2, 4))], [("y", FLOAT, None)],
                       [_init("s", np.array([1, 1, 0.6, 0.6], F32))], opset=13)
    x = np.arange(1, 9, dtype=F32).reshape(1, 1, 2, 4)
    (y,) = openqnn_run(model, {"x": x})
    np.testing.assert_allclose(y, [[[[1.0, 1 + 3 / 1.4]]]], rtol=1e-6)


def test_resize_rejects_dynamic_scales():
    node = helper.make_node("Resize", ["x", "", "s"], ["y"], mode="nearest")
    model = make_model([node], [("x", FLOAT, NCHW), ("s", FLOAT, [4])], [("y", FLOAT, None)], opset=13)
    with pytest.raises(ConversionError, match="must be a constant"):
        openqnn.convert(model)


# -- normalizations -------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (2, 4, 7), (1, 2, 3, 4, 5)])
@pytest.mark.parametrize("opset", [7, 17])
def test_instance_norm(shape, opset):
    rng = np.random.default_rng(1)
    c = shape[1]
    _check("InstanceNormalization", shape, {"epsilon": 1e-3}, opset,
           [rng.standard_normal(c).astype(F32), rng.standard_normal(c).astype(F32)])


@pytest.mark.parametrize("shape,axis", [((2, 5, 16), -1), ((2, 5, 16), 1), ((3, 8), 0)])
def test_rms_normalization(shape, axis):
    """Opset 23's RMSNormalization becomes one RmsNorm (the op the RMSNorm fusion also makes)."""
    rng = np.random.default_rng(3)
    scale = rng.uniform(0.5, 1.5, shape[axis % len(shape):]).astype(F32)
    node = helper.make_node("RMSNormalization", ["x", "s"], ["y"], axis=axis, epsilon=1e-6)
    model = make_model([node], [("x", FLOAT, shape)], [("y", FLOAT, None)], [_init("s", scale)], opset=23)
    assert openqnn.convert(model).count_ops() == {"RmsNorm": 1}
    assert_matches_ort(model, {"x": rng.standard_normal(shape).astype(F32)})


def test_instance_norm_runtime_params():
    rng = np.random.default_rng(2)
    node = helper.make_node("InstanceNormalization", ["x", "s", "b"], ["y"])
    model = make_model([node], [("x", FLOAT, (2, 3, 4, 5)), ("s", FLOAT, (3,)), ("b", FLOAT, (3,))],
                       [("y", FLOAT, None)], opset=13)
    feeds = {"x": rng.standard_normal((2, 3, 4, 5)).astype(F32), "s": rng.standard_normal(3).astype(F32),
             "b": rng.standard_normal(3).astype(F32)}
    assert_matches_ort(model, feeds)


@pytest.mark.parametrize("opset", [18, 21])
@pytest.mark.parametrize("shape,groups", [((2, 6, 4, 5), 3), ((1, 4, 6), 2), ((2, 4, 3, 3), 4), ((1, 4, 3, 3), 1)])
def test_group_norm(opset, shape, groups):
    rng = np.random.default_rng(3)
    n = groups if opset < 21 else shape[1]
    _check("GroupNormalization", shape, {"num_groups": groups, "epsilon": 1e-4}, opset,
           [rng.standard_normal(n).astype(F32), rng.standard_normal(n).astype(F32)], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("opset", [18, 21])
def test_group_norm_runtime_params(opset):
    rng = np.random.default_rng(4)
    n = 2 if opset < 21 else 6
    node = helper.make_node("GroupNormalization", ["x", "s", "b"], ["y"], num_groups=2)
    model = make_model([node], [("x", FLOAT, (1, 6, 3, 4)), ("s", FLOAT, (n,)), ("b", FLOAT, (n,))],
                       [("y", FLOAT, None)], opset=opset)
    feeds = {"x": rng.standard_normal((1, 6, 3, 4)).astype(F32), "s": rng.standard_normal(n).astype(F32),
             "b": rng.standard_normal(n).astype(F32)}
    assert_matches_ort(model, feeds, atol=1e-4)


@pytest.mark.parametrize("attrs", [
    {"size": 3},
    {"size": 5, "alpha": 0.5, "beta": 0.6, "bias": 2.0},
    {"size": 1, "alpha": 0.1},
    {"size": 7, "alpha": 1e-3, "beta": 1.0},
])
@pytest.mark.parametrize("shape", [(1, 6, 4, 5), (2, 8, 3, 2)])
def test_lrn(attrs, shape):
    _check("LRN", shape, attrs, 13)


def test_lrn_even_size_is_refused():
    node = helper.make_node("LRN", ["x"], ["y"], size=4)
    model = make_model([node], [("x", FLOAT, NCHW)], [("y", FLOAT, None)], opset=13)
    with pytest.raises(ConversionError, match="odd window"):
        openqnn.convert(model)


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("axis,shape", [(-1, (2, 3, 4, 5)), (1, (2, 3, 4, 5)), (0, (3, 4)), (2, (2, 3, 4))])
def test_lp_norm(p, axis, shape):
    _check("LpNormalization", shape, {"p": p, "axis": axis}, 13)


# -- DepthToSpace / SpaceToDepth --------------------------------------------------------------------------

@pytest.mark.parametrize("mode,opset", [("DCR", 11), ("CRD", 11), ("DCR", 13), ("CRD", 13), (None, 7)])
@pytest.mark.parametrize("bs", [2, 3])
def test_depth_to_space(mode, opset, bs):
    attrs = {"blocksize": bs} | ({"mode": mode} if mode else {})
    _check("DepthToSpace", (2, 2 * bs * bs, 3, 4), attrs, opset)


@pytest.mark.parametrize("opset", [7, 13])
@pytest.mark.parametrize("bs,shape", [(2, (2, 3, 4, 6)), (3, (1, 2, 6, 9))])
def test_space_to_depth(opset, bs, shape):
    _check("SpaceToDepth", shape, {"blocksize": bs}, opset)


# -- Pad --------------------------------------------------------------------------------------------------

PAD_CASES = [
    # (opset, mode, pads, value, axes, shape)
    (7, "constant", [0, 0, 1, 2, 0, 0, 3, 0], 1.5, None, NCHW),
    (7, "reflect", [0, 0, 2, 1, 0, 0, 1, 3], None, None, NCHW),
    (7, "edge", [0, 1, 2, 0, 0, 0, 1, 3], None, None, NCHW),
    (11, "constant", [0, 0, 1, 2, 0, 0, 3, 0], -2.0, None, NCHW),
    (11, "constant", [1, 0, 0, 2, 0, 3, 1, 0], None, None, NCHW),
    (11, "reflect", [0, 0, 4, 1, 0, 0, 1, 6], None, None, NCHW),
    (11, "edge", [0, 0, 2, 2, 0, 0, 3, 3], None, None, NCHW),
    (11, "constant", [0, 0, -1, 2, 0, 0, 1, -3], 0.5, None, NCHW),  # negative pads crop
    (13, "edge", [2, 3, 1, 1], None, None, (4, 5)),
    (13, "reflect", [1, 2, 0, 0, 1, 2], None, None, (3, 4, 5)),
    (18, "constant", [1, 2, 3, 0], 4.0, [1, 3], NCHW),
    (18, "reflect", [2, 1, 3, 4], None, [-2, -1], NCHW),
    (18, "edge", [1, 2], None, [1], NCHW),
    (19, "wrap", [0, 0, 2, 1, 0, 0, 3, 2], None, None, NCHW),
    (19, "wrap", [1, 3], None, [-1], (2, 3, 4)),
    (19, "wrap", [5, 2, 0, 6], None, [-1, 1], (2, 3, 4)),
    (19, "constant", [0, 0, 0, 0, 0, 0, 0, 0], None, None, NCHW),
]


@pytest.mark.parametrize("case", PAD_CASES, ids=[f"op{c[0]}-{c[1]}-{i}" for i, c in enumerate(PAD_CASES)])
def test_pad(case):
    opset, mode, pads, value, axes, shape = case
    if opset < 11:
        attrs = {"mode": mode, "pads": pads} | ({"value": value} if value is not None else {})
        _check("Pad", shape, attrs, opset)
        return
    inputs = [np.array(pads, np.int64), None if value is None else np.array(value, F32)]
    if axes is not None:
        inputs.append(np.array(axes, np.int64))
    _check("Pad", shape, {"mode": mode}, opset, inputs)


def test_pad_int64():
    node = helper.make_node("Pad", ["x", "p", "v"], ["y"], mode="constant")
    model = make_model([node], [("x", INT64, (2, 3))], [("y", INT64, None)],
                       [_init("p", np.array([1, 0, 0, 2], np.int64)), _init("v", np.array(7, np.int64))], opset=13)
    assert_matches_ort(model, {"x": np.arange(6, dtype=np.int64).reshape(2, 3)})


# -- layout: ops between convolutions ---------------------------------------------------------------------

def test_between_convs_channel_last():
    """Conv -> Resize -> InstanceNorm -> Pad -> LRN -> DepthToSpace -> GroupNorm -> LpNorm -> Conv: every op
    stays channel-last, so the only Transposes left are at the graph's edges."""
    rng = np.random.default_rng(5)
    c = 8

    def w(*shape):
        return rng.standard_normal(shape).astype(F32) * 0.3

    inits = [
        _init("w1", w(c, 3, 3, 3)), _init("w2", w(4, 2, 3, 3)),
        _init("scales", np.array([1, 1, 2, 1.5], F32)),
        _init("is", w(c)), _init("ib", w(c)),
        _init("pads", np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)),
        _init("gs", w(2)), _init("gb", w(2)),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Resize", ["a", "", "scales"], ["b"], mode="linear"),
        helper.make_node("InstanceNormalization", ["b", "is", "ib"], ["c"]),
        helper.make_node("Pad", ["c", "pads"], ["d"], mode="reflect"),
        helper.make_node("LRN", ["d"], ["e"], size=3, alpha=0.2),
        helper.make_node("DepthToSpace", ["e"], ["f"], blocksize=2, mode="CRD"),
        helper.make_node("GroupNormalization", ["f", "gs", "gb"], ["g"], num_groups=2),
        helper.make_node("LpNormalization", ["g"], ["h"], axis=1, p=2),
        helper.make_node("Conv", ["h", "w2"], ["y"]),
    ]
    model = make_model(nodes, [("x", FLOAT, (1, 3, 6, 6))], [("y", FLOAT, None)], inits, opset=18)
    x = rng.standard_normal((1, 3, 6, 6)).astype(F32)
    assert_matches_ort(model, {"x": x}, rtol=1e-3, atol=1e-4)
    graph = openqnn.convert(model)
    ops = [n.op_type for n in graph.nodes]
    assert ops.count("Transpose") == 2, ops


def test_channel_axis_ops_after_conv():
    """Pad and Resize touching the channel axis of a channel-last activation remap their per-axis
    parameters instead of transposing back to NCHW."""
    rng = np.random.default_rng(7)
    inits = [
        _init("w1", rng.standard_normal((4, 3, 3, 3)).astype(F32)),
        _init("w2", rng.standard_normal((2, 9, 1, 1)).astype(F32)),
        _init("pads", np.array([0, 1, 1, 0, 0, 1, 0, 2], np.int64)),
        _init("scales", np.array([1, 1.5, 0.5, 2], F32)),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"]),
        helper.make_node("Pad", ["a", "pads"], ["b"], mode="edge"),
        helper.make_node("Resize", ["b", "", "scales"], ["c"], mode="nearest"),
        helper.make_node("LpNormalization", ["c"], ["d"], axis=1, p=1),
        helper.make_node("Conv", ["d", "w2"], ["y"]),
    ]
    model = make_model(nodes, [("x", FLOAT, (1, 3, 8, 8))], [("y", FLOAT, None)], inits, opset=13)
    assert_matches_ort(model, {"x": rng.standard_normal((1, 3, 8, 8)).astype(F32)}, atol=1e-4)
    ops = [n.op_type for n in openqnn.convert(model).nodes]
    assert ops.count("Transpose") == 2, ops
