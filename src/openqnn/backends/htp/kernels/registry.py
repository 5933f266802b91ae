"""htp kernel builders: IR op type -> builder(node, ctx) -> HtpStep.

Each step has two implementations of the same integer arithmetic:

- ``reference``: the executable spec, plain numpy on int64 arrays, readable bit by bit;
- ``fast``: PyTorch (int8 GEMMs, vectorized integer ops), on whatever device the tensors live.

Activations are quantized values ``q`` in the unsigned domain of their encoding (real =
scale * (q + offset)). In ``reference`` they are int64 arrays; in ``fast`` they are torch.uint8
(8-bit) or torch.int32 (16-bit) tensors. Both must produce identical bits; tests hold them
together. A builder raises :class:`Unsupported` (with the reason) for a node it cannot run; the
node then falls back to the cpu backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from openqnn.backends.background import BACKGROUND_BYTES, background_binding, deferred
from openqnn.backends.base import Unsupported
from openqnn.backends.htp.arch import HtpArch
from openqnn.backends.plan import StepPlan, borrow
from openqnn.errors import InvalidModelError
from openqnn.ir.graph import Graph, Node
from openqnn.ir.tensor import Encoding, TensorKind, qrange
from openqnn.quantization.encodings import math as qmath

__all__ = [
    "BACKGROUND_BYTES",
    "HTP_BINDERS",
    "HTP_KERNELS",
    "HtpBuildContext",
    "HtpStep",
    "QParams",
    "Unsupported",
    "background_binding",
    "bind_step",
    "deferred",
    "htp_binder",
    "htp_kernel",
    "plan_tensor",
    "storage_dtype",
]


def storage_dtype(bitwidth: int) -> torch.dtype:
    """How the fast path holds activations of a bitwidth."""
    return torch.uint8 if bitwidth == 8 else torch.int32


def compact_codes(a: np.ndarray, bitwidth: int) -> np.ndarray:
    """Codes of a bitwidth as a plan stores them: uint8 up to 8 bits, uint16 up to 16 (a 64K-entry
    table is 64 KiB in a context, not 512, and binds without a conversion); other arrays as they are."""
    a = np.asarray(a)
    dtype = np.uint8 if bitwidth <= 8 else np.uint16 if bitwidth <= 16 else None
    if dtype is None or a.dtype.kind not in "iu" or (a.size and (int(a.min()) < 0 or int(a.max()) >= 1 << bitwidth)):
        return a
    return np.ascontiguousarray(a, dtype=dtype)


def wide_codes(a: np.ndarray) -> Callable[[], np.ndarray]:
    """``a`` as int64, made on first use (the reference path's arithmetic; the fast path reads ``a``)."""
    cell: list[np.ndarray] = []

    def get() -> np.ndarray:
        if not cell:
            cell.append(np.asarray(a, dtype=np.int64))
        return cell[0]

    return get


@dataclass(frozen=True)
class QParams:
    """An encoding as arrays: scale and offset broadcast along ``axis`` (None: per-tensor)."""

    bitwidth: int
    scale: np.ndarray  # float64, shape (1,) or (channels,)
    offset: np.ndarray  # int64, same shape
    axis: int | None
    signed: bool

    @staticmethod
    def of(enc: Encoding) -> QParams:
        return QParams(enc.bitwidth, np.asarray(enc.scale, dtype=np.float64), np.asarray(enc.offset, dtype=np.int64),
                       enc.axis, enc.is_signed)

    @property
    def qmin(self) -> int:
        return qrange(self.bitwidth, self.signed)[0]

    @property
    def qmax(self) -> int:
        return qrange(self.bitwidth, self.signed)[1]

    @property
    def zero_point(self) -> np.ndarray:
        """-offset: the integer that represents real 0."""
        return -self.offset

    def codes(self, values: np.ndarray | float) -> np.ndarray:
        """Float values -> codes of this per-tensor encoding (int64; quantization.encodings.math's formula)."""
        return qmath.quantize(np.asarray(values, dtype=np.float64), float(self.scale[0]), int(self.offset[0]),
                              self.bitwidth, self.signed)


@dataclass
class HtpStep:
    """A bound step: ``reference`` and ``fast`` over the run-time ``inputs``. ``plan`` is the step as data
    where its kernel has moved to plans (None where the builder still makes closures directly)."""

    reference: Callable[..., Any]
    fast: Callable[..., Any]
    inputs: list[str]
    outputs: list[str] = field(default_factory=list)
    node: str = ""
    op_type: str = ""
    plan: StepPlan | None = None


class HtpBuildContext:
    """What a builder may read: tensor types, encodings, and static tensors quantized to their encodings."""

    def __init__(self, graph: Graph, arch: HtpArch, device: torch.device | str = "cpu", arithmetic: str = "tflite"):
        self.graph = graph
        self.arch = arch
        self.device = torch.device(device)
        self.arithmetic = arithmetic  # htp_config.arithmetic: "tflite" or "qnn"

    def enc(self, name: str) -> QParams | None:
        t = self.graph.tensors[name]
        return QParams.of(t.encoding) if t.encoding is not None else None

    def need_enc(self, name: str) -> QParams:
        q = self.enc(name)
        if q is None:
            raise Unsupported(f"tensor '{name}' has no encoding (the model is not quantized there)")
        return q

    def is_static(self, name: str) -> bool:
        return bool(name) and self.graph.tensors[name].kind is TensorKind.STATIC

    def shape(self, name: str) -> tuple[int, ...]:
        return self.graph.tensors[name].shape

    def static_q(self, name: str) -> np.ndarray:
        """A static tensor's integers in its encoding: round(x / scale) - offset, clamped (int64)."""
        t = self.graph.tensors[name]
        if t.data is None or t.encoding is None:
            raise Unsupported(f"static tensor '{name}' has no encoding")
        if not t.dtype.is_float:
            return np.asarray(t.data, dtype=np.int64)
        if t.encoding.block_size:
            raise Unsupported(f"weight '{name}' has a per-block encoding; htp kernels take per-tensor or "
                              "per-channel weights (the node runs on the cpu fallback)")
        enc = t.encoding
        scale, offset = enc.arrays(tuple(np.shape(t.data)))
        return qmath.quantize(t.data, scale, offset, enc.bitwidth, enc.is_signed, enc.int_range)


Builder = Callable[[Node, HtpBuildContext], HtpStep]
HTP_KERNELS: dict[str, Builder] = {}
Binder = Callable[[StepPlan, torch.device], tuple[Callable[..., Any], Callable[..., Any]]]
HTP_BINDERS: dict[str, Binder] = {}


def htp_binder(kernel: str) -> Callable[[Binder], Binder]:
    """Register the binder of a plan kernel: ``(plan, device) -> (reference, fast)``, from the plan's
    attributes and arrays alone (no analysis: that happened in prepare)."""
    def register(fn: Binder) -> Binder:
        if kernel in HTP_BINDERS:
            raise RuntimeError(f"htp binder for {kernel} registered twice")
        HTP_BINDERS[kernel] = fn
        return fn

    return register


def plan_tensor(a: np.ndarray, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> torch.Tensor:
    """A plan's array as a tensor on ``device`` (in ``dtype``: converted as ``Tensor.to`` converts), for kernels
    that read it. Arrays read from a context are read-only views of its mapping, which torch does not
    wrap without a warning: small ones are copied; large ones (weights) are wrapped as they are -- the
    mapping is copy-on-write, so nothing could fault or reach the file (saves copying megabytes at bind).
    (``torch.tensor(ndarray)`` would copy element by element: milliseconds for a 64K table.)"""
    a = np.asarray(a, order="C")
    if a.flags.writeable:
        t = torch.from_numpy(a)
    elif a.nbytes < _BORROW_BYTES:
        t = torch.from_numpy(a.copy())
    else:
        t = borrow(a)
    return t.to(device) if dtype is None else t.to(device, dtype)


_BORROW_BYTES = 1 << 16


def bind_step(plan: StepPlan, device: torch.device | str = "cpu") -> HtpStep:
    """The callables of a step plan (one made by prepare, or one read back from a context)."""
    binder = HTP_BINDERS.get(plan.kernel)
    if binder is None:
        raise InvalidModelError(f"node '{plan.node}': unknown htp kernel '{plan.kernel}'; known: "
                                + ", ".join(sorted(HTP_BINDERS)))
    reference, fast = binder(plan, torch.device(device))
    return HtpStep(reference, fast, list(plan.inputs), list(plan.outputs), plan.node, plan.op_type, plan)


def htp_kernel(*op_types: str) -> Callable[[Builder], Builder]:
    def register(fn: Builder) -> Builder:
        for t in op_types:
            if t in HTP_KERNELS:
                raise RuntimeError(f"htp kernel for {t} registered twice")
            HTP_KERNELS[t] = fn
        return fn

    return register
