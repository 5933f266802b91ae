"""Declarative op schemas: inputs, attributes with defaults, and shape inference.

A schema is registered once, by name, with the :func:`op` decorator on its shape-inference
function. The same schema drives node construction (attribute defaults and checks), the verifier
and the docs. Op names and attribute names follow QNN's op definitions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from openqnn.errors import InvalidModelError
from openqnn.ir.dtype import DType

__all__ = ["OPS", "REQUIRED", "Attr", "OpSchema", "TType", "get_schema", "op"]


class TType(NamedTuple):
    """The static type of a tensor: shape and data type."""

    shape: tuple[int, ...]
    dtype: DType


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()

_INT64 = (-(2**63), 2**63 - 1)


def _int(v: Any) -> int:
    """An integer attribute value: integral (2.0 passes, 2.5 does not) and inside int64."""
    if isinstance(v, str):
        raise TypeError("a string is not an integer")
    i = int(v)
    if i != v:
        raise ValueError(f"{v!r} is not an integer")
    if not _INT64[0] <= i <= _INT64[1]:
        raise ValueError(f"{i} does not fit in 64 bits")
    return i


def _ints2d(v: Any) -> tuple[tuple[int, ...], ...]:
    rows = tuple(tuple(_int(x) for x in row) for row in v)
    if len({len(r) for r in rows}) > 1:
        raise ValueError("rows of different lengths")
    return rows


# Attribute kinds and the Python values they accept.
_KINDS: dict[str, Callable[[Any], Any]] = {
    "int": _int,
    "float": lambda v: float(v),
    "bool": lambda v: bool(v),
    "str": lambda v: str(v),
    "ints": lambda v: tuple(_int(x) for x in np.asarray(v, dtype=object).reshape(-1)),
    "floats": lambda v: tuple(float(x) for x in np.asarray(v).reshape(-1)),
    "ints2d": _ints2d,
    "dtype": lambda v: v if isinstance(v, DType) else DType(v) if str(v).startswith("QNN_") else DType[str(v)],
}


@dataclass(frozen=True)
class Attr:
    """One attribute: name, kind (int, float, bool, str, ints, floats, ints2d, dtype) and default."""

    name: str
    kind: str
    default: Any = REQUIRED
    doc: str = ""


InferFn = Callable[[dict[str, Any], Sequence[TType]], list[TType]]


@dataclass(frozen=True)
class OpSchema:
    """An IR op: QNN name, input names (``x?`` optional, ``x*`` variadic), outputs, attributes."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: tuple[Attr, ...]
    infer: InferFn
    doc: str = ""

    def normalize_attrs(self, node_name: str, attrs: dict[str, Any]) -> dict[str, Any]:
        """Fill defaults, convert values to their kind, reject unknown or missing attributes."""
        known = {a.name: a for a in self.attrs}
        unknown = sorted(set(attrs) - set(known))
        if unknown:
            raise InvalidModelError(
                f"node '{node_name}' ({self.name}): unknown attribute(s) {', '.join(unknown)}; "
                f"{self.name} takes {', '.join(known) or 'none'}"
            )
        out: dict[str, Any] = {}
        for a in self.attrs:
            if a.name in attrs and attrs[a.name] is not None:
                try:
                    out[a.name] = _KINDS[a.kind](attrs[a.name])
                except (TypeError, ValueError, KeyError, OverflowError) as e:
                    raise InvalidModelError(
                        f"node '{node_name}' ({self.name}): attribute {a.name}={attrs[a.name]!r} is not "
                        f"a valid {a.kind} ({e})"
                    ) from None
            elif a.default is REQUIRED:
                raise InvalidModelError(f"node '{node_name}' ({self.name}): attribute {a.name} is required")
            else:
                out[a.name] = a.default
        return out

    def check_arity(self, node_name: str, n_inputs: int) -> None:
        required = sum(1 for i in self.inputs if not i.endswith(("?", "*")))
        variadic = any(i.endswith("*") for i in self.inputs)
        if n_inputs < required or (not variadic and n_inputs > len(self.inputs)):
            raise InvalidModelError(
                f"node '{node_name}' ({self.name}) has {n_inputs} inputs; it takes {', '.join(self.inputs)}"
            )


OPS: dict[str, OpSchema] = {}


def op(
    name: str,
    inputs: Sequence[str],
    outputs: Sequence[str] = ("out",),
    attrs: Sequence[Attr] = (),
) -> Callable[[InferFn], InferFn]:
    """Register the schema of op ``name`` with the decorated shape-inference function."""

    def register(fn: InferFn) -> InferFn:
        if name in OPS:
            raise RuntimeError(f"op schema {name} registered twice")
        OPS[name] = OpSchema(name, tuple(inputs), tuple(outputs), tuple(attrs), fn, (fn.__doc__ or "").strip())
        return fn

    return register


def get_schema(op_type: str) -> OpSchema:
    try:
        return OPS[op_type]
    except KeyError:
        raise InvalidModelError(f"unknown IR op type '{op_type}'") from None


# -- helpers shared by the op families ------------------------------------------------------------

def broadcast_shapes(*shapes: Sequence[int]) -> tuple[int, ...]:
    """Numpy broadcasting of static shapes; raises InvalidModelError when they do not broadcast."""
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*(tuple(s) for s in shapes)))
    except ValueError:
        raise InvalidModelError(f"shapes {', '.join(str(tuple(s)) for s in shapes)} do not broadcast") from None


def norm_axis(axis: int, rank: int) -> int:
    a = axis + rank if axis < 0 else axis
    if not 0 <= a < max(rank, 1):
        raise InvalidModelError(f"axis {axis} is out of range for rank {rank}")
    return a
