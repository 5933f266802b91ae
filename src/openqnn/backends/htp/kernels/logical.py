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
  unencoded), then picked by the boolean condition. With ``arithmetic: "qnn"`` (v68 / v73, 8-bit codes) a
  run-time operand is requantized as QNN's Max / Min do (``QnnConvertSpec``, spec/qnn_eltwise.py: 100% of
  the simulator's codes of 18 Where probes, every pair of codes each).

Fast paths are the same integer operations in torch, on whatever device the tensors live.

Builders make a StepPlan (``htp.int_arith``, ``htp.logic``, ``htp.compare``, ``htp.predicate``,
``htp.select``: the op, output types, comparison multipliers, flows; static operands as arrays); the
binders rebuild both paths from the plan alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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
    flow,
    out_attrs,
    static_value,
    tensor_of,
)
from openqnn.backends.htp.kernels.elementwise import operand_params
from openqnn.backends.htp.kernels.registry import (
    HtpBuildContext,
    HtpStep,
    QParams,
    Unsupported,
    bind_step,
    htp_binder,
    htp_kernel,
)
from openqnn.backends.htp.spec.qnn_eltwise import (
    ConvertSpec,
    QnnConvert16Spec,
    QnnConvertSpec,
    convert_spec_for,
    convert_spec_from_attrs,
)
from openqnn.backends.plan import StepPlan
from openqnn.ir.dtype import DType
from openqnn.ir.graph import Node

__all__ = ["compare", "integer_arithmetic", "logic", "predicate", "select"]

NpFn = Callable[..., np.ndarray]
TorchFn = Callable[..., torch.Tensor]


def _raw(ctx: HtpBuildContext, name: str) -> None:
    """``name`` must be an unencoded integer or bool tensor."""
    if act_q(ctx, name) is not None:
        raise Unsupported(f"'{name}' is quantized where an integer or bool tensor is expected")


Fns = Callable[[Mapping[str, Any], torch.device], tuple[NpFn, TorchFn]]
_FNS: dict[str, Fns] = {}


def _fns_kernel(kernel: str) -> Callable[[Fns], Fns]:
    """Register an operand-wise kernel: ``fns(attrs, device) -> (ref, fast)`` over all operands; its
    binder feeds them the static operands (the plan's arrays) and the run-time ones in order."""
    def register(fns: Fns) -> Fns:
        _FNS[kernel] = fns
        htp_binder(kernel)(_bind_operands)
        return fns

    return register


def _step(node: Node, ctx: HtpBuildContext, names: Sequence[str], statics: dict[int, np.ndarray],
          kernel: str, attrs: dict[str, Any]) -> HtpStep:
    """A step over ``names`` whose static operands are the build-time arrays ``statics`` (by position);
    the run-time ones come in order. All static: the output is computed now (const_step)."""
    n = len(names)
    runtime = [x for i, x in enumerate(names) if i not in statics]
    if not runtime:
        ref, _ = _FNS[kernel](attrs, ctx.device)
        return const_step(node, ctx, [c_array(ref(*[statics[i] for i in range(n)]))])
    attrs = {**attrs, "operands": n, "statics": sorted(statics)}
    plan = StepPlan(kernel, node.name, node.op_type, tuple(runtime), tuple(node.outputs), attrs,
                    {f"static{i}": a for i, a in statics.items()})
    return bind_step(plan, ctx.device)


def _bind_operands(plan: StepPlan, device: torch.device) -> tuple[Callable[..., Any], Callable[..., Any]]:
    ref, fast = _FNS[plan.kernel](plan.attrs, device)
    n = int(plan.attrs["operands"])
    statics = {int(i): plan.arrays[f"static{i}"] for i in plan.attrs["statics"]}
    statics_t = {i: torch.from_numpy(np.array(a, order="C")).to(device) for i, a in statics.items()}

    def reference(*xs: np.ndarray) -> np.ndarray:
        it = iter(xs)
        return c_array(ref(*[statics[i] if i in statics else np.asarray(next(it)) for i in range(n)]))

    def fast_fn(*xs: torch.Tensor) -> torch.Tensor:
        it = iter(xs)
        return fast(*[statics_t[i] if i in statics_t else next(it) for i in range(n)]).contiguous()

    return reference, fast_fn


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
    return _step(node, ctx, names, statics, "htp.int_arith",
                 {"op": node.op_type, "dtype": ctx.graph.tensors[out].dtype.name})


