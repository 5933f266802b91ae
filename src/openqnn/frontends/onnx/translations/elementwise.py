"""Element-wise ONNX ops: arithmetic, comparison, logic, unary math and activations."""

from __future__ import annotations

import numpy as np

from openqnn.frontends.onnx.context import ConversionContext
from openqnn.frontends.onnx.registry import onnx_op
from openqnn.frontends.onnx.translations.common import elementwise

BINARY = {
    "Add": "ElementWiseAdd",
    "Sub": "ElementWiseSubtract",
    "Mul": "ElementWiseMultiply",
    "Div": "ElementWiseDivide",
    "Pow": "ElementWisePower",
    "Equal": "ElementWiseEqual",
    "Greater": "ElementWiseGreater",
    "GreaterOrEqual": "ElementWiseGreaterEqual",
    "Less": "ElementWiseLess",
    "LessOrEqual": "ElementWiseLessEqual",
    "And": "ElementWiseAnd",
    "Or": "ElementWiseOr",
    "Xor": "ElementWiseXor",
}
UNARY = {
    "Abs": "ElementWiseAbs",
    "Neg": "ElementWiseNeg",
    "Exp": "ElementWiseExp",
    "Log": "ElementWiseLog",
    "Sqrt": "ElementWiseSquareRoot",
    "Sin": "ElementWiseSin",
    "Cos": "ElementWiseCos",
    "Tan": "ElementWiseTan",
    "Asin": "ElementWiseAsin",
    "Acos": "ElementWiseAcos",
    "Atan": "ElementWiseAtan",
    "Sinh": "ElementWiseSinh",
    "Cosh": "ElementWiseCosh",
    "Asinh": "ElementWiseAsinh",
    "Acosh": "ElementWiseAcosh",
    "Atanh": "ElementWiseAtanh",
    "Floor": "ElementWiseFloor",
    "Ceil": "ElementWiseCeil",
    "Round": "ElementWiseRound",
    "Sign": "ElementWiseSign",
    "Not": "ElementWiseNot",
    "Reciprocal": "ElementWiseReciprocal",
    "Erf": "ElementWiseErf",
    "Softplus": "ElementWiseSoftplus",
    "Softsign": "ElementWiseSoftsign",
    "Relu": "Relu",
    "Sigmoid": "Sigmoid",
    "Tanh": "Tanh",
    "HardSwish": "HardSwish",
    "Mish": "Mish",
    "IsNaN": "ElementWiseIsNan",
}


def _binary(ir_op: str):
    def translate(ctx: ConversionContext) -> None:
        elementwise(ctx, ir_op)

    return translate


def _unary(ir_op: str):
    def translate(ctx: ConversionContext) -> None:
        elementwise(ctx, ir_op, (0,))

    return translate


for _onnx, _ir in BINARY.items():
    onnx_op(_onnx)(_binary(_ir))
for _onnx, _ir in UNARY.items():
    onnx_op(_onnx)(_unary(_ir))


@onnx_op("Max", "Min", "Sum", "Mean")
def variadic(ctx: ConversionContext) -> None:
    """n-ary Max/Min/Sum/Mean as a chain of binary ops (Mean: Sum then divide by n)."""
    op_type = {"Max": "ElementWiseMaximum", "Min": "ElementWiseMinimum", "Sum": "ElementWiseAdd",
               "Mean": "ElementWiseAdd"}[ctx.node.op_type]
    from openqnn.frontends.onnx.translations.common import operand, shared_layout

    n = len(ctx.node.input)
    values = [ctx.input(i) for i in range(n)]
    out_rank = max(v.rank for v in values)
    perm = shared_layout(values, out_rank)
    acc = operand(ctx, values[0], perm, out_rank)
    for v in values[1:]:
        acc = ctx.emit(op_type, [acc, operand(ctx, v, perm, out_rank)])[0]
    if ctx.node.op_type == "Mean" and n > 1:
        count = ctx.add_static("mean_count", np.array(n, dtype=values[0].dtype.numpy))
        acc = ctx.emit("ElementWiseDivide", [acc, count])[0]
    elif n == 1:
        acc = ctx.emit("Reshape", [acc], {"shape": ctx.graph.tensors[acc].shape})[0]
    ctx.bind(0, acc, perm)


