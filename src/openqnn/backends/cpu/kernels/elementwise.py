"""Element-wise kernels and activations."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from openqnn.backends.cpu.kernels.registry import BuildContext, Step, kernel, simple
from openqnn.ir.dtype import DType
from openqnn.ir.graph import Node


def _int_div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.div(a, b, rounding_mode="trunc")  # C-style, as ONNX integer Div


def _pow(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if a.dtype.is_floating_point:
        return torch.pow(a, b.to(a.dtype))
    return torch.pow(a.to(torch.float64), b.to(torch.float64)).to(a.dtype)


_WIDE_UNSIGNED = (DType.UINT_16, DType.UINT_32, DType.UINT_64)


def _widened(fn: Callable[..., torch.Tensor], node: Node, ctx: BuildContext) -> Callable[..., torch.Tensor]:
    """torch has few kernels for uint16/32/64: run those in int64 and cast the result back."""
    if not any(x and ctx.dtype(x) in _WIDE_UNSIGNED for x in node.inputs):
        return fn
    out = ctx.torch_dtype(node.outputs[0])

    def run(*xs: torch.Tensor) -> torch.Tensor:
        return fn(*(x.to(torch.int64) if x.dtype in (torch.uint16, torch.uint32, torch.uint64) else x
                    for x in xs)).to(out)

    return run


BINARY: dict[str, Callable[..., torch.Tensor]] = {
    "ElementWiseAdd": torch.add,
    "ElementWiseSubtract": torch.sub,
    "ElementWiseMultiply": torch.mul,
    "ElementWiseMaximum": torch.maximum,
    "ElementWiseMinimum": torch.minimum,
    "ElementWiseEqual": torch.eq,
    "ElementWiseNotEqual": torch.ne,
    "ElementWiseGreater": torch.gt,
    "ElementWiseGreaterEqual": torch.ge,
    "ElementWiseLess": torch.lt,
    "ElementWiseLessEqual": torch.le,
    "ElementWiseAnd": torch.logical_and,
    "ElementWiseOr": torch.logical_or,
    "ElementWiseXor": torch.logical_xor,
    "ElementWisePower": _pow,
    "ElementWiseFloorDiv": lambda a, b: torch.div(a, b, rounding_mode="floor"),
    "ElementWiseMod": torch.remainder,
    "ElementWiseFmod": torch.fmod,
    "ElementWiseBitShiftLeft": torch.bitwise_left_shift,
    "ElementWiseBitShiftRight": torch.bitwise_right_shift,
}

UNARY: dict[str, Callable[..., torch.Tensor]] = {
    "ElementWiseAbs": torch.abs,
    "ElementWiseNeg": torch.neg,
    "ElementWiseExp": torch.exp,
    "ElementWiseLog": torch.log,
    "ElementWiseSquareRoot": torch.sqrt,
    "ElementWiseRsqrt": torch.rsqrt,
    "ElementWiseSin": torch.sin,
    "ElementWiseCos": torch.cos,
    "ElementWiseTan": torch.tan,
    "ElementWiseAsin": torch.asin,
    "ElementWiseAcos": torch.acos,
    "ElementWiseAtan": torch.atan,
    "ElementWiseSinh": torch.sinh,
    "ElementWiseCosh": torch.cosh,
    "ElementWiseAsinh": torch.asinh,
    "ElementWiseAcosh": torch.acosh,
    "ElementWiseAtanh": torch.atanh,
    "ElementWiseFloor": torch.floor,
    "ElementWiseCeil": torch.ceil,
    "ElementWiseRound": torch.round,  # half to even, as ONNX Round
    "ElementWiseSign": torch.sign,
    "ElementWiseNot": torch.logical_not,
    "ElementWiseReciprocal": torch.reciprocal,
    "ElementWiseErf": torch.erf,
    "ElementWiseSoftplus": F.softplus,
    "ElementWiseSoftsign": F.softsign,
    "ElementWiseIsNan": torch.isnan,
    "Relu": torch.relu,
    "Sigmoid": torch.sigmoid,
    "Tanh": torch.tanh,
    "HardSwish": F.hardswish,
    "Mish": F.mish,
}


@kernel(*BINARY, "ElementWiseDivide")
def binary(node: Node, ctx: BuildContext) -> Step:
    if node.op_type == "ElementWiseDivide":
        fn = torch.div if ctx.dtype(node.inputs[0]).is_float else _int_div
    else:
        fn = BINARY[node.op_type]
    return simple(_widened(fn, node, ctx), node)


@kernel(*UNARY)
def unary(node: Node, ctx: BuildContext) -> Step:
    return simple(_widened(UNARY[node.op_type], node, ctx), node)


@kernel("Gelu")
def gelu(node: Node, ctx: BuildContext) -> Step:
    approx = node.attrs["approximate"]
    return simple(lambda x: F.gelu(x, approximate=approx), node)


@kernel("ReluMinMax")
def relu_min_max(node: Node, ctx: BuildContext) -> Step:
    lo, hi = node.attrs["min_value"], node.attrs["max_value"]
    if lo == 0.0 and hi == 6.0:
        return simple(F.relu6, node)
    return simple(lambda x: torch.clamp(x, lo, hi), node)


@kernel("Elu")
def elu(node: Node, ctx: BuildContext) -> Step:
    alpha = node.attrs["alpha"]
    return simple(lambda x: F.elu(x, alpha), node)


@kernel("Celu")
def celu(node: Node, ctx: BuildContext) -> Step:
    alpha = node.attrs["alpha"]
    return simple(lambda x: F.celu(x, alpha), node)


@kernel("Selu")
def selu(node: Node, ctx: BuildContext) -> Step:
    alpha, gamma = node.attrs["alpha"], node.attrs["gamma"]
    return simple(lambda x: gamma * torch.where(x > 0, x, alpha * torch.expm1(x)), node)


@kernel("HardSigmoid")
def hard_sigmoid(node: Node, ctx: BuildContext) -> Step:
    alpha, beta = node.attrs["alpha"], node.attrs["beta"]
    return simple(lambda x: torch.clamp(alpha * x + beta, 0.0, 1.0), node)


@kernel("Prelu")
def prelu(node: Node, ctx: BuildContext) -> Step:
    return simple(lambda x, a: torch.where(x >= 0, x, x * a), node)


@kernel("ElementWiseSelect")
def select(node: Node, ctx: BuildContext) -> Step:
    return simple(_widened(torch.where, node, ctx), node)


@kernel("ElementWiseIsInf")
def is_inf(node: Node, ctx: BuildContext) -> Step:
    neg, pos = node.attrs["detect_negative"], node.attrs["detect_positive"]

    def run(x: torch.Tensor) -> torch.Tensor:
        if neg and pos:
            return torch.isinf(x)
        if pos:
            return torch.isposinf(x)
        if neg:
            return torch.isneginf(x)
        return torch.zeros_like(x, dtype=torch.bool)

    return simple(run, node)


@kernel("Cast")
def cast(node: Node, ctx: BuildContext) -> Step:
    to = ctx.torch_dtype(node.outputs[0])
    src_float = ctx.dtype(node.inputs[0]).is_float

    def run(x: torch.Tensor) -> torch.Tensor:
        if src_float and not to.is_floating_point and to != torch.bool:
            return torch.trunc(x).to(to)
        return x.to(to)

    return simple(run, node)


