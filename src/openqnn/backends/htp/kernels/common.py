"""Shared helpers of the htp kernels that move or requantize per-tensor integers (movement, resize,
pooling, reduce).

Where an op's output encoding differs from its input's, the values are requantized first (TFLite's
Requantize, the DESIGN's "explicit requantize")::

    q_out = clamp(z_out + mbqm(q_in - z_in, M, shift))      (M, shift) = quantize_multiplier(s_in / s_out)

(z = -offset; the identity when the two encodings are equal). Tensors without an encoding and of a
non-float dtype (indices, token ids, shapes) are moved as they are (a raw :class:`Flow`); a float
tensor without an encoding is Unsupported (the node falls back to cpu). Static operands are read in
their encodings and requantized at build time (per-axis static encodings too, one multiplier per
channel). :func:`movement_plan` builds the step of a one-input, one-output movement op.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from openqnn.backends.dtypes import torch_dtype
from openqnn.backends.htp.fixedpoint import mbqm_np, mbqm_t, quantize_multiplier
from openqnn.backends.htp.kernels.registry import (
    HtpBuildContext,
    HtpStep,
    QParams,
    Unsupported,
    bind_step,
    htp_binder,
    plan_tensor,
    storage_dtype,
)
from openqnn.backends.plan import StepPlan
from openqnn.ir.dtype import DType
from openqnn.ir.graph import Node

__all__ = [
    "MOVES",
    "Flow",
    "Rescale",
    "act_q",
    "c_array",
    "const_step",
    "const_tensor",
    "flow",
    "move_kernel",
    "movement_plan",
    "out_attrs",
    "out_bits",
    "static_value",
    "tensor_of",
    "to_storage",
]


# -- encodings and requantization -----------------------------------------------------------------

def act_q(ctx: HtpBuildContext, name: str) -> QParams | None:
    """The encoding of an activation, or None for an unquantized integer (or bool) tensor.

    Unsupported: a float tensor without encoding, per-axis or signed run-time encodings, bitwidths
    other than 8 and 16, scales that are not finite and positive. The one check of an activation's
    encoding (:func:`openqnn.backends.htp.kernels.gemm.act_qparams` adds the operand's role).
    """
    t = ctx.graph.tensors[name]
    if t.encoding is None:
        if t.dtype.is_float:
            raise Unsupported(f"tensor '{name}' has no encoding (the model is not quantized there)")
        return None
    q = QParams.of(t.encoding)
    if not t.is_static:
        if q.axis is not None:
            raise Unsupported(f"tensor '{name}' has a per-axis (per-channel) encoding; htp activations are per-tensor")
        if q.signed or q.bitwidth not in (8, 16):
            raise Unsupported(f"tensor '{name}': {q.bitwidth}-bit{' signed' if q.signed else ''} activations; htp "
                              "activations are unsigned 8 or 16-bit")
        if not (np.isfinite(q.scale).all() and (q.scale > 0).all()):
            raise Unsupported(f"tensor '{name}' has a non-positive scale")
    return q


def quantized_io(node: Node, ctx: HtpBuildContext) -> tuple[QParams, QParams]:
    """The encodings of a node's run-time input 0 and output 0, both quantized, or Unsupported."""
    x, y = node.inputs[0], node.outputs[0]
    if ctx.is_static(x):
        raise Unsupported(f"{node.op_type} of a static tensor")
    qi, qo = act_q(ctx, x), act_q(ctx, y)
    if qi is None or qo is None:
        raise Unsupported(f"{node.op_type} of an unquantized tensor")
    return qi, qo


def _same(a: QParams, b: QParams) -> bool:
    return (a.bitwidth == b.bitwidth and a.axis == b.axis and np.array_equal(a.scale, b.scale)
            and np.array_equal(a.offset, b.offset))


def c_array(a: Any) -> np.ndarray:
    """A C-contiguous numpy array (0-d stays 0-d, unlike np.ascontiguousarray)."""
    return np.asarray(a, order="C")


def to_storage(x: torch.Tensor, bitwidth: int) -> torch.Tensor:
    """Integers (any dtype) -> the fast path's storage dtype of a bitwidth."""
    dt = storage_dtype(bitwidth)
    return x if x.dtype == dt else x.to(dt)


@dataclass(frozen=True)
class Rescale:
    """A code-to-code rescale between two per-tensor encodings, TFLite's way (pooling, max reductions, data
    movement between encodings): q_out = clamp(z_out + mbqm(q_in - z_in, multiplier, shift)). Accumulators are
    requantized by :class:`openqnn.backends.htp.kernels.requant.Requant`."""

    z_in: int
    z_out: int
    multiplier: int
    shift: int
    qmin: int
    qmax: int
    bitwidth: int  # the output's
    identity: bool

    @staticmethod
    def between(qin: QParams, qout: QParams) -> Rescale:
        m, sh = quantize_multiplier(float(qin.scale[0]) / float(qout.scale[0]))
        return Rescale(int(qin.zero_point[0]), int(qout.zero_point[0]), m, sh, qout.qmin, qout.qmax,
                       qout.bitwidth, _same(qin, qout))

    def to_attrs(self) -> dict[str, Any]:
        return {"z_in": self.z_in, "z_out": self.z_out, "multiplier": self.multiplier, "shift": self.shift,
                "qmin": self.qmin, "qmax": self.qmax, "bitwidth": self.bitwidth, "identity": self.identity}

    @staticmethod
    def from_attrs(a: Mapping[str, Any]) -> Rescale:
        return Rescale(int(a["z_in"]), int(a["z_out"]), int(a["multiplier"]), int(a["shift"]), int(a["qmin"]),
                       int(a["qmax"]), int(a["bitwidth"]), bool(a["identity"]))

    def np(self, q: np.ndarray) -> np.ndarray:
        q = np.asarray(q, dtype=np.int64)
        if self.identity:
            return q
        return np.clip(self.z_out + mbqm_np(q - self.z_in, self.multiplier, self.shift), self.qmin, self.qmax)

    def t(self, q: torch.Tensor) -> torch.Tensor:
        if self.identity:
            return to_storage(q, self.bitwidth)
        y = mbqm_t(q.to(torch.int64) - self.z_in, self.multiplier, self.shift) + self.z_out
        return to_storage(torch.clamp(y, self.qmin, self.qmax), self.bitwidth)


@dataclass(frozen=True)
class Flow:
    """How values travel from an op's input to one of its outputs: raw (no encodings: moved as they
    are) or quantized (requantized when the encodings differ)."""

    rq: Rescale | None
    raw_dtype: Any = None  # numpy dtype of a raw output
    raw_torch: torch.dtype | None = None
    dtype: DType | None = None  # the raw output's IR type (what to_attrs records)

    @property
    def quantized(self) -> bool:
        return self.rq is not None

    @staticmethod
    def raw(dt: DType) -> Flow:
        return Flow(None, dt.numpy, torch_dtype(dt), dt)

    def to_attrs(self) -> dict[str, Any]:
        """The flow as JSON: its requantization's integers, or ``{"raw": <DType name>}``."""
        if self.rq is None:
            assert self.dtype is not None, "a raw Flow made without its DType (use Flow.raw)"
            return {"raw": self.dtype.name}
        return self.rq.to_attrs()

    @staticmethod
    def from_attrs(a: Mapping[str, Any]) -> Flow:
        return Flow.raw(DType[a["raw"]]) if "raw" in a else Flow(Rescale.from_attrs(a))

    def np(self, x: np.ndarray) -> np.ndarray:
        if self.rq is None:
            return np.asarray(x).astype(self.raw_dtype, copy=False)
        return self.rq.np(x)

    def t(self, x: torch.Tensor) -> torch.Tensor:
        if self.rq is None:
            return x if self.raw_torch is None or x.dtype == self.raw_torch else x.to(self.raw_torch)
        return self.rq.t(x)


def flow(ctx: HtpBuildContext, src: str, dst: str) -> Flow:
    """The flow from run-time tensor ``src`` to tensor ``dst`` (Unsupported when only one is quantized)."""
    qi, qo = act_q(ctx, src), act_q(ctx, dst)
    if qi is None and qo is None:
        return Flow.raw(ctx.graph.tensors[dst].dtype)
    if qi is None or qo is None:
        raise Unsupported(f"'{src}' -> '{dst}' mixes a quantized and an unquantized tensor")
    if qi.axis is not None or qo.axis is not None:
        raise Unsupported(f"'{src}' -> '{dst}': per-axis encoding")
    return Flow(Rescale.between(qi, qo))


def static_value(ctx: HtpBuildContext, name: str, dst: str) -> np.ndarray:
    """A static operand as it flows into ``dst``: integers in ``dst``'s encoding (requantized from the
    static's own encoding, per channel for a per-axis one), or raw values when neither is quantized."""
    t = ctx.graph.tensors[name]
    assert t.data is not None, name
    qs, qo = act_q(ctx, name), act_q(ctx, dst)
    if qs is None and qo is None:
        return np.asarray(t.data).astype(ctx.graph.tensors[dst].dtype.numpy)
    if qs is None or qo is None:
        raise Unsupported(f"'{name}' -> '{dst}' mixes a quantized and an unquantized tensor")
    q = ctx.static_q(name)
    if _same(qs, qo):
        return q
    shape = [1] * q.ndim
    if qs.axis is not None and q.ndim:
        shape[qs.axis] = qs.scale.size
    pairs = [quantize_multiplier(float(s) / float(qo.scale[0])) for s in qs.scale]
    m = np.array([p[0] for p in pairs], dtype=np.int64).reshape(shape)
    sh = np.array([p[1] for p in pairs], dtype=np.int64).reshape(shape)
    z = qs.zero_point.reshape(shape)
    return np.clip(int(qo.zero_point[0]) + mbqm_np(q - z, m, sh), qo.qmin, qo.qmax)


def const_tensor(v: np.ndarray, fl_quantized: bool, bitwidth: int, raw_torch: torch.dtype | None,
                 device: torch.device) -> torch.Tensor:
    v = c_array(v)
    # (a context's arrays are read-only maps: plan_tensor copies small ones, wraps large ones -- an embedding
    # table -- as they are)
    t = torch.from_numpy(v) if v.flags.writeable else plan_tensor(v)
    if fl_quantized:
        t = to_storage(t, bitwidth)
    elif raw_torch is not None:
        t = t.to(raw_torch)
    return t.to(device)


def out_bits(ctx: HtpBuildContext, name: str) -> int:
    q = act_q(ctx, name)
    return q.bitwidth if q is not None else 0


def out_attrs(ctx: HtpBuildContext, name: str) -> dict[str, Any]:
    """How a constant of tensor ``name`` is held on the fast path, as JSON (see :func:`tensor_of`)."""
    return {"quantized": act_q(ctx, name) is not None, "bits": out_bits(ctx, name),
            "dtype": ctx.graph.tensors[name].dtype.name}


def tensor_of(v: np.ndarray, out: Mapping[str, Any], device: torch.device) -> torch.Tensor:
    """A constant as the fast path holds it, from :func:`out_attrs`."""
    return const_tensor(v, bool(out["quantized"]), int(out["bits"]), torch_dtype(DType[out["dtype"]]), device)


def const_step(node: Node, ctx: HtpBuildContext, values: Sequence[np.ndarray]) -> HtpStep:
    """A node whose inputs are all static: its outputs, computed at build time by the spec."""
    plan = StepPlan("htp.const", node.name, node.op_type, (), tuple(node.outputs),
                    {"outputs": [out_attrs(ctx, name) for name in node.outputs]},
                    {f"out{i}": np.asarray(v) for i, v in enumerate(values)})
    return bind_step(plan, ctx.device)


@htp_binder("htp.const")
def _bind_const(plan: StepPlan, device: torch.device) -> tuple[Callable[..., Any], Callable[..., Any]]:
    refs = [np.asarray(plan.arrays[f"out{i}"]) for i in range(len(plan.attrs["outputs"]))]
    ts = [tensor_of(v, out, device) for v, out in zip(refs, plan.attrs["outputs"])]
    if len(refs) == 1:
        return (lambda: refs[0].copy()), (lambda: ts[0])
    return (lambda: tuple(r.copy() for r in refs)), (lambda: tuple(ts))


# -- movement steps as data ------------------------------------------------------------------------

Moves = Callable[[Mapping[str, Any], Mapping[str, np.ndarray], torch.device],
                 tuple[Callable[[np.ndarray], np.ndarray], Callable[[torch.Tensor], torch.Tensor]]]
MOVES: dict[str, Moves] = {}
"""Plan kernel name -> how to rebuild its (move_np, move_t) from the plan's attrs and arrays."""


def move_kernel(kernel: str) -> Callable[[Moves], Moves]:
    """Register a one-input movement kernel: ``moves(attrs, arrays, device) -> (move_np, move_t)``. Its
    binder requantizes (the plan's ``flow``), then moves; its static form is computed at build time."""
    def register(moves: Moves) -> Moves:
        if kernel in MOVES:
            raise RuntimeError(f"htp movement kernel {kernel} registered twice")
        MOVES[kernel] = moves

        @htp_binder(kernel)
        def bind(plan: StepPlan, device: torch.device) -> tuple[Callable[..., Any], Callable[..., Any]]:
            move_np, move_t = moves(plan.attrs, plan.arrays, device)
            fl = Flow.from_attrs(plan.attrs["flow"])

            def reference(a: np.ndarray) -> np.ndarray:
                return c_array(move_np(fl.np(a)))

            def fast(a: torch.Tensor) -> torch.Tensor:
                return move_t(fl.t(a)).contiguous()

            return reference, fast

        return moves

    return register


def movement_plan(node: Node, ctx: HtpBuildContext, kernel: str, attrs: Mapping[str, Any] | None = None,
                  arrays: Mapping[str, np.ndarray] | None = None) -> HtpStep:
    """The step of a one-input, one-output movement op registered with :func:`move_kernel`: a plan with
    the flow (requantize when the encodings differ) beside the move's attrs; a constant for a static input."""
    attrs, arrays = dict(attrs or {}), dict(arrays or {})
    x, y = node.inputs[0], node.outputs[0]
    if ctx.is_static(x):
        move_np, _ = MOVES[kernel](attrs, arrays, ctx.device)
        return const_step(node, ctx, [c_array(move_np(static_value(ctx, x, y)))])
    attrs["flow"] = flow(ctx, x, y).to_attrs()
    return bind_step(StepPlan(kernel, node.name, node.op_type, (x,), (y,), attrs, arrays), ctx.device)
