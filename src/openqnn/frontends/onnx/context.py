"""Conversion state shared by the ONNX op translations: the shared layout tracker
(:mod:`openqnn.frontends.layout`: every ONNX value as a :class:`Value` with its IR tensor, layout and
known constant) plus the ONNX node being translated, its inputs, attributes and outputs.

Ops that work on channels ask for their input channel-last with :meth:`ConversionContext.channel_last`;
everything else that cares asks for the ONNX layout with :meth:`ConversionContext.src`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx

from openqnn.errors import ConversionError
from openqnn.frontends.layout import LayoutTracker, Perm, Value, channel_last_perm, inverse, is_identity
from openqnn.ir.dtype import DType
from openqnn.ir.graph import Graph
from openqnn.ops.build import emit

__all__ = ["ConversionContext", "Perm", "Value", "channel_last_perm", "inverse", "is_identity"]

log = logging.getLogger("openqnn.converter")


class ConversionContext(LayoutTracker):
    """The shared layout tracker plus the ONNX node being translated."""

    def __init__(self, graph: Graph, opset: int, opsets: dict[str, int]):
        super().__init__(graph)
        self.opset = opset
        self.opsets = opsets
        self._node: onnx.NodeProto | None = None  # the ONNX node being translated
        self._node_mark = 0

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

    def src(self, index: int) -> str:
        """IR tensor of input ``index`` in the ONNX layout ('' when the optional input is absent)."""
        return self.tensor(self.input(index)) if self.has(index) else ""

    def channel_last(self, index: int) -> str:
        """IR tensor of input ``index`` with its channel axis (ONNX axis 1) moved last."""
        v = self.input(index)
        return self.tensor(v, channel_last_perm(v.rank))

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
