"""The IR graph: tensors by name and nodes in topological order."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from openqnn.errors import InvalidModelError
from openqnn.ir.dtype import DType
from openqnn.ir.tensor import Tensor, TensorKind

__all__ = ["Graph", "Node"]


@dataclass
class Node:
    """One op instance. ``inputs`` may hold ``""`` for an absent optional input."""

    name: str
    op_type: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    package: str = "qti.aisw"


@dataclass
class Graph:
    """A dataflow graph. ``nodes`` is kept in topological order by every mutation helper."""

    name: str = "model"
    tensors: dict[str, Tensor] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    _reserved: set[str] = field(default_factory=set, repr=False, compare=False)

    # -- building ---------------------------------------------------------------------------
    def add_tensor(self, tensor: Tensor) -> Tensor:
        if tensor.name in self.tensors:
            raise InvalidModelError(f"tensor '{tensor.name}' is defined twice")
        self.tensors[tensor.name] = tensor
        return tensor

    def add_constant(self, name: str, data: np.ndarray) -> Tensor:
        """Add a STATIC tensor holding ``data`` under a fresh name based on ``name``."""
        data = np.asarray(data, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
        return self.add_tensor(
            Tensor(self.unique_name(name), tuple(data.shape), DType.from_numpy(data.dtype),
                   TensorKind.STATIC, data)
        )

    def add_node(self, node: Node, index: int | None = None) -> Node:
        self._reserved.add(node.name)
        if index is None:
            self.nodes.append(node)
        else:
            self.nodes.insert(index, node)
        return node

    def unique_name(self, base: str) -> str:
        """A name no tensor or node uses yet (``base``, else ``base_1``, ``base_2``, ...); reserved."""
        base = base or "t"
        cand = base
        for i in itertools.count(1):
            if cand not in self.tensors and cand not in self._reserved:
                break
            cand = f"{base}_{i}"
        self._reserved.add(cand)
        return cand

    # -- queries ----------------------------------------------------------------------------
    def tensor(self, name: str) -> Tensor:
        try:
            return self.tensors[name]
        except KeyError:
            raise InvalidModelError(f"graph '{self.name}' has no tensor '{name}'") from None

    def producers(self) -> dict[str, Node]:
        return {out: node for node in self.nodes for out in node.outputs}

    def consumers(self) -> dict[str, list[Node]]:
        uses: dict[str, list[Node]] = {}
        for node in self.nodes:
            for name in node.inputs:
                if name:
                    uses.setdefault(name, []).append(node)
        return uses

    def static_tensors(self) -> Iterator[Tensor]:
        return (t for t in self.tensors.values() if t.kind is TensorKind.STATIC)

    def op_types(self) -> list[str]:
        return sorted({n.op_type for n in self.nodes})

    def count_ops(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.op_type] = counts.get(n.op_type, 0) + 1
        return counts

    # -- rewriting --------------------------------------------------------------------------
    def replace_uses(self, old: str, new: str) -> None:
        """Point every consumer (and the graph outputs) of tensor ``old`` at ``new``."""
        for node in self.nodes:
            node.inputs = [new if x == old else x for x in node.inputs]
        self.outputs = [new if x == old else x for x in self.outputs]

    def remove_unused(self) -> int:
        """Drop nodes whose outputs nobody reads, and tensors no node touches. Returns nodes removed."""
        live = set(self.outputs)
        kept: list[Node] = []
        for node in reversed(self.nodes):
            if any(o in live for o in node.outputs):
                kept.append(node)
                live.update(x for x in node.inputs if x)
                live.update(node.outputs)  # a kept node keeps all its outputs, read or not
        removed = len(self.nodes) - len(kept)
        self.nodes = kept[::-1]
        live.update(self.inputs)
        for name in [n for n in self.tensors if n not in live]:
            del self.tensors[name]
        return removed

    def toposort(self) -> None:
        """Reorder ``nodes`` topologically (stable); raise on a cycle or a missing producer."""
        available = set(self.inputs) | {t.name for t in self.static_tensors()}
        pending = list(self.nodes)
        ordered: list[Node] = []
        while pending:
            rest = []
            for node in pending:
                if all((not x) or x in available for x in node.inputs):
                    ordered.append(node)
                    available.update(node.outputs)
                else:
                    rest.append(node)
            if len(rest) == len(pending):
                missing = sorted({x for n in rest for x in n.inputs if x and x not in available})
                raise InvalidModelError(
                    f"graph '{self.name}': node '{rest[0].name}' reads tensors nothing produces "
                    f"(or the graph has a cycle): {', '.join(missing[:5])}"
                )
            pending = rest
        self.nodes = ordered

    def copy(self) -> Graph:
        """A structural copy; static data arrays are shared (they are never written in place)."""
        import copy

        return Graph(
            self.name,
            {k: copy.copy(t) for k, t in self.tensors.items()},
            [Node(n.name, n.op_type, list(n.inputs), list(n.outputs), dict(n.attrs), n.package)
             for n in self.nodes],
            list(self.inputs),
            list(self.outputs),
            dict(self.metadata),
            set(self._reserved),
        )

    def input_tensors(self) -> list[Tensor]:
        return [self.tensors[n] for n in self.inputs]

    def output_tensors(self) -> list[Tensor]:
        return [self.tensors[n] for n in self.outputs]

