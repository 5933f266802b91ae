"""Conversion state shared by the ONNX op translations.

Every ONNX value maps to a :class:`Value`: the IR tensor holding it, that tensor's layout relative
to the ONNX tensor (``perm``: IR = ONNX.transpose(perm); ``None`` for the ONNX layout itself), and
its numpy value when it is known at conversion time (initializers, Constant nodes, folded shape
arithmetic). Constants become STATIC IR tensors only when an IR node reads them, in the layout that
node wants, so folded-away weights never reach the graph.

Layout: ops that work on channels (convolution, pooling, normalization, resize, ...) ask for their
input channel-last with :meth:`ConversionContext.channel_last`; layout-agnostic ops keep whatever
layout their inputs share; everything else asks for the ONNX layout with :meth:`ConversionContext.src`.
The transposes this inserts cancel in the cleanup passes wherever two meet.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from openqnn.errors import ConversionError
from openqnn.ir.dtype import DType
from openqnn.ir.graph import Graph
from openqnn.ops.build import emit

log = logging.getLogger("openqnn.converter")

Perm = tuple[int, ...]


def channel_last_perm(rank: int) -> Perm:
    """ONNX channel-first -> channel-last: (0, 2, ..., rank-1, 1)."""
    return (0, *range(2, rank), 1)


def inverse(perm: Perm) -> Perm:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


def is_identity(perm: Perm | None) -> bool:
    return perm is None or tuple(perm) == tuple(range(len(perm)))


@dataclass
class Value:
    """What an ONNX value is inside the IR (see module docstring)."""

    name: str | None  # IR tensor; None while the value is a constant not yet materialized
    shape: tuple[int, ...]  # ONNX-layout shape
    dtype: DType
    perm: Perm | None = None
    const: np.ndarray | None = None  # ONNX-layout value when known
    hint: str = ""  # the ONNX name, used to name the IR tensor when a constant is materialized

    @property
    def rank(self) -> int:
        return len(self.shape)


class ConversionContext:
    """Holds the IR graph under construction and the ONNX-name -> :class:`Value` map."""

    def __init__(self, graph: Graph, opset: int, opsets: dict[str, int]):
        self.graph = graph
        self.opset = opset
        self.opsets = opsets
        self.values: dict[str, Value] = {}
        self._node: onnx.NodeProto | None = None  # the ONNX node being translated
        self._materialized: dict[tuple[str, Perm | None], str] = {}
        self._node_mark = 0
        self._keepalive: dict[int, np.ndarray] = {}

    # -- reading values -----------------------------------------------------------------------
    def value(self, name: str) -> Value:
        try:
            return self.values[name]
        except KeyError:
            raise ConversionError(f"{self.where()}: input '{name}' is not produced by any earlier node") from None

    def has(self, index: int) -> bool:
        """Whether optional input ``index`` of the current node is present."""
        return len(self.node.input) > index and self.node.input[index] != ""

    def input(self, index: int) -> Value:
        return self.value(self.node.input[index])

    def const(self, index: int, what: str = "") -> np.ndarray:
        """The conversion-time value of input ``index``; error when it is computed at run time."""
        v = self.input(index)
        if v.const is None:
            raise ConversionError(
                f"{self.where()}: input {index} ('{self.node.input[index]}'{', ' + what if what else ''}) must be a "
                "constant (an initializer or computable from shapes); dynamic values here are not supported"
            )
        return v.const

    def maybe_const(self, index: int) -> np.ndarray | None:
        return self.input(index).const if self.has(index) else None

    def tensor(self, v: Value | str, perm: Perm | None = None) -> str:
        """The IR tensor of ``v`` in layout ``perm`` (None: ONNX layout), adding a Transpose if needed."""
        if isinstance(v, str):
            v = self.value(v)
        want = None if perm is None or is_identity(perm) else tuple(perm)
        have = None if is_identity(v.perm) else v.perm
        if v.const is not None and (v.name is None or have != want):
            return self._materialize(v, want)
        assert v.name is not None
        if have == want:
            return v.name
        # IR_have = src.transpose(have); want src.transpose(want) = IR_have.transpose(q)
        have_p = have or tuple(range(v.rank))
        want_p = want or tuple(range(v.rank))
        q = tuple(have_p.index(w) for w in want_p)
        key = (v.name, q)
        if key not in self._materialized:
            self._materialized[key] = self.emit("Transpose", [v.name], {"perm": q}, name=f"{v.name}_transpose")[0]
        return self._materialized[key]

    def src(self, index: int) -> str:
        """IR tensor of input ``index`` in the ONNX layout ('' when the optional input is absent)."""
        return self.tensor(self.input(index)) if self.has(index) else ""

    def channel_last(self, index: int) -> str:
        """IR tensor of input ``index`` with its channel axis (ONNX axis 1) moved last."""
        v = self.input(index)
        return self.tensor(v, channel_last_perm(v.rank))

    def _materialize(self, v: Value, perm: Perm | None) -> str:
        assert v.const is not None
        key = (f"const:{id(v.const)}", perm)
        self._keepalive[id(v.const)] = v.const  # the id in the key must not be reused by another array
        if key not in self._materialized:
            data = v.const if perm is None else np.transpose(v.const, perm)
            base = v.name or v.hint or "const"
            self._materialized[key] = self.graph.add_constant(base, data).name
        return self._materialized[key]

    def add_static(self, name: str, data: np.ndarray) -> str:
        """Add a STATIC IR tensor the translation computed (e.g. transformed weights). Where ``name`` is
        taken (a weight used twice: an embedding table gathered and used as the output projection), the
        new tensor's name is recorded against it in ``graph.metadata["static_sources"]``, so quantization
        overrides naming the model's initializer reach it too."""
        made = self.graph.add_constant(name, data).name
        if made != name:
            self.graph.metadata.setdefault("static_sources", {})[made] = name
        return made

    # -- writing values -----------------------------------------------------------------------
    def emit(self, op_type: str, inputs: Sequence[str], attrs: dict[str, Any] | None = None,
             name: str | None = None, num_outputs: int | None = None) -> list[str]:
        """Add an IR node named after the current ONNX node; returns its output tensor names."""
        if name is None:
            name = (self._node.name or self._node.output[0]) if self._node is not None else op_type
        return emit(self.graph, op_type, inputs, attrs, name=name or op_type, num_outputs=num_outputs)

    def bind(self, index: int, ir_name: str, perm: Perm | None = None) -> None:
        """Make ONNX output ``index`` of the current node the IR tensor ``ir_name`` in layout ``perm``."""
        onnx_name = self.node.output[index]
        ir_name = self._adopt_name(ir_name, onnx_name)
        t = self.graph.tensors[ir_name]
        shape = t.shape if is_identity(perm) else tuple(t.shape[i] for i in inverse(perm))  # type: ignore[arg-type]
        self.values[onnx_name] = Value(ir_name, shape, t.dtype, None if is_identity(perm) else perm)

    def _adopt_name(self, ir_name: str, onnx_name: str) -> str:
        """Rename a tensor this translation just created to the ONNX output name when that is free,
        so activations keep the source model's names (quantization overrides refer to them)."""
        g = self.graph
        if ir_name == onnx_name or onnx_name in g.tensors or ir_name in g.inputs:
            return ir_name
        new_nodes = g.nodes[self._node_mark:]
        if not any(ir_name in n.outputs for n in new_nodes):
            return ir_name
        t = g.tensors.pop(ir_name)
        t.name = onnx_name
        g.tensors[onnx_name] = t
        g._reserved.add(onnx_name)
        for n in new_nodes:
            n.outputs = [onnx_name if o == ir_name else o for o in n.outputs]
            n.inputs = [onnx_name if i == ir_name else i for i in n.inputs]
        for key, val in list(self._materialized.items()):
            if val == ir_name:
                self._materialized[key] = onnx_name
        return onnx_name

    @property
    def node(self) -> onnx.NodeProto:
        """The ONNX node being translated."""
        if self._node is None:
            raise RuntimeError("no ONNX node is being translated")
        return self._node

    def start_node(self, node: onnx.NodeProto | None) -> None:
        self._node = node
        self._node_mark = len(self.graph.nodes)

    def bind_const(self, index: int, data: np.ndarray) -> None:
        data = np.asarray(data)
        name = self.node.output[index]
        self.values[name] = Value(None, tuple(data.shape), DType.from_numpy(data.dtype), None, data, name)

    def alias(self, index: int, v: Value) -> None:
        """Make ONNX output ``index`` the same value as ``v`` (Identity, Dropout, no-op Reshape, ...)."""
        self.values[self.node.output[index]] = v

    # -- the current node ---------------------------------------------------------------------
    def attr(self, name: str, default: Any = None) -> Any:
        for a in self.node.attribute:
            if a.name == name:
                v = onnx.helper.get_attribute_value(a)
                if isinstance(v, bytes):
                    return v.decode()
                if isinstance(v, list) and v and isinstance(v[0], bytes):
                    return [x.decode() for x in v]
                return v
        return default

    def where(self) -> str:
        n = self._node
        if n is None:
            return "model"
        return f"node '{n.name or n.output[0]}' ({n.op_type})"

    def fail(self, msg: str) -> ConversionError:
        return ConversionError(f"{self.where()}: {msg}")
