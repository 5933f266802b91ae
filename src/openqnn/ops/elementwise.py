"""Element-wise ops and activations: binary (broadcasting), comparison, unary, select.

Binary ops broadcast numpy-style. Ops QNN lacks but ONNX models use (Tan, Sinh, IsNaN, ...) live
in openqnn's own package (``package="openqnn"``) so the cpu backend covers them; other backends
report them as unsupported and the partitioner falls back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from openqnn.errors import InvalidModelError
from openqnn.ir.dtype import DType
from openqnn.ops.schema import Attr, TType, broadcast_shapes, op

ARITHMETIC = (
    "ElementWiseAdd",
    "ElementWiseSubtract",
    "ElementWiseMultiply",
    "ElementWiseDivide",
    "ElementWisePower",
    "ElementWiseMaximum",
    "ElementWiseMinimum",
    "ElementWiseFloorDiv",
    "ElementWiseMod",
    "ElementWiseFmod",
    "ElementWiseAnd",
    "ElementWiseOr",
    "ElementWiseXor",
    "ElementWiseBitShiftLeft",
    "ElementWiseBitShiftRight",
)
COMPARISON = (
    "ElementWiseEqual",
    "ElementWiseNotEqual",
    "ElementWiseGreater",
    "ElementWiseGreaterEqual",
    "ElementWiseLess",
    "ElementWiseLessEqual",
)
UNARY = (
    "ElementWiseAbs",
    "ElementWiseNeg",
    "ElementWiseExp",
    "ElementWiseLog",
    "ElementWiseSquareRoot",
    "ElementWiseRsqrt",
    "ElementWiseSin",
    "ElementWiseCos",
    "ElementWiseTan",
    "ElementWiseAsin",
    "ElementWiseAcos",
    "ElementWiseAtan",
    "ElementWiseSinh",
    "ElementWiseCosh",
    "ElementWiseAsinh",
    "ElementWiseAcosh",
    "ElementWiseAtanh",
    "ElementWiseFloor",
    "ElementWiseCeil",
    "ElementWiseRound",
    "ElementWiseSign",
    "ElementWiseNot",
    "ElementWiseReciprocal",
    "ElementWiseErf",
    "ElementWiseSoftplus",
    "ElementWiseSoftsign",
    "Relu",
    "Sigmoid",
    "Tanh",
    "Gelu",
    "HardSwish",
    "Mish",
)
# To the bool type: IsNaN, IsInf (with detect flags).
PREDICATES = ("ElementWiseIsNan", "ElementWiseIsInf")

# Ops of openqnn's own package: QNN has no op of this meaning.
OPENQNN_PACKAGE = frozenset(
    {
        "ElementWiseTan", "ElementWiseAcos", "ElementWiseSinh", "ElementWiseCosh", "ElementWiseAsinh",
        "ElementWiseAcosh", "ElementWiseAtanh", "ElementWiseReciprocal", "ElementWiseSoftsign", "Mish",
        "ElementWiseIsNan", "ElementWiseIsInf", "ElementWiseBitShiftLeft", "ElementWiseBitShiftRight",
    }
)


def _binary(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    a, b = ins
    return [TType(broadcast_shapes(a.shape, b.shape), a.dtype)]


def _compare(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    a, b = ins
    return [TType(broadcast_shapes(a.shape, b.shape), DType.BOOL_8)]


def _unary(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    return [ins[0]]


def _predicate(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    return [TType(ins[0].shape, DType.BOOL_8)]


for _name in ARITHMETIC:
    op(_name, ["in0", "in1"])(_binary)
for _name in COMPARISON:
    op(_name, ["in0", "in1"])(_compare)
for _name in UNARY:
    if _name == "Gelu":
        op(_name, ["in"], attrs=(Attr("approximate", "str", "none"),))(_unary)
    else:
        op(_name, ["in"])(_unary)
op("ElementWiseIsNan", ["in"])(_predicate)
op("ElementWiseIsInf", ["in"], attrs=(Attr("detect_negative", "bool", True), Attr("detect_positive", "bool", True)))(
    _predicate
)


@op("ReluMinMax", ["in"], attrs=(Attr("min_value", "float", 0.0), Attr("max_value", "float", 6.0)))
def _relu_min_max(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    """Clamp to [min_value, max_value] (ReLU6, Clip)."""
    return [ins[0]]


@op("Elu", ["in"], attrs=(Attr("alpha", "float", 1.0),))
def _elu(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    """x if x > 0 else alpha * (exp(x) - 1)."""
    return [ins[0]]


@op("Selu", ["in"], attrs=(Attr("alpha", "float", 1.67326319217681884765625), Attr("gamma", "float", 1.05070102214813232421875)))
def _selu(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    """gamma * (x if x > 0 else alpha * (exp(x) - 1))."""
    return [ins[0]]


@op("Celu", ["in"], attrs=(Attr("alpha", "float", 1.0),))
def _celu(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    """max(0, x) + min(0, alpha * (exp(x / alpha) - 1))."""
    return [ins[0]]


@op("HardSigmoid", ["in"], attrs=(Attr("alpha", "float", 0.2), Attr("beta", "float", 0.5)))
def _hard_sigmoid(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    """clamp(alpha * x + beta, 0, 1)."""
    return [ins[0]]


@op("Prelu", ["in", "coeff"])
def _prelu(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    """x if x >= 0 else coeff * x; coeff broadcasts against in (LeakyRelu: a one-element coeff)."""
    broadcast_shapes(ins[0].shape, ins[1].shape)
    return [ins[0]]


@op("ElementWiseSelect", ["condition", "in0", "in1"])
def _select(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    """condition ? in0 : in1 (ONNX Where)."""
    c, a, b = ins
    if c.dtype is not DType.BOOL_8:
        raise InvalidModelError(f"ElementWiseSelect condition must be BOOL_8, got {c.dtype.name}")
    return [TType(broadcast_shapes(c.shape, a.shape, b.shape), a.dtype)]


@op("Cast", ["in"], attrs=(Attr("dtype", "dtype"),))
def _cast(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    """Convert to another data type (float to integer truncates toward zero)."""
    return [TType(ins[0].shape, attrs["dtype"])]
