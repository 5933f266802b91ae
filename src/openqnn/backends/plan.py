"""Prepared steps as data: what a backend's prepare decides, in a form a context binary can hold.

A :class:`StepPlan` names a registered kernel and carries everything prepare computed for one node:
attributes (JSON values) and operands (named numpy arrays: tables, packed weights, multipliers). A
binder, registered under the kernel's name, turns it into callables without analysing anything again,
so a plan read back from a file runs exactly as the one prepare made. Kernels move to this form one
family at a time; the htp executor runs steps of either form (issue 12).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from openqnn.errors import UnsupportedOpError
from openqnn.ir.graph import Graph
from openqnn.ir.tensor import TensorKind

__all__ = ["PreparedGraph", "StepPlan", "io_graph"]


@dataclass(frozen=True)
class StepPlan:
    """One node's prepared step: ``kernel`` (a registered binder's name), the run-time ``inputs`` it reads
    and the ``outputs`` it writes, ``attrs`` (JSON values) and ``arrays`` (named operands)."""

    kernel: str
    node: str
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)
    arrays: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        json.dumps(dict(self.attrs), allow_nan=False)  # a plan holds data only: fail at prepare, not on save

    def to_json(self) -> dict[str, Any]:
        """The plan without its arrays (they are stored by name beside it)."""
        return {"kernel": self.kernel, "node": self.node, "op_type": self.op_type, "inputs": list(self.inputs),
                "outputs": list(self.outputs), "attrs": dict(self.attrs), "arrays": sorted(self.arrays)}

    @staticmethod
    def from_json(doc: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> StepPlan:
        """The plan of :meth:`to_json` with ``arrays`` (name -> array) looked up by the names it lists."""
        return StepPlan(doc["kernel"], doc["node"], doc["op_type"], tuple(doc["inputs"]), tuple(doc["outputs"]),
                        dict(doc["attrs"]), {name: arrays[name] for name in doc["arrays"]})


Binder = Callable[..., Any]


@dataclass(frozen=True)
class PreparedGraph:
    """A graph prepared for a backend, as data: the backend and arch it was prepared for, ``io`` (a graph
    holding only the inputs and outputs, with their encodings) and the steps in execution order."""

    backend: str
    arch: str | None
    io: Any  # openqnn.ir.graph.Graph (inputs and outputs only)
    steps: tuple[StepPlan, ...]


def io_graph(graph: Graph) -> Graph:
    """A graph of ``graph``'s inputs and outputs only, with their encodings and no data (what running a
    prepared graph needs of it); a constant output is refused, a context binary holds computed outputs."""
    io = Graph(graph.name)
    for name in dict.fromkeys([*graph.inputs, *graph.outputs]):
        t = graph.tensors[name]
        if t.kind is TensorKind.STATIC:
            raise UnsupportedOpError(f"output '{name}' is a constant; a context binary holds computed outputs")
        io.add_tensor(replace(t, data=None))
    io.inputs, io.outputs = list(graph.inputs), list(graph.outputs)
    return io
