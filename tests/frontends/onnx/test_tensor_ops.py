"""Tensor ONNX ops (Split, Slice, Expand, Tile, Gather*/Scatter*, Trilu, CumSum, TopK, ArgMax/ArgMin,
the Reduce family, Einsum, Mod, and the folded ConstantOfShape/Range) against ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import openqnn
from helpers import FLOAT, INT64, assert_matches_ort, make_model
from openqnn.errors import ConversionError

INT32 = TensorProto.INT32
I64_MAX, I64_MIN = np.iinfo(np.int64).max, np.iinfo(np.int64).min
_NP_TO_ONNX = {np.dtype(np.float32): FLOAT, np.dtype(np.int64): INT64, np.dtype(np.int32): INT32}


def _init(name: str, data) -> TensorProto:
    return numpy_helper.from_array(np.asarray(data), name)


def _i64(name: str, values) -> TensorProto:
    return _init(name, np.asarray(values, dtype=np.int64))


def _run(nodes, feeds: dict[str, np.ndarray], outputs, inits=(), opset: int = 17, **tol):
    """Build a model whose inputs are ``feeds`` and whose outputs are the names in ``outputs``
    (a name, or (name, elem type) when the output is not float), then compare with ONNX Runtime."""
    ins = [(n, _NP_TO_ONNX[a.dtype], a.shape) for n, a in feeds.items()]
    outs = [(o, FLOAT, None) if isinstance(o, str) else (o[0], o[1], None) for o in outputs]
    model = make_model(nodes, ins, outs, list(inits), opset=opset)
    return assert_matches_ort(model, feeds, **tol)


@pytest.fixture
def x3(rng):
    return rng.standard_normal((2, 6, 7)).astype(np.float32)


# -- Split --------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "opset,attrs,split,n_out,axis_size",
    [
        (11, {"split": [2, 4]}, None, 2, 6),
        (11, {}, None, 3, 6),
        (13, {}, [1, 2, 3], 3, 6),
        (13, {}, None, 2, 6),
        (18, {"num_outputs": 3}, None, 3, 7),  # uneven: 3, 3, 1
        (18, {}, [5, 0, 2], 3, 7),
    ],
)
def test_split(rng, opset, attrs, split, n_out, axis_size):
    x = rng.standard_normal((2, axis_size, 3)).astype(np.float32)
    inputs, inits = ["x"], []
    if split is not None:
        inputs.append("split")
        inits.append(_i64("split", split))
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node("Split", inputs, outs, axis=1, **attrs)
    _run([node], {"x": x}, outs, inits, opset=opset)


def test_split_negative_axis(x3):
    node = helper.make_node("Split", ["x", "s"], ["a", "b"], axis=-1)
    _run([node], {"x": x3}, ["a", "b"], [_i64("s", [3, 4])], opset=13)


# -- Slice --------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "starts,ends,axes,steps",
    [
        ([1, 0], [2, 5], [0, 2], None),
        ([1, -1], [I64_MAX, I64_MIN], [1, 2], [2, -1]),  # INT64 clamping, full reverse of axis 2
        ([-1], [-1000], [1], [-2]),
        ([I64_MAX], [I64_MIN], [-1], [-3]),
        ([0, 1, 2], [-1, 100, -2], None, None),
        ([5], [1], [2], [-1]),
        ([3], [1], [2], [1]),  # empty
    ],
)
def test_slice(x3, starts, ends, axes, steps):
    inputs, inits = ["x", "st", "en"], [_i64("st", starts), _i64("en", ends)]
    if axes is not None:
        inputs.append("ax")
        inits.append(_i64("ax", axes))
    if steps is not None:
        if axes is None:
            inputs.append("")
        inputs.append("sp")
        inits.append(_i64("sp", steps))
    _run([helper.make_node("Slice", inputs, ["y"])], {"x": x3}, ["y"], inits, opset=13)


def test_slice_int32_inputs(x3):
    inits = [_init("st", np.array([1], np.int32)), _init("en", np.array([-1], np.int32)),
             _init("ax", np.array([1], np.int32))]
    _run([helper.make_node("Slice", ["x", "st", "en", "ax"], ["y"])], {"x": x3}, ["y"], inits, opset=13)


def test_slice_opset9_attributes(x3):
    node = helper.make_node("Slice", ["x"], ["y"], starts=[1, -3], ends=[1000, -1], axes=[1, 2])
    _run([node], {"x": x3}, ["y"], opset=9)


# -- Expand / Tile ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "in_shape,shape",
    [((3, 1), (2, 1, 4)), ((1, 4), (3, 1)), ((2, 3), (1, 3)), ((2, 1, 3), (2, 5, 3)), ((4,), (2, 3, 1))],
)
def test_expand(rng, in_shape, shape):
    x = rng.standard_normal(in_shape).astype(np.float32)
    node = helper.make_node("Expand", ["x", "s"], ["y"])
    _run([node], {"x": x}, ["y"], [_i64("s", shape)], opset=13)


def test_tile(x3):
    _run([helper.make_node("Tile", ["x", "r"], ["y"])], {"x": x3}, ["y"], [_i64("r", [2, 1, 3])])


def test_tile_int(rng):
    x = rng.integers(-5, 5, (2, 3)).astype(np.int64)
    _run([helper.make_node("Tile", ["x", "r"], ["y"])], {"x": x}, [("y", INT64)], [_i64("r", [3, 2])])


# -- folded: ConstantOfShape, Range -------------------------------------------------------------

def test_constant_of_shape_folds(x3):
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("ConstantOfShape", ["s"], ["c"], value=helper.make_tensor("v", FLOAT, [1], [2.5])),
        helper.make_node("Mul", ["x", "c"], ["y"]),
    ]
    _run(nodes, {"x": x3}, ["y"])
    model = make_model(nodes, [("x", FLOAT, x3.shape)], [("y", FLOAT, None)])
    assert openqnn.convert(model).op_types() == ["ElementWiseMultiply"]


def test_range_folds(rng):
    x = rng.standard_normal((2, 5)).astype(np.float32)
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "one"], ["n"]),
        helper.make_node("Range", ["zero", "n", "one"], ["r"]),
        helper.make_node("Cast", ["r"], ["rf"], to=FLOAT),
        helper.make_node("Add", ["x", "rf"], ["y"]),
    ]
    inits = [_init("zero", np.array(0, np.int64)), _init("one", np.array(1, np.int64))]
    _run(nodes, {"x": x}, ["y"], inits)


# -- gather / scatter ---------------------------------------------------------------------------

@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("static", [False, True])
def test_gather_elements(rng, axis, static):
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    size = x.shape[axis]
    idx = rng.integers(-size, size, (3, 4, 5) if axis != 1 else (3, 2, 5)).astype(np.int64)
    node = helper.make_node("GatherElements", ["x", "i"], ["y"], axis=axis)
    if static:
        _run([node], {"x": x}, ["y"], [_i64("i", idx)])
    else:
        _run([node], {"x": x, "i": idx}, ["y"])


@pytest.mark.parametrize("dtype", [np.int64, np.int32])
@pytest.mark.parametrize("negative", [False, True])
def test_gather_embedding_lookup(rng, dtype, negative):
    """Gather of a static [vocab, dim] table on axis 0 (an embedding), indices in range or some negative."""
    table = rng.standard_normal((11, 4)).astype(np.float32)
    idx = rng.integers(-11 if negative else 0, 11, (2, 5)).astype(dtype)
    if negative:
        idx[0, 0] = -1
    _run([helper.make_node("Gather", ["t", "i"], ["y"], axis=0)], {"i": idx}, ["y"], [_init("t", table)])


@pytest.mark.parametrize("batch_dims,idx_shape", [(0, (4, 2)), (0, (2, 3, 3)), (0, (2, 1)), (1, (3, 2, 1)),
                                                  (1, (3, 2))])
def test_gather_nd(rng, batch_dims, idx_shape):
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    k = idx_shape[-1]
    dims = x.shape[batch_dims:batch_dims + k]
    idx = np.stack([rng.integers(-d, d, idx_shape[:-1]) for d in dims], -1).astype(np.int64)
    node = helper.make_node("GatherND", ["x", "i"], ["y"], batch_dims=batch_dims)
    _run([node], {"x": x, "i": idx}, ["y"], opset=13)


def _unique_along(rng, shape, axis, size):
    """Indices without repeats along ``axis`` (a permutation slice per position)."""
    perm = np.argsort(rng.random((*shape[:axis], size, *shape[axis + 1:])), axis=axis)
    return np.take(perm, np.arange(shape[axis]), axis=axis).astype(np.int64)


@pytest.mark.parametrize("reduction,opset", [("none", 16), ("add", 16), ("mul", 16), ("max", 18), ("min", 18)])
def test_scatter_elements(rng, reduction, opset):
    x = rng.standard_normal((3, 5)).astype(np.float32)
    upd = rng.standard_normal((3, 2)).astype(np.float32)
    if reduction == "none":
        idx = _unique_along(rng, (3, 2), 1, 5)
    else:
        idx = rng.integers(-5, 5, (3, 2)).astype(np.int64)
    attrs = {} if reduction == "none" else {"reduction": reduction}
    node = helper.make_node("ScatterElements", ["x", "i", "u"], ["y"], axis=1, **attrs)
    _run([node], {"x": x, "i": idx, "u": upd}, ["y"], opset=opset)


@pytest.mark.parametrize("reduction,opset", [("none", 16), ("add", 16), ("mul", 16), ("max", 18), ("min", 18)])
@pytest.mark.parametrize("k", [1, 2])
def test_scatter_nd(rng, reduction, opset, k):
    x = rng.standard_normal((4, 3, 2)).astype(np.float32)
    if reduction == "none":  # distinct positions
        flat = rng.permutation(int(np.prod(x.shape[:k])))[:3]
        idx = np.stack(np.unravel_index(flat, x.shape[:k]), -1).astype(np.int64)
    else:  # repeats accumulate
        idx = np.stack([rng.integers(0, d, 5) for d in x.shape[:k]], -1).astype(np.int64)
    upd = rng.standard_normal((idx.shape[0], *x.shape[k:])).astype(np.float32)
    attrs = {} if reduction == "none" else {"reduction": reduction}
    node = helper.make_node("ScatterND", ["x", "i", "u"], ["y"], **attrs)
    _run([node], {"x": x, "i": idx, "u": upd}, ["y"], opset=opset)


def test_scatter_nd_int_static_indices(rng):
    x = rng.integers(-9, 9, (5, 4)).astype(np.int64)
    upd = rng.integers(-9, 9, (2, 2, 4)).astype(np.int64)
    idx = np.array([[[0], [3]], [[-1], [1]]], dtype=np.int64)
    node = helper.make_node("ScatterND", ["x", "i", "u"], ["y"])
    _run([node], {"x": x, "u": upd}, [("y", INT64)], [_i64("i", idx)])


# -- Trilu --------------------------------------------------------------------------------------

@pytest.mark.parametrize("upper,k", [(1, None), (0, None), (1, 2), (0, -1), (1, -10)])
def test_trilu(rng, upper, k):
    x = rng.standard_normal((2, 4, 5)).astype(np.float32)
    x[0, 3, 0] = np.inf
    inputs, inits = ["x"], []
    if k is not None:
        inputs.append("k")
        inits.append(_init("k", np.array(k, np.int64)))
    _run([helper.make_node("Trilu", inputs, ["y"], upper=upper)], {"x": x}, ["y"], inits, opset=14)


def test_trilu_int(rng):
    x = rng.integers(-9, 9, (3, 3)).astype(np.int64)
    _run([helper.make_node("Trilu", ["x"], ["y"], upper=0)], {"x": x}, [("y", INT64)], opset=14)


# -- CumSum -------------------------------------------------------------------------------------

@pytest.mark.parametrize("axis", [1, -1])
@pytest.mark.parametrize("exclusive,reverse", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_cumsum(x3, axis, exclusive, reverse):
    node = helper.make_node("CumSum", ["x", "a"], ["y"], exclusive=exclusive, reverse=reverse)
    _run([node], {"x": x3}, ["y"], [_i64("a", axis)])


def test_cumsum_int32(rng):
    x = rng.integers(-9, 9, (3, 4)).astype(np.int32)
    node = helper.make_node("CumSum", ["x", "a"], ["y"], exclusive=1)
    _run([node], {"x": x}, [("y", INT32)], [_init("a", np.array(0, np.int32))])


# -- TopK ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("opset,axis,largest,k", [(9, -1, 1, 3), (11, 1, 1, 4), (11, 1, 0, 2), (11, 0, 0, 2),
                                                  (11, -1, 1, 7)])
def test_topk_ties(rng, opset, axis, largest, k):
    x = rng.integers(0, 3, (3, 5, 7)).astype(np.float32)  # many ties: lower index first
    if opset < 10:
        node = helper.make_node("TopK", ["x"], ["v", "i"], axis=axis, k=k)
        inits = []
    else:
        node = helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=axis, largest=largest)
        inits = [_i64("k", [k])]
    _run([node], {"x": x}, ["v", ("i", INT64)], inits, opset=opset)


# -- ArgMax / ArgMin ----------------------------------------------------------------------------

@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("axis,keepdims,last", [(0, 1, 0), (1, 0, 0), (-1, 1, 1), (1, 0, 1), (2, 0, 1)])
def test_arg_reduce(rng, op, axis, keepdims, last):
    x = rng.integers(0, 3, (3, 4, 5)).astype(np.float32)  # ties
    node = helper.make_node(op, ["x"], ["y"], axis=axis, keepdims=keepdims, select_last_index=last)
    _run([node], {"x": x}, [("y", INT64)], opset=13)


def test_argmax_default_attrs_opset11(x3):
    _run([helper.make_node("ArgMax", ["x"], ["y"])], {"x": x3}, [("y", INT64)], opset=11)


# -- reductions ---------------------------------------------------------------------------------

REDUCE_OPS = ["ReduceMax", "ReduceMin", "ReduceMean", "ReduceSum", "ReduceProd", "ReduceL1", "ReduceL2",
              "ReduceLogSumExp", "ReduceSumSquare", "ReduceLogSum"]


@pytest.mark.parametrize("op", REDUCE_OPS)
@pytest.mark.parametrize("opset", [11, 18])
@pytest.mark.parametrize("axes,keepdims", [([1], 1), ([0, -1], 0), (None, 1), (None, 0)])
def test_reduce(rng, op, opset, axes, keepdims):
    x = (rng.standard_normal((2, 3, 4)) * 0.8).astype(np.float32)
    if op == "ReduceLogSum":
        x = np.abs(x) + 0.1
    inputs, inits, attrs = ["x"], [], {"keepdims": keepdims}
    if axes is not None:
        if opset >= 18 or (op == "ReduceSum" and opset >= 13):
            inputs.append("axes")
            inits.append(_i64("axes", axes))
        else:
            attrs["axes"] = axes
    nodes = [helper.make_node(op, inputs, ["y"], **attrs)]
    if axes is None and not keepdims:  # a rank-0 result; the session returns rank-0 outputs as shape (1,)
        nodes[0].output[0] = "r"
        nodes.append(helper.make_node("Reshape", ["r", "one"], ["y"]))
        inits.append(_i64("one", [1]))
    _run(nodes, {"x": x}, ["y"], inits, opset=opset, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMax", "ReduceL2", "ReduceL1", "ReduceSumSquare",
                                "ReduceLogSumExp", "ReduceLogSum"])
def test_reduce_noop_with_empty_axes(x3, op):
    x3 = np.abs(x3) + 0.1 if op == "ReduceLogSum" else x3
    node = helper.make_node(op, ["x"], ["y"], noop_with_empty_axes=1)
    _run([node], {"x": x3}, ["y"], opset=18)


def test_reduce_sum_opset13_axes_input(x3):
    node = helper.make_node("ReduceSum", ["x", "a"], ["y"], keepdims=0)
    _run([node], {"x": x3}, ["y"], [_i64("a", [1])], opset=13)


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMax", "ReduceMean", "ReduceProd"])
def test_reduce_int(rng, op):
    x = rng.integers(-5, 6, (3, 4)).astype(np.int64)
    _run([helper.make_node(op, ["x"], ["y"], axes=[1], keepdims=0)], {"x": x}, [("y", INT64)], opset=13
         if op != "ReduceSum" else 11)


# -- Einsum -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "eq,shapes",
    [
        ("ij,jk->ik", [(3, 4), (4, 5)]),
        ("ij,jk", [(3, 4), (4, 5)]),
        ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
        ("bhid,bhjd->bhij", [(2, 3, 4, 5), (2, 3, 6, 5)]),
        ("ij->ji", [(3, 4)]),
        ("ij->i", [(3, 4)]),
        ("ijk->j", [(2, 3, 4)]),
        ("ijk->kji", [(2, 3, 4)]),
        ("i,j->ij", [(3,), (4,)]),
        ("ij,ij->i", [(3, 4), (3, 4)]),
        ("ij,ij->ij", [(3, 4), (3, 4)]),
        ("bi,ki->bk", [(2, 4), (5, 4)]),
        ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]),
        ("...ij,...jk->...ik", [(2, 1, 3, 4), (2, 5, 4, 6)]),
        ("b...,b->...", [(2, 3, 4), (2,)]),
        ("abc,cd->abd", [(2, 3, 4), (4, 5)]),
        ("ij,k->ik", [(2, 3), (4,)]),
    ],
)
def test_einsum(rng, eq, shapes):
    feeds = {f"x{i}": rng.standard_normal(s).astype(np.float32) for i, s in enumerate(shapes)}
    node = helper.make_node("Einsum", list(feeds), ["y"], equation=eq)
    _run([node], feeds, ["y"], opset=12, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("eq, shape", [("ii->i", (3, 3)), ("bii->bi", (2, 4, 4)), ("iij->j", (3, 3, 2)),
                                       ("ij,jj->i", None)])
def test_einsum_diagonal(rng, eq, shape):
    if shape is None:
        feeds = {"x0": rng.standard_normal((2, 3)).astype(np.float32), "x1": rng.standard_normal((3, 3)).astype(np.float32)}
    else:
        feeds = {"x0": rng.standard_normal(shape).astype(np.float32)}
    node = helper.make_node("Einsum", list(feeds), ["y"], equation=eq)
    _run([node], feeds, ["y"], opset=12, rtol=1e-4, atol=1e-4)


# -- Mod ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmod,dtype", [(0, np.int64), (1, np.int64), (1, np.float32), (0, np.int32)])
def test_mod(rng, fmod, dtype):
    a = rng.integers(-20, 20, (3, 4)).astype(dtype)
    b = rng.integers(1, 6, (3, 4)).astype(dtype) * rng.choice([-1, 1], (3, 4)).astype(dtype)
    if dtype == np.float32:
        a = a + rng.random((3, 4)).astype(dtype)
    node = helper.make_node("Mod", ["a", "b"], ["y"], fmod=fmod)
    _run([node], {"a": a, "b": b}, [("y", _NP_TO_ONNX[np.dtype(dtype)])], opset=13)


# -- after a Conv: the input is channel-last in the IR ------------------------------------------

def _conv_model_nodes(rng):
    w = rng.standard_normal((4, 3, 1, 1)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    return helper.make_node("Conv", ["x", "w", "b"], ["c"]), [_init("w", w), _init("b", b)]


AFTER_CONV = [
    ("ReduceMean", {"axes": [1], "keepdims": 0}, [], ["y"], 13),
    ("ReduceSum", {"keepdims": 0}, [_i64("ax", [1, 3])], ["y"], 13),
    ("ReduceMax", {"axes": [2, 3], "keepdims": 1}, [], ["y"], 13),
    ("ArgMax", {"axis": 1, "keepdims": 0}, [], [("y", INT64)], 13),
    ("ArgMin", {"axis": 3, "keepdims": 1, "select_last_index": 1}, [], [("y", INT64)], 13),
    ("Slice", {}, [_i64("st", [1, -1]), _i64("en", [3, I64_MIN]), _i64("ax", [1, 3]), _i64("sp", [1, -2])],
     ["y"], 13),
    ("Split", {"axis": 1}, [_i64("sp", [1, 3])], ["y", "z"], 13),
    ("TopK", {"axis": 1}, [_i64("k", [2])], ["y", ("z", INT64)], 13),
    ("CumSum", {"reverse": 1}, [_i64("ax", 1)], ["y"], 13),
    ("Tile", {}, [_i64("r", [1, 2, 1, 3])], ["y"], 13),
    ("Expand", {}, [_i64("s", [2, 1, 1, 1])], ["y"], 13),
    ("Trilu", {"upper": 0}, [], ["y"], 14),
    ("ReduceL2", {"keepdims": 1}, [_i64("ax", [1])], ["y"], 18),
]


@pytest.mark.parametrize("op,attrs,extra,outs,opset", AFTER_CONV, ids=[c[0] for c in AFTER_CONV])
def test_after_conv(rng, op, attrs, extra, outs, opset):
    conv, inits = _conv_model_nodes(rng)
    names = [e.name for e in extra]
    node = helper.make_node(op, ["c", *names], [o if isinstance(o, str) else o[0] for o in outs], **attrs)
    x = rng.standard_normal((1, 3, 5, 6)).astype(np.float32)
    _run([conv, node], {"x": x}, outs, inits + list(extra), opset=opset)


def test_after_conv_stays_channel_last(rng):
    """A channel-last input is reduced in place: no Transpose between the convolution and the op."""
    conv, inits = _conv_model_nodes(rng)
    node = helper.make_node("ReduceMean", ["c"], ["y"], axes=[1], keepdims=1)
    model = make_model([conv, node], [("x", FLOAT, (1, 3, 5, 6))], [("y", FLOAT, None)], inits, opset=13)
    g = openqnn.convert(model)
    reduce = next(n for n in g.nodes if n.op_type == "ReduceMean")
    producer = g.producers()[reduce.inputs[0]]
    assert producer.op_type == "Conv2d"
    assert reduce.attrs["axes"] == (3,)


def test_gather_elements_after_conv(rng):
    conv, inits = _conv_model_nodes(rng)
    idx = rng.integers(0, 4, (1, 2, 5, 6)).astype(np.int64)
    node = helper.make_node("GatherElements", ["c", "i"], ["y"], axis=1)
    x = rng.standard_normal((1, 3, 5, 6)).astype(np.float32)
    _run([conv, node], {"x": x}, ["y"], [*inits, _i64("i", idx)])


def test_scatter_opset10_alias(rng):
    x = rng.standard_normal((3, 5)).astype(np.float32)
    idx = _unique_along(rng, (3, 2), 1, 5)
    upd = rng.standard_normal((3, 2)).astype(np.float32)
    node = helper.make_node("Scatter", ["x", "i", "u"], ["y"], axis=1)
    _run([node], {"x": x, "i": idx, "u": upd}, ["y"], opset=10)


def test_dynamic_k_refused(rng):
    model = make_model([helper.make_node("TopK", ["x", "k"], ["v", "i"])],
                       [("x", FLOAT, (3, 4)), ("k", INT64, (1,))], [("v", FLOAT, None), ("i", INT64, None)])
    with pytest.raises(ConversionError, match="must be a constant"):
        openqnn.convert(model)


@pytest.mark.parametrize("op", ["ReduceMax", "ReduceMin", "ReduceSum", "ReduceProd"])
def test_reduce_empty_set(x3, op):
    """A reduction over no elements gives its identity (-inf for max, ...); the empty tensor comes
    from a Slice (graph inputs cannot have 0-sized dims)."""
    nodes = [helper.make_node("Slice", ["x", "z", "z", "one"], ["e"]),
             helper.make_node(op, ["e", "one"], ["y"], keepdims=1)]
    _run(nodes, {"x": x3}, ["y"], [_i64("z", [0]), _i64("one", [1])], opset=18)


# Nodes with an output nobody reads keep that output (Graph.remove_unused).
def test_topk_values_only(rng):
    x = rng.standard_normal((3, 6)).astype(np.float32)
    nodes = [helper.make_node("TopK", ["x", "k"], ["v", "i"]), helper.make_node("Relu", ["v"], ["y"])]
    _run(nodes, {"x": x}, ["y"], [_i64("k", [2])])


def test_split_unused_output(x3):
    nodes = [helper.make_node("Split", ["x", "s"], ["a", "b"], axis=1), helper.make_node("Relu", ["a"], ["y"])]
    _run(nodes, {"x": x3}, ["y"], [_i64("s", [6, 0])], opset=13)