@_fns_kernel("htp.int_arith")
def _int_arith_fns(attrs: Mapping[str, Any], device: torch.device) -> tuple[NpFn, TorchFn]:
    f_np, f_t = _INT_OPS[attrs["op"]]
    dtype = DType[attrs["dtype"]]
    out_np, out_t = dtype.numpy, torch_dtype(dtype)

    def ref(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return f_np(a.astype(np.int64), b.astype(np.int64)).astype(out_np)

    def fast(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return f_t(a.to(torch.int64), b.to(torch.int64)).to(out_t)

    return ref, fast


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
    return _step(node, ctx, names, statics, "htp.logic", {"op": node.op_type})


@_fns_kernel("htp.logic")
def _logic_fns(attrs: Mapping[str, Any], device: torch.device) -> tuple[NpFn, TorchFn]:
    if attrs["op"] == "ElementWiseNot":
        return np.logical_not, torch.logical_not
    return _LOGIC[attrs["op"]]


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


def _scaler_attrs(q: QParams, twice: float, same: bool) -> dict[str, Any]:
    """How codes of one operand go onto the common comparison grid, as JSON."""
    z = int(q.zero_point[0])
    if same:
        return {"z": z}
    m, shift = quantize_multiplier(float(q.scale[0]) / twice)
    return {"z": z, "multiplier": int(m), "shift": int(shift)}


def _scaler(a: Mapping[str, Any]) -> tuple[NpFn, TorchFn]:
    """Codes of one operand -> its value on the common comparison grid."""
    z = int(a["z"])
    if "multiplier" not in a:
        return (lambda x: x.astype(np.int64) - z), (lambda x: x.to(torch.int64) - z)
    m, shift = int(a["multiplier"]), int(a["shift"])
    return ((lambda x: mbqm_np((x.astype(np.int64) - z) << _COMPARE_SHIFT, m, shift)),
            (lambda x: mbqm_t((x.to(torch.int64) - z) << _COMPARE_SHIFT, m, shift)))


@htp_kernel(*_COMPARE)
def compare(node: Node, ctx: HtpBuildContext) -> HtpStep:
    names = node.inputs[:2]
    _raw(ctx, node.outputs[0])
    quantized = [ctx.graph.tensors[x].encoding is not None for x in names]
    if not any(quantized):
        return _step(node, ctx, names, _raw_statics(ctx, names), "htp.compare", {"op": node.op_type, "scalers": None})
    if not all(quantized):
        raise Unsupported(f"{node.op_type} of a quantized and an unquantized operand")
    qa, qb = (operand_params(ctx, x) for x in names)
    same = _same_grid(qa, qb)
    twice = 2.0 * max(float(qa.scale[0]), float(qb.scale[0]))
    statics = {i: ctx.static_q(x) for i, x in enumerate(names) if ctx.is_static(x)}
    scalers = [_scaler_attrs(qa, twice, same), _scaler_attrs(qb, twice, same)]
    return _step(node, ctx, names, statics, "htp.compare", {"op": node.op_type, "scalers": scalers})


@_fns_kernel("htp.compare")
def _compare_fns(attrs: Mapping[str, Any], device: torch.device) -> tuple[NpFn, TorchFn]:
    f_np, f_t = _COMPARE[attrs["op"]]
    if attrs["scalers"] is None:
        return f_np, f_t
    (sa_np, sa_t), (sb_np, sb_t) = (_scaler(a) for a in attrs["scalers"])

    def ref(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return f_np(sa_np(a), sb_np(b))

    def fast(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return f_t(sa_t(a), sb_t(b))

    return ref, fast


# -- predicates ------------------------------------------------------------------------------------

@htp_kernel("ElementWiseIsNan", "ElementWiseIsInf")
def predicate(node: Node, ctx: HtpBuildContext) -> HtpStep:
    """No code of an encoding, and no integer, is NaN or infinite: false everywhere."""
    x, out = node.inputs[0], node.outputs[0]
    act_q(ctx, x)  # a float tensor without an encoding is Unsupported: it could hold NaN
    shape = list(ctx.shape(out))
    if ctx.is_static(x):
        return const_step(node, ctx, [np.zeros(shape, dtype=np.bool_)])
    return bind_step(StepPlan("htp.predicate", node.name, node.op_type, (x,), (out,), {"shape": shape}), ctx.device)


@htp_binder("htp.predicate")
def _bind_predicate(plan: StepPlan, device: torch.device) -> tuple[Callable[..., Any], Callable[..., Any]]:
    shape = tuple(plan.attrs["shape"])

    def ref(a: np.ndarray) -> np.ndarray:
        return np.zeros(shape, dtype=np.bool_)

    def fast(a: torch.Tensor) -> torch.Tensor:
        return torch.zeros(shape, dtype=torch.bool, device=device)

    return ref, fast


# -- Select --------------------------------------------------------------------------------------

@htp_kernel("ElementWiseSelect")
def select(node: Node, ctx: HtpBuildContext) -> HtpStep:
    cond, out = node.inputs[0], node.outputs[0]
    _raw(ctx, cond)
    # cond, then each value operand: {"static": array name}, {"cond": true} (run-time) or {"flow": Flow attrs}
    parts: list[dict[str, Any]] = []
    arrays: dict[str, np.ndarray] = {}
    if ctx.is_static(cond):
        arrays["static0"] = np.asarray(ctx.graph.tensors[cond].data).astype(np.bool_)
        parts.append({"static": "static0"})
    else:
        parts.append({"cond": True})
    qo = act_q(ctx, out)
    for i, x in enumerate(node.inputs[1:3], 1):
        if ctx.is_static(x):
            arrays[f"static{i}"] = static_value(ctx, x, out)
            parts.append({"static": f"static{i}"})
            continue
        fl = flow(ctx, x, out)
        qx = act_q(ctx, x)
        spec = (None if qx is None or qo is None else
                convert_spec_for(ctx.arch.name, ctx.arithmetic, float(qx.scale[0]), int(qx.zero_point[0]),
                                 float(qo.scale[0]), int(qo.zero_point[0]), (qx.bitwidth, qo.bitwidth),
                                 qx.signed or qo.signed, select=True))
        if spec is not None:  # QNN requantizes a run-time operand as Max / Min do (spec/qnn_eltwise.py)
            arrays[f"table{i}"] = spec.table()
            parts.append({"qnn": spec.to_attrs(), "table": f"table{i}"})
        else:
            parts.append({"flow": fl.to_attrs()})
    runtime = [x for x, p in zip(node.inputs[:3], parts) if "static" not in p]
    if not runtime:
        c, a, b = arrays.values()
        return const_step(node, ctx, [c_array(np.where(c, a, b))])
    plan = StepPlan("htp.select", node.name, node.op_type, tuple(runtime), (out,),
                    {"parts": parts, "out": out_attrs(ctx, out)}, arrays)
    return bind_step(plan, ctx.device)


@htp_binder("htp.select")
def _bind_select(plan: StepPlan, device: torch.device) -> tuple[Callable[..., Any], Callable[..., Any]]:
    out = plan.attrs["out"]
    quantized = bool(out["quantized"])
    raw_t = None if quantized else torch_dtype(DType[out["dtype"]])
    # cond, then each value operand: a build-time (numpy, torch) pair, or the Flow of a run-time tensor
    parts: list[tuple[np.ndarray, torch.Tensor] | Flow | ConvertSpec | None] = []
    tables: dict[int, torch.Tensor] = {}  # QNN's requantized codes of each 8-bit code, per operand
    for i, p in enumerate(plan.attrs["parts"]):
        if "qnn" in p:
            parts.append(convert_spec_from_attrs(p["qnn"]))
            tables[i] = tensor_of(np.asarray(plan.arrays[p["table"]]), out, device)
        elif "static" in p:
            v = plan.arrays[p["static"]]
            parts.append((v, torch.from_numpy(np.array(v, order="C")).to(device) if i == 0 else tensor_of(v, out, device)))
        elif "cond" in p:
            parts.append(None)
        else:
            parts.append(Flow.from_attrs(p["flow"]))

    def operands_np(xs: Sequence[np.ndarray]) -> list[Any]:
        it = iter(xs)
        vals: list[Any] = []
        for p in parts:
            if isinstance(p, tuple):
                vals.append(p[0])
            elif p is None:
                vals.append(np.asarray(next(it)).astype(np.bool_))
            elif isinstance(p, (QnnConvertSpec, QnnConvert16Spec)):
                vals.append(p.apply_np(next(it)))
            else:
                vals.append(p.np(next(it)))
        return vals

    def operands_t(xs: Sequence[torch.Tensor]) -> list[Any]:
        it = iter(xs)
        vals: list[Any] = []
        for i, p in enumerate(parts):
            if isinstance(p, tuple):
                vals.append(p[1])
            elif p is None:
                vals.append(next(it).to(torch.bool))
            elif isinstance(p, (QnnConvertSpec, QnnConvert16Spec)):
                vals.append(tables[i][next(it).to(torch.int64)])
            else:
                vals.append(p.t(next(it)))
        return vals

    out_np = np.int64 if quantized else DType[out["dtype"]].numpy

    def reference(*xs: np.ndarray) -> np.ndarray:
        c, a, b = operands_np(xs)
        return c_array(np.where(c, a, b).astype(out_np))

    def fast(*xs: torch.Tensor) -> torch.Tensor:
        c, a, b = operands_t(xs)
        y = torch.where(c, a, b)
        return (y.to(raw_t) if raw_t is not None else y).contiguous()

    return reference, fast