@onnx_op("Gelu")
def gelu(ctx: ConversionContext) -> None:
    elementwise(ctx, "Gelu", (0,), {"approximate": ctx.attr("approximate", "none")})


@onnx_op("Clip")
def clip(ctx: ConversionContext) -> None:
    """Clip -> ReluMinMax (bounds from attributes before opset 11, from constant inputs after)."""
    dt = ctx.input(0).dtype
    if ctx.opset < 11:
        lo, hi = ctx.attr("min", None), ctx.attr("max", None)
    else:
        lo = ctx.const(1, "min").item() if ctx.has(1) else None
        hi = ctx.const(2, "max").item() if ctx.has(2) else None
    if dt.is_float:
        finfo = np.finfo(dt.numpy)
        lo = float(finfo.min) if lo is None else float(lo)
        hi = float(finfo.max) if hi is None else float(hi)
        elementwise(ctx, "ReluMinMax", (0,), {"min_value": lo, "max_value": hi})
        return
    # integer clip: max then min against typed constants
    v = ctx.input(0)
    x = ctx.tensor(v, v.perm)
    if lo is not None:
        x = ctx.emit("ElementWiseMaximum", [x, ctx.add_static("clip_min", np.array(lo, dtype=dt.numpy))])[0]
    if hi is not None:
        x = ctx.emit("ElementWiseMinimum", [x, ctx.add_static("clip_max", np.array(hi, dtype=dt.numpy))])[0]
    if lo is None and hi is None:
        x = ctx.emit("Reshape", [x], {"shape": ctx.graph.tensors[x].shape})[0]
    ctx.bind(0, x, v.perm)


@onnx_op("LeakyRelu")
def leaky_relu(ctx: ConversionContext) -> None:
    v = ctx.input(0)
    alpha = ctx.add_static("leaky_alpha", np.array(ctx.attr("alpha", 0.01), dtype=v.dtype.numpy))
    out = ctx.emit("Prelu", [ctx.tensor(v, v.perm), alpha])[0]
    ctx.bind(0, out, v.perm)


@onnx_op("PRelu")
def prelu(ctx: ConversionContext) -> None:
    elementwise(ctx, "Prelu")


@onnx_op("Elu", "Celu")
def elu(ctx: ConversionContext) -> None:
    op_type = "Elu" if ctx.node.op_type == "Elu" else "Celu"
    elementwise(ctx, op_type, (0,), {"alpha": float(ctx.attr("alpha", 1.0))})


@onnx_op("Selu")
def selu(ctx: ConversionContext) -> None:
    attrs = {}
    if ctx.attr("alpha") is not None:
        attrs["alpha"] = float(ctx.attr("alpha"))
    if ctx.attr("gamma") is not None:
        attrs["gamma"] = float(ctx.attr("gamma"))
    elementwise(ctx, "Selu", (0,), attrs)


@onnx_op("HardSigmoid")
def hard_sigmoid(ctx: ConversionContext) -> None:
    elementwise(ctx, "HardSigmoid", (0,), {"alpha": float(ctx.attr("alpha", 0.2)), "beta": float(ctx.attr("beta", 0.5))})


@onnx_op("Where")
def where(ctx: ConversionContext) -> None:
    elementwise(ctx, "ElementWiseSelect", (0, 1, 2))


@onnx_op("IsInf")
def is_inf(ctx: ConversionContext) -> None:
    attrs = {"detect_negative": bool(ctx.attr("detect_negative", 1)), "detect_positive": bool(ctx.attr("detect_positive", 1))}
    elementwise(ctx, "ElementWiseIsInf", (0,), attrs)
