"""TFLite op translations: TFLite builtin (or custom) op -> IR nodes.

Each translation reads its op through :class:`~openqnn.frontends.tflite.context.TflContext` and emits
QNN ops. A fused activation (``fused_activation_function``) becomes its own node after the op, both
carrying the op's output encoding: TFLite clamps to the activation's range inside the op, the htp
backend clamps in the activation node, on the same integers.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from openqnn.errors import UnsupportedOpError
from openqnn.frontends.tflite.context import TflContext

Translation = Callable[[TflContext], None]
TRANSLATIONS: dict[str, Translation] = {}
# custom ops seen in published models that openqnn refuses, with what to do instead
REFUSED_CUSTOM = {
    "MaxPoolingWithArgmax2D": "MediaPipe's max pooling with argmax indices has no QNN op; re-export the model with "
                              "MAX_POOL_2D (and no unpooling), or cut it off with --out_node before it",
    "MaxUnpooling2D": "MediaPipe's max unpooling (scatter by argmax indices) has no QNN op; re-export the model "
                      "with RESIZE_NEAREST_NEIGHBOR or TRANSPOSE_CONV in its place",
    "TFLite_Detection_PostProcess": "SSD box decoding and NMS are not a QNN graph op; cut the model before it with "
                                    "--out_node and run the post-processing on the host",
}


def tflite_op(*names: str) -> Callable[[Translation], Translation]:
    """Register the decorated function as the translation of TFLite ops ``names`` (custom ops by their code)."""

    def register(fn: Translation) -> Translation:
        for n in names:
            if n in TRANSLATIONS:
                raise RuntimeError(f"TFLite op {n} has two translations")
            TRANSLATIONS[n] = fn
        return fn

    return register


# -- helpers --------------------------------------------------------------------------------------

_ACTIVATIONS: dict[int, tuple[str, dict[str, Any]]] = {
    1: ("Relu", {}), 2: ("ReluMinMax", {"min_value": -1.0, "max_value": 1.0}),
    3: ("ReluMinMax", {"min_value": 0.0, "max_value": 6.0}), 4: ("Tanh", {}),
}


def emit_fused(ctx: TflContext, op_type: str, inputs: Sequence[str], attrs: dict[str, Any] | None = None,
               activation: int | None = None) -> None:
    """``op_type`` then its fused activation (the op's ``FusedActivationFunction``), output 0 bound."""
    act = ctx.opt("FusedActivationFunction", 0) if activation is None else activation
    if act == 0:
        ctx.emit(op_type, inputs, attrs)
        return
    if act not in _ACTIVATIONS:
        raise ctx.fail(f"fused activation {act} (SIGN_BIT) is not supported")
    mid = ctx.emit(op_type, inputs, attrs, out=None)
    kind, a = _ACTIVATIONS[act]
    ctx.emit(kind, mid, a)


def same_padding(size: int, k: int, stride: int, dilation: int, out: int) -> tuple[int, int]:
    """TFLite's SAME padding (ComputePaddingWithOffset): the odd pixel goes after."""
    total = max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def spatial_pads(ctx: TflContext, x_shape: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
                 dilation: Sequence[int], padding: int) -> tuple[tuple[int, int], ...]:
    """pad_amount of a 2-D window op: SAME (0) as TFLite computes it, VALID (1) none."""
    if padding == 1:
        return ((0, 0), (0, 0))
    if padding != 0:
        raise ctx.fail(f"padding {padding} is neither SAME nor VALID")
    pads = []
    for i in range(2):
        out = -(-x_shape[1 + i] // stride[i])
        pads.append(same_padding(x_shape[1 + i], kernel[i], stride[i], dilation[i], out))
    return tuple(pads)


def _stride(ctx: TflContext) -> tuple[int, int]:
    return int(ctx.opt("StrideH", 1)), int(ctx.opt("StrideW", 1))


def _conv_window(ctx: TflContext) -> dict[str, Any]:
    """A convolution's stride, dilation and pad_amount (its weight is input 1, ``[_, kh, kw, _]``)."""
    _, kh, kw, _ = ctx.t(1).shape
    stride = _stride(ctx)
    dil = int(ctx.opt("DilationHFactor", 1) or 1), int(ctx.opt("DilationWFactor", 1) or 1)
    pads = spatial_pads(ctx, ctx.t(0).shape, (kh, kw), stride, dil, int(ctx.opt("Padding", 0)))
    return {"stride": stride, "dilation": dil, "pad_amount": pads}


# -- convolutions and dense -----------------------------------------------------------------------

@tflite_op("CONV_2D")
def _conv2d(ctx: TflContext) -> None:
    window = _conv_window(ctx)
    weight = ctx.static(1, lambda a: a.transpose(1, 2, 3, 0), axis=(3, 0, 1, 2))  # [cout,kh,kw,cin] -> [kh,kw,cin,cout]
    ins = [ctx.x(0), weight] + ([ctx.static(2)] if ctx.has(2) else [])
    emit_fused(ctx, "Conv2d", ins, {**window, "group": ctx.t(0).shape[3] // ctx.t(1).shape[3]})


@tflite_op("DEPTHWISE_CONV_2D")
def _depthwise(ctx: TflContext) -> None:
    window = _conv_window(ctx)
    weight = ctx.static(1, lambda a: a.transpose(1, 2, 0, 3), axis=(2, 0, 1, 3))  # [1,kh,kw,c] -> [kh,kw,1,c]
    ins = [ctx.x(0), weight] + ([ctx.static(2)] if ctx.has(2) else [])
    emit_fused(ctx, "DepthWiseConv2d", ins, window)


def _transpose_conv(ctx: TflContext, x_i: int, w_i: int, b_i: int | None, stride: tuple[int, int], padding: int,
                    activation: int = 0) -> None:
    x, w, y = ctx.t(x_i), ctx.t(w_i), ctx.out(0)
    _, kh, kw, _ = w.shape
    pads, extra = [], []
    for i, k in enumerate((kh, kw)):
        if padding == 0:  # SAME: TFLite pads for an output of the given size
            total = (x.shape[1 + i] - 1) * stride[i] + k - y.shape[1 + i]
        elif padding == 1:
            total = min((x.shape[1 + i] - 1) * stride[i] + k - y.shape[1 + i], 0)
        else:
            raise ctx.fail(f"padding {padding} is neither SAME nor VALID")
        before = max(total, 0) // 2
        pads.append((before, max(total, 0) - before))
        extra.append(max(-total, 0))
    weight = ctx.static(w_i, lambda a: a.transpose(1, 2, 3, 0), axis=(3, 0, 1, 2))
    ins = [ctx.x(x_i), weight] + ([ctx.static(b_i)] if b_i is not None and ctx.has(b_i) else [])
    emit_fused(ctx, "TransposeConv2d", ins, {"stride": stride, "pad_amount": tuple(pads),
                                             "output_padding": tuple(extra)}, activation)


@tflite_op("TRANSPOSE_CONV")
def _tconv(ctx: TflContext) -> None:
    # inputs: output_shape, weights [cout, kh, kw, cin], input, bias (optional)
    _transpose_conv(ctx, 2, 1, 3, _stride(ctx), int(ctx.opt("Padding", 0)), int(ctx.opt("FusedActivationFunction", 0)))


@tflite_op("Convolution2DTransposeBias")
def _mediapipe_tconv(ctx: TflContext) -> None:
    # MediaPipe's custom op: input, weights [cout, kh, kw, cin], bias; options are TfLiteTransposeConvParams
    # {TfLitePadding padding (1 SAME, 2 VALID), int stride_width, int stride_height} as raw bytes
    raw = ctx.cur.custom_options
    if len(raw) < 12:
        raise ctx.fail(f"its custom options hold {len(raw)} bytes; TfLiteTransposeConvParams needs 12")
    padding, sw, sh = struct.unpack_from("<iii", raw)
    _transpose_conv(ctx, 0, 1, 2, (sh, sw), {1: 0, 2: 1}.get(padding, -1))


@tflite_op("FULLY_CONNECTED")
def _fully_connected(ctx: TflContext) -> None:
    x, w = ctx.t(0), ctx.t(1)
    if int(ctx.opt("WeightsFormat", 0)) != 0:
        raise ctx.fail("shuffled weights (WeightsFormat SHUFFLED4x16INT8) are not supported")
    xin = ctx.x(0)
    if x.shape and x.shape[-1] != w.shape[1]:  # TFLite flattens the input to [-1, k]
        flat = ctx.emit("Reshape", [xin], {"shape": (int(np.prod(x.shape)) // w.shape[1], w.shape[1])}, out=None)[0]
        ctx.graph.tensors[flat].encoding = ctx.graph.tensors[xin].encoding  # data movement: the input's encoding
        xin = flat
    keep = bool(ctx.opt("KeepNumDims", False))
    ins = [xin, ctx.static(1, axis=(0, 1))] + ([ctx.static(2)] if ctx.has(2) else [])
    y = ctx.out(0)
    if not keep and len(y.shape) != 2:
        mid = ctx.emit("FullyConnected", ins, {"keep_dims": False}, out=None)
        emit_fused(ctx, "Reshape", mid, {"shape": y.shape}, int(ctx.opt("FusedActivationFunction", 0)))
        return
    emit_fused(ctx, "FullyConnected", ins, {"keep_dims": keep})


@tflite_op("BATCH_MATMUL")
def _batch_matmul(ctx: TflContext) -> None:
    emit_fused(ctx, "MatMul", [ctx.x(0), ctx.x(1)], {"transpose_in0": bool(ctx.opt("AdjX", False)),
                                                      "transpose_in1": bool(ctx.opt("AdjY", False))}, 0)


# -- pooling and reductions -----------------------------------------------------------------------

@tflite_op("MAX_POOL_2D", "AVERAGE_POOL_2D")
def _pool(ctx: TflContext) -> None:
    x = ctx.t(0)
    k = (int(ctx.opt("FilterHeight")), int(ctx.opt("FilterWidth")))
    stride = _stride(ctx)
    pads = spatial_pads(ctx, x.shape, k, stride, (1, 1), int(ctx.opt("Padding", 0)))
    attrs: dict[str, Any] = {"filter_size": k, "stride": stride, "pad_amount": pads}
    if ctx.cur.name == "AVERAGE_POOL_2D":
        attrs["count_pad_for_edges"] = False  # TFLite averages over the taps inside the input
    emit_fused(ctx, "PoolMax2d" if ctx.cur.name == "MAX_POOL_2D" else "PoolAvg2d", [ctx.x(0)], attrs)


_REDUCE = {"MEAN": "ReduceMean", "SUM": "ReduceSum", "REDUCE_MAX": "ReduceMax", "REDUCE_MIN": "ReduceMin",
           "REDUCE_PROD": "ReduceProd"}


@tflite_op(*_REDUCE)
def _reduce(ctx: TflContext) -> None:
    rank = len(ctx.t(0).shape)
    axes = tuple(sorted({int(a) % rank for a in np.asarray(ctx.const(1, "axes")).reshape(-1)}))
    ctx.emit(_REDUCE[ctx.cur.name], [ctx.x(0)], {"axes": axes, "keep_dims": bool(ctx.opt("KeepDims", False))})


# -- element-wise ---------------------------------------------------------------------------------

_BINARY = {"ADD": "ElementWiseAdd", "SUB": "ElementWiseSubtract", "MUL": "ElementWiseMultiply",
           "DIV": "ElementWiseDivide", "MAXIMUM": "ElementWiseMaximum", "MINIMUM": "ElementWiseMinimum",
           "SQUARED_DIFFERENCE": "", "POW": "ElementWisePower", "FLOOR_DIV": "ElementWiseFloorDiv",
           "LESS": "ElementWiseLess", "GREATER": "ElementWiseGreater", "EQUAL": "ElementWiseEqual",
           "NOT_EQUAL": "ElementWiseNotEqual", "LESS_EQUAL": "ElementWiseLessEqual",
           "GREATER_EQUAL": "ElementWiseGreaterEqual"}
_BINARY.pop("SQUARED_DIFFERENCE")


@tflite_op(*_BINARY)
def _binary(ctx: TflContext) -> None:
    emit_fused(ctx, _BINARY[ctx.cur.name], [ctx.x(0), ctx.x(1)])


@tflite_op("SQUARED_DIFFERENCE", "SQUARE")
def _square(ctx: TflContext) -> None:
    """``(a - b)^2`` / ``a^2`` as a product (TensorFlow's layer norm and variance lower to them); float only: a
    quantized one would need TFLite's own rescaling of the difference."""
    if ctx.t(0).quant is not None:
        raise ctx.fail(f"quantized {ctx.cur.name} is not supported (float models only)")
    d = ctx.x(0) if ctx.cur.name == "SQUARE" else ctx.emit("ElementWiseSubtract", [ctx.x(0), ctx.x(1)], out=None)[0]
    ctx.emit("ElementWiseMultiply", [d, d])


_UNARY = {"LOGISTIC": "Sigmoid", "TANH": "Tanh", "RELU": "Relu", "HARD_SWISH": "HardSwish", "EXP": "ElementWiseExp",
          "ABS": "ElementWiseAbs", "NEG": "ElementWiseNeg", "SQRT": "ElementWiseSquareRoot", "RSQRT": "ElementWiseRsqrt",
          "LOG": "ElementWiseLog", "SIN": "ElementWiseSin", "COS": "ElementWiseCos", "FLOOR": "ElementWiseFloor",
          "CEIL": "ElementWiseCeil", "ROUND": "ElementWiseRound", "ELU": "Elu"}


@tflite_op(*_UNARY)
def _unary(ctx: TflContext) -> None:
    ctx.emit(_UNARY[ctx.cur.name], [ctx.x(0)])


@tflite_op("RELU6", "RELU_N1_TO_1", "RELU_0_TO_1")
def _relu_n(ctx: TflContext) -> None:
    lo, hi = {"RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0), "RELU_0_TO_1": (0.0, 1.0)}[ctx.cur.name]
    ctx.emit("ReluMinMax", [ctx.x(0)], {"min_value": lo, "max_value": hi})


@tflite_op("LEAKY_RELU")
def _leaky_relu(ctx: TflContext) -> None:
    alpha = ctx.graph.add_constant(f"{ctx.out(0).name}_alpha", np.asarray([ctx.opt("Alpha", 0.2)], np.float32))
    ctx.emit("Prelu", [ctx.x(0), alpha.name])  # a one-element coeff is TFLite's LeakyRelu on htp


@tflite_op("PRELU")
def _prelu(ctx: TflContext) -> None:
    ctx.emit("Prelu", [ctx.x(0), ctx.x(1)])


@tflite_op("GELU")
def _gelu(ctx: TflContext) -> None:
    ctx.emit("Gelu", [ctx.x(0)], {"approximate": "tanh" if ctx.opt("Approximate", False) else "none"})


@tflite_op("SOFTMAX", "LOG_SOFTMAX")
def _softmax(ctx: TflContext) -> None:
    beta = float(ctx.opt("Beta", 1.0)) if ctx.cur.name == "SOFTMAX" else 1.0
    ctx.emit("Softmax" if ctx.cur.name == "SOFTMAX" else "LogSoftmax", [ctx.x(0)], {"axis": -1, "beta": beta})


@tflite_op("L2_NORMALIZATION")
def _l2norm(ctx: TflContext) -> None:
    emit_fused(ctx, "L2Norm", [ctx.x(0)], {"axes": (-1,), "epsilon": 1e-6})


# -- quantization ---------------------------------------------------------------------------------

@tflite_op("QUANTIZE")
def _quantize(ctx: TflContext) -> None:
    src = ctx.t(0)
    if ctx.is_const(0):
        ctx.fold(0, ctx.real(0))
        return
    if src.quant is None:
        # float -> integer: the IR tensor is float already; its encoding says how it is quantized (at a
        # graph input: how htp quantizes the input). The float producer takes the encoding.
        name = ctx.x(0)
        t = ctx.graph.tensors[name]
        if t.encoding is None and name in ctx.graph.inputs:
            from openqnn.frontends.tflite.context import encoding_of

            t.encoding = encoding_of(ctx.out(0), None, ctx.where())
            ctx.bind(0, name)
            return
    # integer -> integer: TFLite's Requantize; a Reshape whose output encoding differs requantizes the same way
    ctx.emit("Reshape", [ctx.x(0)], {"shape": ctx.out(0).shape})


@tflite_op("DEQUANTIZE")
def _dequantize(ctx: TflContext) -> None:
    if ctx.is_const(0):  # float16 / int8 weights: folded into float32 constants
        ctx.fold(0, ctx.real(0))
        return
    ctx.bind(0, ctx.x(0))  # integer -> float: the IR tensor is the same value, its encoding reads it


@tflite_op("CAST")
def _cast(ctx: TflContext) -> None:
    from openqnn.frontends.tflite.context import ir_dtype

    if ctx.is_const(0):
        ctx.fold(0, ctx.const(0).astype(ctx.out(0).numpy_dtype))
        return
    ctx.emit("Cast", [ctx.x(0)], {"dtype": ir_dtype(ctx.out(0))})


# -- shape and data movement ----------------------------------------------------------------------

@tflite_op("RESHAPE", "SQUEEZE", "EXPAND_DIMS")
def _reshape(ctx: TflContext) -> None:
    shape = ctx.out(0).shape
    if ctx.is_const(0):
        ctx.fold(0, ctx.real(0).reshape(shape))
        return
    ctx.emit("Reshape", [ctx.x(0)], {"shape": shape})


@tflite_op("TRANSPOSE")
def _transpose(ctx: TflContext) -> None:
    perm = tuple(int(p) for p in ctx.const(1, "perm"))
    ctx.emit("Transpose", [ctx.x(0)], {"perm": perm})


@tflite_op("CONCATENATION")
def _concat(ctx: TflContext) -> None:
    rank = len(ctx.out(0).shape)
    emit_fused(ctx, "Concat", [ctx.x(i) for i in range(len(ctx.cur.inputs))], {"axis": int(ctx.opt("Axis")) % rank})


@tflite_op("PAD", "PADV2", "MIRROR_PAD")
def _pad(ctx: TflContext) -> None:
    pads = tuple((int(a), int(b)) for a, b in np.asarray(ctx.const(1, "paddings")).reshape(-1, 2))
    attrs: dict[str, Any] = {"pad_amount": pads}
    if ctx.cur.name == "PADV2" and ctx.has(2):
        attrs["pad_constant_value"] = float(np.asarray(ctx.real(2)).reshape(-1)[0])
    if ctx.cur.name == "MIRROR_PAD":
        from openqnn.ops.shape import PAD_MIRROR_REFLECT, PAD_MIRROR_SYMMETRIC

        attrs["scheme"] = PAD_MIRROR_REFLECT if int(ctx.opt("Mode", 0)) == 0 else PAD_MIRROR_SYMMETRIC
    ctx.emit("Pad", [ctx.x(0)], attrs)


@tflite_op("STRIDED_SLICE", "SLICE")
def _slice(ctx: TflContext) -> None:
    shape = ctx.t(0).shape
    begin = [int(v) for v in ctx.const(1, "begin")]
    if ctx.cur.name == "SLICE":
        size = [int(v) for v in ctx.const(2, "size")]
        ranges = tuple((b, shape[i] if s < 0 else b + s, 1) for i, (b, s) in enumerate(zip(begin, size)))
    else:
        if ctx.opt("EllipsisMask", 0) or ctx.opt("NewAxisMask", 0):
            raise ctx.fail("ellipsis_mask and new_axis_mask are not supported")
        end = [int(v) for v in ctx.const(2, "end")]
        strides = [int(v) for v in ctx.const(3, "strides")]
        bm, em, sm = int(ctx.opt("BeginMask", 0)), int(ctx.opt("EndMask", 0)), int(ctx.opt("ShrinkAxisMask", 0))
        rows = []
        for i, d in enumerate(shape):
            s = strides[i]
            start, stop, _ = slice(None if bm >> i & 1 else begin[i],
                                   None if em >> i & 1 else end[i], s).indices(d)
            if sm >> i & 1:
                start = begin[i] % d
                stop, s = start + 1, 1
            rows.append((start, stop, s))
        ranges = tuple(rows)
    y = ctx.out(0)
    if ctx.is_const(0):
        data = ctx.real(0)[tuple(slice(a, b if b >= 0 else None, s) for a, b, s in ranges)]
        ctx.fold(0, data.reshape(y.shape))
        return
    sliced = ctx.emit("StridedSlice", [ctx.x(0)], {"ranges": ranges}, out=None)
    if ctx.graph.tensors[sliced[0]].shape != tuple(y.shape):
        ctx.emit("Reshape", sliced, {"shape": y.shape})
    else:
        ctx.bind(0, sliced[0])


@tflite_op("SPLIT", "SPLIT_V")
def _split(ctx: TflContext) -> None:
    if ctx.cur.name == "SPLIT":
        x_i, axis = 1, int(np.asarray(ctx.const(0, "axis")).reshape(-1)[0])
    else:
        x_i, axis = 0, int(np.asarray(ctx.const(2, "axis")).reshape(-1)[0])
    rank = len(ctx.t(x_i).shape)
    axis %= rank
    sizes = [ctx.out(i).shape[axis] for i in range(len(ctx.cur.outputs))]
    index = tuple(int(v) for v in np.cumsum(sizes)[:-1])
    names = [ctx.graph.unique_name(ctx.out(i).name) for i in range(len(sizes))]
    from openqnn.ops.build import emit

    made = emit(ctx.graph, "Split", [ctx.x(x_i)], {"axis": axis, "split_index": index}, name=ctx.out(0).name,
                outputs=names)
    from openqnn.frontends.tflite.context import encoding_of

    for i, m in enumerate(made):
        ctx.graph.tensors[m].encoding = encoding_of(ctx.out(i), None, ctx.where())
        ctx.bind(i, m)


@tflite_op("GATHER")
def _gather(ctx: TflContext) -> None:
    rank = len(ctx.t(0).shape)
    ctx.emit("Gather", [ctx.x(0), ctx.x(1)], {"axis": int(ctx.opt("Axis", 0)) % rank})


@tflite_op("DEPTH_TO_SPACE", "SPACE_TO_DEPTH")
def _depth_space(ctx: TflContext) -> None:
    b = int(ctx.opt("BlockSize"))
    op = "DepthToSpace" if ctx.cur.name == "DEPTH_TO_SPACE" else "SpaceToDepth"
    ctx.emit(op, [ctx.x(0)], {"block_size": (b, b)})  # TFLite's order is DCR, the IR's default


@tflite_op("RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR")
def _resize(ctx: TflContext) -> None:
    align, half = bool(ctx.opt("AlignCorners", False)), bool(ctx.opt("HalfPixelCenters", False))
    nearest = ctx.cur.name == "RESIZE_NEAREST_NEIGHBOR"
    if align:
        mode = "align_corners"
    elif half:
        mode = "tf_half_pixel_for_nn" if nearest else "half_pixel"
    else:
        mode = "asymmetric"
    attrs: dict[str, Any] = {"output_shape": ctx.out(0).shape, "interpolation_mode": "nearest" if nearest else "linear",
                             "transformation_mode": mode}
    if nearest:  # TFLite rounds half away from zero with align_corners, otherwise floors
        attrs["nearest_mode"] = "round_prefer_ceil" if align else "floor"
    ctx.emit("Resize", [ctx.x(0)], attrs)


def refuse_custom(ctx: TflContext, supported: Sequence[str]) -> UnsupportedOpError:
    code = ctx.cur.custom_code
    hint = REFUSED_CUSTOM.get(code, "convert it to builtin ops before export, or cut it off with --out_node")
    return UnsupportedOpError(f"{ctx.where()}: custom op {code} is not supported ({hint}); supported ops: "
                              + ", ".join(supported))


@tflite_op("TILE")
def _tile(ctx: TflContext) -> None:
    multiples = tuple(int(v) for v in np.asarray(ctx.const(1, "multiples")).reshape(-1))
    if ctx.is_const(0):
        ctx.fold(0, np.tile(ctx.real(0), multiples))
        return
    ctx.emit("Tile", [ctx.x(0)], {"multiples": multiples})
