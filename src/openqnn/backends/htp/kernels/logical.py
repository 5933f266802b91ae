"""htp kernels: comparisons, logic, predicates, Select, and arithmetic on integer tensors (see registry.py).

Attention masks and position ids are built from token ids and 0/1 masks by these ops; they carry no
encoding (integer and bool tensors) and are computed exactly:

- Integer arithmetic (ElementWiseAdd / Subtract / Multiply whose output is an integer type): in int64,
  then converted to the output's type (two's complement wrap-around, as an integer ALU does).
- And / Or / Xor / Not: logical, on bools (any non-zero integer is true).
- Comparisons of unencoded operands: of the integers (or bools) as they are. Of quantized operands
  (TFLite's reference comparison): each operand's signed value is scaled onto a common grid,
  ``v_i = mbqm((q_i - z_i) << 8, s_i / (2 * max(s_1, s_2)))``, and ``v_1``, ``v_2`` compared; equal
  encodings compare the codes themselves.
- IsNan / IsInf: false everywhere for quantized and integer operands (a code is always finite).
- Select(condition, a, b): a and b requantized to the output encoding (common.py's flow; raw when
  unencoded), then picked by the boolean condition.

Fast paths are the same integer operations in torch, on whatever device the tensors live.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from openqnn.backends.dtypes import torch_dtype
from openqnn.backends.htp.fixedpoint import mbqm_np, mbqm_t, quantize_multiplier
from openqnn.backends.htp.kernels.common import (
    Flow,
    act_q,
    c_array,
    const_step,
    const_tensor,
    flow,
    make_step,
    out_bits,
    static_value,
)
from openqnn.backends.htp.kernels.elementwise import operand_params
from openqnn.backends.htp.kernels.registry import HtpBuildContext, HtpStep, QParams, Unsupported, htp_kernel
from openqnn.ir.graph import Node

__all__ = ["compare", "integer_arithmetic", "logic", "predicate", "select"]

NpFn = Callable[..., np.ndarray]
TorchFn = Callable[..., torch.Tensor]


def _raw(ctx: HtpBuildContext, name: str) -> None:
    """``name`` must be an unencoded integer or bool tensor."""
    if act_q(ctx, name) is not None:
        raise Unsupported(f"'{name}' is quantized where an integer or bool tensor is expected")


def _step(node: Node, ctx: HtpBuildContext, names: Sequence[str], statics: dict[int, np.ndarray],
          ref: NpFn, fast: TorchFn) -> HtpStep:
    """A step over ``names`` whose static operands are the build-time arrays ``statics`` (by position);
    the run-time ones come in order. All static: the output is computed now (const_step)."""
    n = len(names)
    runtime = [x for i, x in enumerate(names) if i not in statics]
    if not runtime:
        return const_step(node, ctx, [c_array(ref(*[statics[i] for i in range(n)]))])
    statics_t = {i: torch.from_numpy(np.array(a, order="C")).to(ctx.device) for i, a in statics.items()}

    def reference(*xs: np.ndarray) -> np.ndarray:
        it = iter(xs)
        return c_array(ref(*[statics[i] if i in statics else np.asarray(next(it)) for i in range(n)]))

    def fast_fn(*xs: torch.Tensor) -> torch.Tensor:
        it = iter(xs)
        return fast(*[statics_t[i] if i in statics_t else next(it) for i in range(n)]).contiguous()

    return make_step(node, reference, fast_fn, runtime)


def _raw_statics(ctx: HtpBuildContext, names: Sequence[str]) -> dict[int, np.ndarray]:
    out = {}
    for i, x in enumerate(names):
        _raw(ctx, x)
        if ctx.is_static(x):
            out[i] = np.asarray(ctx.graph.tensors[x].data)
    return out


# -- integer arithmetic ----------------------------------------------------------------------------

_INT_OPS: dict[str, tuple[NpFn, TorchFn]] = {
    "ElementWiseAdd": (np.add, torch.add),
    "ElementWiseSubtract": (np.subtract, torch.sub),
    "ElementWiseMultiply": (np.multiply, torch.mul),
}


def integer_arithmetic(node: Node, ctx: HtpBuildContext) -> HtpStep:
    """Add / Subtract / Multiply of integer tensors (elementwise.py hands these over): exact in int64."""
    out = node.outputs[0]
    names = node.inputs[:2]
    statics = _raw_statics(ctx, names)
    f_np, f_t = _INT_OPS[node.op_type]
    out_np, out_t = ctx.graph.tensors[out].dtype.numpy, torch_dtype(ctx.graph.tensors[out].dtype)

    def ref(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return f_np(a.astype(np.int64), b.astype(np.int64)).astype(out_np)

    def fast(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return f_t(a.to(torch.int64), b.to(torch.int64)).to(out_t)

    return _step(node, ctx, names, statics, ref, fast)


# -- logic ---------------------------------------------------------------------------------------

_LOGIC: dict[str, tuple[NpFn, TorchFn]] = {
    "ElementWiseAnd": (np.logical_and, torch.logical_and),
    "ElementWiseOr": (np.logical_or, torch.logical_or),
    "ElementWiseXor": (np.logical_xor, torch.logical_xor),
}


@htp_kernel("ElementWiseAnd", "ElementWiseOr", "ElementWiseXor", "ElementWiseNot")
def logic(node: Node, ctx: HtpBuildContext) -> HtpStep:
    names = [x for x in node.inputs if x]
    statics = _raw_statics(ctx, names)
    _raw(ctx, node.outputs[0])
    if node.op_type == "ElementWiseNot":
        return _step(node, ctx, names, statics, np.logical_not, torch.logical_not)
    f_np, f_t = _LOGIC[node.op_type]
    return _step(node, ctx, names, statics, f_np, f_t)


# -- comparisons ---------------------------------------------------------------------------------

_COMPARE: dict[str, tuple[NpFn, TorchFn]] = {
    "ElementWiseEqual": (np.equal, torch.eq),
    "ElementWiseNotEqual": (np.not_equal, torch.ne),
    "ElementWiseGreater": (np.greater, torch.gt),
    "ElementWiseGreaterEqual": (np.greater_equal, torch.ge),
    "ElementWiseLess": (np.less, torch.lt),
    "ElementWiseLessEqual": (np.less_equal, torch.le),
}
_COMPARE_SHIFT = 8  # TFLite's left shift of a quantized comparison; |q - z| < 2^16 keeps it in int32


def _same_grid(a: QParams, b: QParams) -> bool:
    return float(a.scale[0]) == float(b.scale[0]) and int(a.offset[0]) == int(b.offset[0])


def _scaler(q: QParams, twice: float, same: bool) -> tuple[NpFn, TorchFn]:
    """Codes of one operand -> its value on the common comparison grid."""
    z = int(q.zero_point[0])
    if same:
        return (lambda x: x.astype(np.int64) - z), (lambda x: x.to(torch.int64) - z)
    m, shift = quantize_multiplier(float(q.scale[0]) / twice)
    return ((lambda x: mbqm_np((x.astype(np.int64) - z) << _COMPARE_SHIFT, m, shift)),
            (lambda x: mbqm_t((x.to(torch.int64) - z) << _COMPARE_SHIFT, m, shift)))


@htp_kernel(*_COMPARE)
def compare(node: Node, ctx: HtpBuildContext) -> HtpStep:
    names = node.inputs[:2]
    f_np, f_t = _COMPARE[node.op_type]
    _raw(ctx, node.outputs[0])
    quantized = [ctx.graph.tensors[x].encoding is not None for x in names]
    if not any(quantized):
        return _step(node, ctx, names, _raw_statics(ctx, names), f_np, f_t)
    if not all(quantized):
        raise Unsupported(f"{node.op_type} of a quantized and an unquantized operand")
    qa, qb = (operand_params(ctx, x) for x in names)
    same = _same_grid(qa, qb)
    twice = 2.0 * max(float(qa.scale[0]), float(qb.scale[0]))
    (sa_np, sa_t), (sb_np, sb_t) = _scaler(qa, twice, same), _scaler(qb, twice, same)
    statics = {i: ctx.static_q(x) for i, x in enumerate(names) if ctx.is_static(x)}

    def ref(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return f_np(sa_np(a), sb_np(b))

    def fast(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return f_t(sa_t(a), sb_t(b))

    return _step(node, ctx, names, statics, ref, fast)


# -- predicates ------------------------------------------------------------------------------------

@htp_kernel("ElementWiseIsNan", "ElementWiseIsInf")
def predicate(node: Node, ctx: HtpBuildContext) -> HtpStep:
    """No code of an encoding, and no integer, is NaN or infinite: false everywhere."""
    x, out = node.inputs[0], node.outputs[0]
    act_q(ctx, x)  # a float tensor without an encoding is Unsupported: it could hold NaN
    shape = tuple(ctx.shape(out))
    device = ctx.device

    def ref(a: np.ndarray) -> np.ndarray:
        return np.zeros(shape, dtype=np.bool_)

    def fast(a: torch.Tensor) -> torch.Tensor:
        return torch.zeros(shape, dtype=torch.bool, device=device)

    if ctx.is_static(x):
        return const_step(node, ctx, [ref(np.empty(0))])
    return make_step(node, ref, fast, [x])


# -- Select --------------------------------------------------------------------------------------

@htp_kernel("ElementWiseSelect")
def select(node: Node, ctx: HtpBuildContext) -> HtpStep:
    cond, out = node.inputs[0], node.outputs[0]
    _raw(ctx, cond)
    quantized = act_q(ctx, out) is not None
    bits, raw_t = out_bits(ctx, out), None if quantized else torch_dtype(ctx.graph.tensors[out].dtype)
    # cond, then each value operand: a build-time (numpy, torch) pair, or the Flow of a run-time tensor
    parts: list[tuple[np.ndarray, torch.Tensor] | Flow | None] = []
    if ctx.is_static(cond):
        c = np.asarray(ctx.graph.tensors[cond].data).astype(np.bool_)
        parts.append((c, torch.from_numpy(np.array(c, order="C")).to(ctx.device)))
    else:
        parts.append(None)
    for x in node.inputs[1:3]:
        if ctx.is_static(x):
            v = static_value(ctx, x, out)
            parts.append((v, const_tensor(v, quantized, bits, raw_t, ctx.device)))
        else:
            parts.append(flow(ctx, x, out))
    runtime = [x for x, p in zip(node.inputs[:3], parts) if not isinstance(p, tuple)]
    if not runtime:
        c, a, b = (p[0] for p in parts if isinstance(p, tuple))
        return const_step(node, ctx, [c_array(np.where(c, a, b))])

    def operands_np(xs: Sequence[np.ndarray]) -> list[Any]:
        it = iter(xs)
        vals: list[Any] = []
        for p in parts:
            if isinstance(p, tuple):
                vals.append(p[0])
            elif p is None:
                vals.append(np.asarray(next(it)).astype(np.bool_))
            else:
                vals.append(p.np(next(it)))
        return vals

    def operands_t(xs: Sequence[torch.Tensor]) -> list[Any]:
        it = iter(xs)
        vals: list[Any] = []
        for p in parts:
            if isinstance(p, tuple):
                vals.append(p[1])
            elif p is None:
                vals.append(next(it).to(torch.bool))
            else:
                vals.append(p.t(next(it)))
        return vals

    out_np = np.int64 if quantized else ctx.graph.tensors[out].dtype.numpy

    def reference(*xs: np.ndarray) -> np.ndarray:
        c, a, b = operands_np(xs)
        return c_array(np.where(c, a, b).astype(out_np))

    def fast(*xs: torch.Tensor) -> torch.Tensor:
        c, a, b = operands_t(xs)
        y = torch.where(c, a, b)
        return (y.to(raw_t) if raw_t is not None else y).contiguous()

    return make_step(node, reference, fast, runtime)
