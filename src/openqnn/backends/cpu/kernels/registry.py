"""Kernel builders of the cpu backend: IR op type -> builder(node, ctx) -> Step.

A builder runs once at prepare time. It reads attributes and static tensors (weights), lays the
weights out the way PyTorch runs fastest, and returns a :class:`Step` whose ``fn`` maps the run-time
inputs (torch tensors) to the outputs. A builder raises :class:`Unsupported` for a node it cannot
run; the reason is reported by the partitioner.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from openqnn.backends.base import Unsupported
from openqnn.backends.cpu.kernels.prepared import Source, read_source
from openqnn.backends.dtypes import torch_dtype
from openqnn.backends.plan import borrow
from openqnn.ir.dtype import DType
from openqnn.ir.graph import Graph, Node
from openqnn.ir.tensor import TensorKind

__all__ = [
    "KERNELS",
    "BuildContext",
    "Builder",
    "KernelFn",
    "LayerOperands",
    "Source",
    "Step",
    "Unsupported",
    "kernel",
    "simple",
    "to_torch",
    "torch_dtype",
]

KernelFn = Callable[..., Any]


@dataclass
class Step:
    """One prepared kernel call: ``outputs = fn(*inputs)`` over run-time tensors."""

    fn: KernelFn
    inputs: list[str]
    outputs: list[str] = field(default_factory=list)
    node: str = ""
    op_type: str = ""
    path: str = ""  # which implementation runs it, where there is a choice: "native", "onednn", "sdpa"
    # fn writing its output over its last input (a residual it adds), which the executor passes only when
    # nothing else holds it (see openqnn.backends.executor); None where it cannot
    over: KernelFn | None = None


@dataclass(frozen=True)
class LayerOperands:
    """A layer's weight and optional bias (convolutions, FullyConnected): static ones bound once at
    prepare time, the others taken from the step's run-time inputs after x (weight, then bias)."""

    w: torch.Tensor | None  # static, already through ``prepare``
    b: torch.Tensor | None  # static
    has_bias: bool
    prepare: Callable[[torch.Tensor], torch.Tensor]  # a run-time weight into the layout the kernel takes
    runtime: list[str]  # the run-time inputs after x

    @staticmethod
    def of(ctx: BuildContext, w_name: str, b_name: str,
           prepare: Callable[[torch.Tensor], torch.Tensor] = lambda w: w) -> LayerOperands:
        """``prepare`` lays a weight out for the kernel. A static weight and bias are PyTorch's own
        copies in any case (its allocator aligns to 64 bytes, numpy's buffers often are not: AVX-512
        loads); a weight ``prepare`` already copied is not copied again."""
        w = None
        if ctx.is_static(w_name):
            src = ctx.static(w_name)
            w = prepare(src)
            if w.untyped_storage().data_ptr() == src.untyped_storage().data_ptr():
                w = w.clone()
        b = ctx.static(b_name).clone() if b_name and ctx.is_static(b_name) else None
        runtime = ([w_name] if w is None else []) + ([b_name] if b_name and b is None else [])
        return LayerOperands(w, b, bool(b_name), prepare, runtime)

    @property
    def static(self) -> bool:
        """Whether the weight and the bias (if any) are both static."""
        return self.w is not None and (self.b is not None or not self.has_bias)

    def take(self, rest: Iterator[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The weight and bias of one run, the run-time ones from ``rest``."""
        w = self.w if self.w is not None else self.prepare(next(rest))
        b = self.b if self.b is not None else (next(rest) if self.has_bias else None)
        return w, b


class BuildContext:
    """What a builder may read: tensor types and static data (as torch tensors)."""

    def __init__(self, graph: Graph, device: torch.device | str = "cpu", float_dtype: torch.dtype | None = None,
                 stored: Mapping[str, np.ndarray] | None = None, sources: Mapping[str, Mapping[str, Any]] | None = None):
        """``stored``: the prepared operands of a step plan (:meth:`prepared`), ``sources``: how the static tensors
        the plan holds only as such operands read back (:func:`~openqnn.backends.cpu.kernels.prepared.read_source`)."""
        self.graph = graph
        self.device = torch.device(device)
        self.float_dtype = float_dtype  # when set (fp16 on gpu), float tensors run in this type
        self.native = True  # whether steps may take the native float32 kernels (the plan's choice)
        self.stored: Mapping[str, np.ndarray] = stored or {}
        self.sources: Mapping[str, Mapping[str, Any]] = sources or {}
        # where set (planning), what prepared() makes is recorded here, and the tensors it reads back
        self.made: dict[str, np.ndarray] | None = None
        self.made_sources: dict[str, dict[str, Any]] = {}

    def prepared(self, key: str, make: Callable[[], tuple[torch.Tensor, ...]],
                 sources: Sequence[Source] = ()) -> tuple[torch.Tensor, ...]:
        """Operands a kernel lays out from static data once (packed panels, a weight per tap): the step plan's own
        where it holds them under ``key`` (a context binary: nothing is laid out again), else ``make()``'s float32
        CPU tensors, recorded in :attr:`made` when set (planning: the plan keeps them). ``key`` names the layout and,
        where it depends on the machine (the native GEMM's panel width), that too: a context from a machine whose
        kernels read another layout finds no key and lays its weights out again. ``sources``: the static tensors
        the operands hold exactly, which the plan then keeps only in them (each read back where asked for); operands
        made from a quantized weight are not kept."""
        names = [f"{key}#{i}" for i in range(_PREPARED_MAX)]
        if names[0] in self.stored:
            return tuple(borrow(self.stored[n]) for n in names if n in self.stored)
        made = make()
        assert len(made) <= _PREPARED_MAX and all(t.dtype == torch.float32 and t.device.type == "cpu" for t in made)
        # (a simulation's weights, quantize-dequantized on binding, are kept as the model has them: not twice)
        if self.made is not None and all(self.graph.tensors[s.tensor].encoding is None
                                         and self.graph.tensors[s.tensor].dtype is DType.FLOAT_32 for s in sources):
            for name, op in zip(names, made):
                self.made[name] = op.numpy()
            for src in sources:
                self.made_sources[src.tensor] = src.to_json(names[src.operand])
        return made

    def is_static(self, name: str) -> bool:
        return bool(name) and self.graph.tensors[name].kind is TensorKind.STATIC

    def static(self, name: str) -> torch.Tensor:
        """A static tensor as torch; quantize-dequantized when it carries an encoding (simulation)."""
        return to_torch(self.static_np(name), self.device, self.float_dtype)

    def static_np(self, name: str) -> np.ndarray:
        t = self.graph.tensors[name]
        if name in self.sources:  # held by the plan only as a prepared operand: read back from it
            return read_source(self.sources[name], self.stored, t.shape)
        assert t.data is not None, name
        if t.encoding is not None and t.dtype.is_float:
            from openqnn.backends.cpu.quantsim import fake_quantize_array

            return fake_quantize_array(t.data, t.encoding)
        return t.data

    def shape(self, name: str) -> tuple[int, ...]:
        return self.graph.tensors[name].shape

    def dtype(self, name: str) -> DType:
        return self.graph.tensors[name].dtype

    def torch_dtype(self, name: str) -> torch.dtype:
        return torch_dtype(self.graph.tensors[name].dtype, self.float_dtype)


Builder = Callable[[Node, BuildContext], Step]
KERNELS: dict[str, Builder] = {}


def kernel(*op_types: str) -> Callable[[Builder], Builder]:
    """Register the decorated builder for the given IR op types."""

    def register(fn: Builder) -> Builder:
        for t in op_types:
            if t in KERNELS:
                raise RuntimeError(f"cpu kernel for {t} registered twice")
            KERNELS[t] = fn
        return fn

    return register


def simple(fn: KernelFn, node: Node, *, skip_empty: bool = True) -> Step:
    """A step that passes every (present) input of ``node`` to ``fn``."""
    return Step(fn, [x for x in node.inputs if x or not skip_empty])


_PREPARED_MAX = 4


def to_torch(a: np.ndarray, device: torch.device | str = "cpu", float_dtype: torch.dtype | None = None) -> torch.Tensor:
    a = np.asarray(a, order="C")
    if not a.flags.writeable:
        a = a.copy()
    t = torch.from_numpy(a)
    if float_dtype is not None and t.dtype in (torch.float32, torch.float16):
        t = t.to(float_dtype)
    return t.to(device)
