"""IR-op -> ONNX translations of the compute ops: convolution, pooling, fully connected, matmul,
elementwise and activations, cast, softmax, normalizations, reductions, arg-reductions, cumsum, top-k.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from onnx import TensorProto

from openqnn.ir.dtype import DType
from openqnn.ir.graph import Node
from openqnn.quantization.qdq.builder import (
    _channel_first,
    _channel_last,
    _Exporter,
    _handles,
    _onnx_type,
    _pads,
    _present,
    _Unsupported,
)

_CONVS = {"Conv2d": "Conv", "DepthWiseConv2d": "Conv", "Conv3d": "Conv",
          "TransposeConv2d": "ConvTranspose", "TransposeConv3d": "ConvTranspose"}


@_handles(*_CONVS)
def _conv(ex: _Exporter, node: Node, outs: list[str]) -> None:
    x, w = node.inputs[0], node.inputs[1]
    rank = len(ex.shape(x))
    n = rank - 2
    a = node.attrs
    transposed = _CONVS[node.op_type] == "ConvTranspose"
    # IR filter [k..., cin/g, cout] (transposed: [k..., cin, cout/g]) -> ONNX [cout, cin/g, k...] ([cin, cout/g, k...])
    wperm = (n, n + 1, *range(n)) if transposed else (n + 1, n, *range(n))
    ins = [ex.v(x, _channel_first(rank)), ex.v(w, wperm)]
    if _present(node, 2):
        ins.append(ex.v(node.inputs[2]))
    group = ex.shape(x)[-1] if node.op_type == "DepthWiseConv2d" else a["group"]
    attrs: dict[str, Any] = {"kernel_shape": list(ex.shape(w)[:n]), "strides": list(a["stride"]),
                             "dilations": list(a["dilation"]), "pads": _pads(a["pad_amount"]), "group": int(group)}
    if transposed:
        attrs["output_padding"] = list(a["output_padding"])
    y = ex.one(_CONVS[node.op_type], ins, name=node.name, **attrs)
    ex.transpose(y, _channel_last(rank), outs[0])


_POOLS = {"PoolMax2d": "MaxPool", "PoolMax3d": "MaxPool", "PoolAvg2d": "AveragePool", "PoolAvg3d": "AveragePool",
          "PoolLp2d": "LpPool", "PoolMax2dWithIndices": "MaxPool"}


@_handles(*_POOLS)
def _pool(ex: _Exporter, node: Node, outs: list[str]) -> None:
    x = node.inputs[0]
    rank = len(ex.shape(x))
    a = node.attrs
    attrs: dict[str, Any] = {"kernel_shape": list(a["filter_size"]), "strides": list(a["stride"]),
                             "pads": _pads(a["pad_amount"]), "dilations": list(a["dilation"]),
                             "ceil_mode": int(a["rounding_mode"] == 1)}
    if node.op_type.startswith("PoolAvg"):
        attrs["count_include_pad"] = int(a["count_pad_for_edges"])
    if node.op_type == "PoolLp2d":
        attrs["p"] = int(a["p"])
    if node.op_type == "PoolMax2dWithIndices":
        attrs["storage_order"] = int(a["storage_order"])
    ys = ex.add(_POOLS[node.op_type], [ex.v(x, _channel_first(rank))], len(outs), name=node.name, **attrs)
    for y, out in zip(ys, outs):
        ex.transpose(y, _channel_last(rank), out)


@_handles("FullyConnected")
def _fully_connected(ex: _Exporter, node: Node, outs: list[str]) -> None:
    x = node.inputs[0]
    k = ex.shape(node.inputs[1])[1]
    xv = ex.v(x)
    if len(ex.shape(x)) != 2:
        xv = ex.one("Reshape", [xv, ex.ints((-1, k))])
    ins = [xv, ex.v(node.inputs[1])] + ([ex.v(node.inputs[2])] if _present(node, 2) else [])
    out_shape = ex.shape(node.outputs[0])
    if len(out_shape) == 2:
        ex.one("Gemm", ins, outs[0], name=node.name, transB=1)
    else:
        y = ex.one("Gemm", ins, name=node.name, transB=1)
        ex.one("Reshape", [y, ex.ints(out_shape)], outs[0])


def _swap_last(rank: int) -> tuple[int, ...]:
    return (*range(rank - 2), rank - 1, rank - 2)


@_handles("MatMul")
def _matmul(ex: _Exporter, node: Node, outs: list[str]) -> None:
    ins = []
    for i, flag in ((0, "transpose_in0"), (1, "transpose_in1")):
        name = node.inputs[i]
        ins.append(ex.v(name, _swap_last(len(ex.shape(name))) if node.attrs[flag] else None))
    ex.one("MatMul", ins, outs[0], name=node.name)


_BINARY = {"ElementWiseAdd": "Add", "ElementWiseSubtract": "Sub", "ElementWiseMultiply": "Mul",
           "ElementWiseDivide": "Div", "ElementWisePower": "Pow", "ElementWiseMaximum": "Max",
           "ElementWiseMinimum": "Min", "ElementWiseAnd": "And", "ElementWiseOr": "Or", "ElementWiseXor": "Xor",
           "ElementWiseEqual": "Equal", "ElementWiseGreater": "Greater", "ElementWiseGreaterEqual": "GreaterOrEqual",
           "ElementWiseLess": "Less", "ElementWiseLessEqual": "LessOrEqual"}


@_handles(*_BINARY)
def _binary(ex: _Exporter, node: Node, outs: list[str]) -> None:
    ex.one(_BINARY[node.op_type], ex.operands(node), outs[0], name=node.name)


@_handles("ElementWiseNotEqual")
def _not_equal(ex: _Exporter, node: Node, outs: list[str]) -> None:
    ex.one("Not", [ex.one("Equal", [ex.v(x) for x in node.inputs], name=node.name)], outs[0])


@_handles("ElementWiseFmod", "ElementWiseMod")
def _mod(ex: _Exporter, node: Node, outs: list[str]) -> None:
    a, b = (ex.v(x) for x in node.inputs)
    if node.op_type == "ElementWiseFmod":
        ex.one("Mod", [a, b], outs[0], name=node.name, fmod=1)
    elif not ex.dtype(node.inputs[0]).is_float:
        ex.one("Mod", [a, b], outs[0], name=node.name, fmod=0)
    else:  # Python's remainder (the divisor's sign): fmod, plus the divisor where the signs differ
        dt = ex.dtype(node.inputs[0])
        r = ex.one("Mod", [a, b], name=node.name, fmod=1)
        zero = ex.scalar(0.0, dt)
        differ = ex.one("Xor", [ex.one("Less", [r, zero]), ex.one("Less", [b, zero])])
        fix = ex.one("And", [ex.one("Not", [ex.one("Equal", [r, zero])]), differ])
        ex.one("Where", [fix, ex.one("Add", [r, b]), r], outs[0])


@_handles("ElementWiseFloorDiv")
def _floor_div(ex: _Exporter, node: Node, outs: list[str]) -> None:
    a, b = (ex.v(x) for x in node.inputs)
    dt = ex.dtype(node.inputs[0])
    if dt.is_float:
        ex.one("Floor", [ex.one("Div", [a, b], name=node.name)], outs[0])
        return
    a64, b64 = (ex.one("Cast", [t], to=TensorProto.DOUBLE) for t in (a, b))
    fl = ex.one("Floor", [ex.one("Div", [a64, b64], name=node.name)])
    ex.one("Cast", [fl], outs[0], to=_onnx_type(dt))


@_handles("ElementWiseBitShiftLeft", "ElementWiseBitShiftRight")
def _bit_shift(ex: _Exporter, node: Node, outs: list[str]) -> None:
    if ex.dtype(node.inputs[0]) not in (DType.UINT_8, DType.UINT_16, DType.UINT_32, DType.UINT_64):
        raise _Unsupported(f"ONNX BitShift takes unsigned integers, not {ex.dtype(node.inputs[0]).name}")
    direction = "LEFT" if node.op_type.endswith("Left") else "RIGHT"
    ex.one("BitShift", [ex.v(x) for x in node.inputs], outs[0], name=node.name, direction=direction)


_UNARY = {"ElementWiseAbs": "Abs", "ElementWiseNeg": "Neg", "ElementWiseExp": "Exp", "ElementWiseLog": "Log",
          "ElementWiseSquareRoot": "Sqrt", "ElementWiseSin": "Sin", "ElementWiseCos": "Cos",
          "ElementWiseTan": "Tan", "ElementWiseAsin": "Asin", "ElementWiseAcos": "Acos", "ElementWiseAtan": "Atan",
          "ElementWiseSinh": "Sinh", "ElementWiseCosh": "Cosh", "ElementWiseAsinh": "Asinh",
          "ElementWiseAcosh": "Acosh", "ElementWiseAtanh": "Atanh", "ElementWiseFloor": "Floor",
          "ElementWiseCeil": "Ceil", "ElementWiseRound": "Round", "ElementWiseSign": "Sign", "ElementWiseNot": "Not",
          "ElementWiseReciprocal": "Reciprocal", "ElementWiseErf": "Erf", "ElementWiseSoftplus": "Softplus",
          "ElementWiseSoftsign": "Softsign", "ElementWiseIsNan": "IsNaN", "Relu": "Relu", "Sigmoid": "Sigmoid",
          "Tanh": "Tanh", "HardSwish": "HardSwish", "Mish": "Mish", "Gelu": "Gelu", "Elu": "Elu", "Selu": "Selu",
          "Celu": "Celu", "HardSigmoid": "HardSigmoid", "ElementWiseIsInf": "IsInf"}
_UNARY_ATTRS = {"Gelu": {"approximate": "approximate"}, "Elu": {"alpha": "alpha"},
                "Selu": {"alpha": "alpha", "gamma": "gamma"}, "Celu": {"alpha": "alpha"},
                "HardSigmoid": {"alpha": "alpha", "beta": "beta"},
                "ElementWiseIsInf": {"detect_negative": "detect_negative", "detect_positive": "detect_positive"}}


@_handles(*_UNARY)
def _unary(ex: _Exporter, node: Node, outs: list[str]) -> None:
    attrs = {onnx_name: (int(v) if isinstance(v := node.attrs[ir_name], bool) else v)
             for ir_name, onnx_name in _UNARY_ATTRS.get(node.op_type, {}).items()}
    ex.one(_UNARY[node.op_type], [ex.v(node.inputs[0])], outs[0], name=node.name, **attrs)


@_handles("ElementWiseRsqrt")
def _rsqrt(ex: _Exporter, node: Node, outs: list[str]) -> None:
    ex.one("Reciprocal", [ex.one("Sqrt", [ex.v(node.inputs[0])], name=node.name)], outs[0])


@_handles("ReluMinMax")
def _relu_min_max(ex: _Exporter, node: Node, outs: list[str]) -> None:
    dt = ex.dtype(node.inputs[0])
    lo, hi = ex.scalar(node.attrs["min_value"], dt), ex.scalar(node.attrs["max_value"], dt)
    ex.one("Clip", [ex.v(node.inputs[0]), lo, hi], outs[0], name=node.name)


@_handles("Prelu")
def _prelu(ex: _Exporter, node: Node, outs: list[str]) -> None:
    # a 16-bit PRelu with a per-channel slope QNN fails to finalize (QNN_COMMON_ERROR_MEM_ALLOC, v68 and
    # v73): that slope keeps its 8-bit type and QNN EP runs the op on floats; a single slope (LeakyRelu) widens
    single = int(np.prod(ex.shape(node.inputs[1]), dtype=np.int64)) == 1
    ins = ex.operands(node) if single else [ex.v(x) for x in node.inputs]
    ex.one("PRelu", ins, outs[0], name=node.name)


@_handles("ElementWiseSelect")
def _select(ex: _Exporter, node: Node, outs: list[str]) -> None:
    ex.one("Where", [ex.v(x) for x in node.inputs], outs[0], name=node.name)


@_handles("Cast")
def _cast(ex: _Exporter, node: Node, outs: list[str]) -> None:
    ex.one("Cast", [ex.v(node.inputs[0])], outs[0], name=node.name, to=_onnx_type(node.attrs["dtype"]))


@_handles("Softmax", "LogSoftmax")
def _softmax(ex: _Exporter, node: Node, outs: list[str]) -> None:
    x = ex.v(node.inputs[0])
    if node.attrs["beta"] != 1.0:
        x = ex.one("Mul", [x, ex.scalar(node.attrs["beta"], ex.dtype(node.inputs[0]))])
    ex.one(node.op_type, [x], outs[0], name=node.name, axis=int(node.attrs["axis"]))


def _normalize(ex: _Exporter, x: str, axes: Sequence[int], eps: float, dt: DType) -> str:
    """(x - mean) / sqrt(var + eps) over ``axes``, in ONNX ops."""
    mean = ex.one("ReduceMean", [x, ex.ints(axes)], keepdims=1)
    d = ex.one("Sub", [x, mean])
    var = ex.one("ReduceMean", [ex.one("Mul", [d, d]), ex.ints(axes)], keepdims=1)
    return ex.one("Div", [d, ex.one("Sqrt", [ex.one("Add", [var, ex.scalar(eps, dt)])])])


@_handles("LayerNorm")
def _layer_norm(ex: _Exporter, node: Node, outs: list[str]) -> None:
    x = node.inputs[0]
    shape, dt = ex.shape(x), ex.dtype(x)
    rank = len(shape)
    axes = sorted(a % rank for a in node.attrs["axes"])
    eps = node.attrs["epsilon"]
    norm_shape = tuple(shape[a] for a in axes)
    params = [node.inputs[i] if _present(node, i) else "" for i in (1, 2)]
    trailing = bool(axes) and axes == list(range(rank - len(axes), rank))
    if trailing and all(not p or ex.shape(p) == norm_shape for p in params):
        g = ex.v(params[0]) if params[0] else ex.init(f"{node.name}_ones", np.ones(norm_shape, dt.numpy))
        ins = [ex.v(x), g] + ([ex.v(params[1])] if params[1] else [])
        ex.one("LayerNormalization", ins, outs[0], name=node.name, axis=axes[0], epsilon=float(eps))
        return
    y = _normalize(ex, ex.v(x), axes, eps, dt)
    if params[0]:
        y = ex.one("Mul", [y, ex.v(params[0])])
    if params[1]:
        ex.one("Add", [y, ex.v(params[1])], outs[0])
    else:
        ex.one("Identity", [y], outs[0])


@_handles("RmsNorm")
def _rms_norm(ex: _Exporter, node: Node, outs: list[str]) -> None:
    x = ex.v(node.inputs[0])
    dt = ex.dtype(node.inputs[0])
    rank = len(ex.shape(node.inputs[0]))
    axes = sorted(a % rank for a in node.attrs["axes"])
    ms = ex.one("ReduceMean", [ex.one("Mul", [x, x]), ex.ints(axes)], keepdims=1)
    y = ex.one("Div", [x, ex.one("Sqrt", [ex.one("Add", [ms, ex.scalar(node.attrs["epsilon"], dt)])])])
    if _present(node, 1):
        y = ex.one("Mul", [y, ex.v(node.inputs[1])])
    if _present(node, 2):
        y = ex.one("Add", [y, ex.v(node.inputs[2])])
    ex.one("Identity", [y], outs[0], name=node.name)


@_handles("Batchnorm")
def _batchnorm(ex: _Exporter, node: Node, outs: list[str]) -> None:
    """``x * weight + bias`` per channel. As an ONNX BatchNormalization where it can be one (rank 3 or 4,
    [C] parameters), so that QNN EP forms its QDQ node unit and QNN runs its integer BatchNorm (as Mul + Add
    with no Q/DQ between, QNN ran it on floats): mean 0 and variance 0 as float initializers with
    ``epsilon = 1``, so ``sqrt(var + eps)`` is exactly 1 on ONNX Runtime's CPU and in QNN EP, which
    dequantizes the mean and variance with the encoding they lack (scale 0: 0 again)."""
    x, w, b = node.inputs[:3]
    rank, c = len(ex.shape(x)), ex.shape(x)[-1]
    if 3 <= rank <= 4 and ex.shape(w) == (c,) and ex.shape(b) == (c,):
        zeros = ex.init(f"{node.name}_zeros", np.zeros(c, ex.dtype(x).numpy))
        y = ex.one("BatchNormalization", [ex.v(x, _channel_first(rank)), ex.v(w), ex.v(b), zeros, zeros],
                   name=node.name, epsilon=1.0)
        ex.transpose(y, _channel_last(rank), outs[0])
        return
    # channel-last: per-channel params broadcast on the last axis
    ex.one("Add", [ex.one("Mul", [ex.v(x), ex.v(w)], name=node.name), ex.v(b)], outs[0])


@_handles("InstanceNorm")
def _instance_norm(ex: _Exporter, node: Node, outs: list[str]) -> None:
    x = node.inputs[0]
    rank = len(ex.shape(x))
    if rank < 3:
        raise _Unsupported("InstanceNorm needs a rank >= 3 input")
    c = ex.shape(x)[-1]
    w, b = (ex.one("Reshape", [ex.v(t), ex.ints((c,))]) for t in node.inputs[1:3])
    y = ex.one("InstanceNormalization", [ex.v(x, _channel_first(rank)), w, b], name=node.name,
               epsilon=float(node.attrs["epsilon"]))
    ex.transpose(y, _channel_last(rank), outs[0])


@_handles("GroupNorm")
def _group_norm(ex: _Exporter, node: Node, outs: list[str]) -> None:
    x = node.inputs[0]
    shape, dt = ex.shape(x), ex.dtype(x)
    rank, groups, c = len(shape), int(node.attrs["group"]), shape[-1]
    if rank < 2 or c % groups:
        raise _Unsupported(f"GroupNorm of {shape} in {groups} groups")
    cf = ex.v(x, _channel_first(rank))
    grouped = ex.one("Reshape", [cf, ex.ints((shape[0], groups, -1))], name=node.name)
    y = _normalize(ex, grouped, (2,), node.attrs["epsilon"], dt)
    y = ex.one("Reshape", [y, ex.ints(tuple(shape[p] for p in _channel_first(rank)))])
    y = ex.transpose(y, _channel_last(rank))
    g, b = (ex.one("Reshape", [ex.v(t), ex.ints((c,))]) for t in node.inputs[1:3])
    ex.one("Add", [ex.one("Mul", [y, g]), b], outs[0])


@_handles("Lrn")
def _lrn(ex: _Exporter, node: Node, outs: list[str]) -> None:
    x = node.inputs[0]
    rank = len(ex.shape(x))
    if rank != 4:
        raise _Unsupported(f"ONNX LRN on a rank-{rank} input")
    size = 2 * int(node.attrs["radius"]) + 1
    y = ex.one("LRN", [ex.v(x, _channel_first(rank))], name=node.name, size=size,
               alpha=float(node.attrs["alpha"]) * size, beta=float(node.attrs["beta"]), bias=float(node.attrs["bias"]))
    ex.transpose(y, _channel_last(rank), outs[0])


@_handles("L2Norm")
def _l2_norm(ex: _Exporter, node: Node, outs: list[str]) -> None:
    x = node.inputs[0]
    rank, dt = len(ex.shape(x)), ex.dtype(x)
    axes = sorted({a % rank for a in node.attrs["axes"]})
    xv = ex.v(x)
    ss = ex.one("ReduceSumSquare", [xv, ex.ints(axes)], name=node.name, keepdims=1)
    ss = ex.one("Max", [ss, ex.scalar(node.attrs["epsilon"], dt)])
    ex.one("Mul", [xv, ex.one("Reciprocal", [ex.one("Sqrt", [ss])])], outs[0])


@_handles("LpNorm")
def _lp_norm(ex: _Exporter, node: Node, outs: list[str]) -> None:
    ex.one("LpNormalization", [ex.v(node.inputs[0])], outs[0], name=node.name, axis=int(node.attrs["axis"]),
           p=int(node.attrs["p"]))


_REDUCE = {"ReduceMax": "ReduceMax", "ReduceMin": "ReduceMin", "ReduceMean": "ReduceMean", "ReduceSum": "ReduceSum",
           "ReduceProd": "ReduceProd", "ReduceL1": "ReduceL1", "ReduceL2": "ReduceL2",
           "ReduceLogSumExp": "ReduceLogSumExp", "ReduceSumSquare": "ReduceSumSquare"}


@_handles(*_REDUCE)
def _reduce(ex: _Exporter, node: Node, outs: list[str]) -> None:
    x = ex.v(node.inputs[0])
    axes = node.attrs["axes"]
    if not axes:  # each element reduced on its own
        if node.op_type in ("ReduceL1", "ReduceL2"):
            ex.one("Abs", [x], outs[0], name=node.name)
        elif node.op_type == "ReduceSumSquare":
            ex.one("Mul", [x, x], outs[0], name=node.name)
        else:
            ex.one("Identity", [x], outs[0], name=node.name)
        return
    ex.one(_REDUCE[node.op_type], [x, ex.ints(axes)], outs[0], name=node.name,
           keepdims=int(node.attrs["keep_dims"]))


@_handles("Argmax", "Argmin")
def _arg_reduce(ex: _Exporter, node: Node, outs: list[str]) -> None:
    a = node.attrs
    y = ex.one("ArgMax" if node.op_type == "Argmax" else "ArgMin", [ex.v(node.inputs[0])], name=node.name,
               axis=int(a["axis"]), keepdims=int(a["keep_dims"]), select_last_index=int(a["select_last_index"]))
    ex.one("Cast", [y], outs[0], to=_onnx_type(ex.dtype(node.outputs[0])))


@_handles("CumulativeSum")
def _cumsum(ex: _Exporter, node: Node, outs: list[str]) -> None:
    axis = ex.init(f"{node.name}_axis", np.asarray(node.attrs["axis"], dtype=np.int64))
    ex.one("CumSum", [ex.v(node.inputs[0]), axis], outs[0], name=node.name,
           exclusive=int(node.attrs["exclusive"]), reverse=int(node.attrs["reverse"]))


@_handles("TopK")
def _topk(ex: _Exporter, node: Node, outs: list[str]) -> None:
    a = node.attrs
    _, idx = ex.add("TopK", [ex.v(node.inputs[0]), ex.ints((a["k"],))], [outs[0], ex.fresh(f"{outs[1]}_i64")],
                         name=node.name, axis=int(a["axis"]), largest=int(a["largest"]), sorted=int(a["sorted"]))
    ex.one("Cast", [idx], outs[1], to=_onnx_type(ex.dtype(node.outputs[1])))

