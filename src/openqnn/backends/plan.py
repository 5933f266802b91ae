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
from typing import TYPE_CHECKING, Any

import numpy as np

from openqnn.errors import UnsupportedOpError
from openqnn.ir.graph import Graph
from openqnn.ir.tensor import TensorKind

if TYPE_CHECKING:
    import torch

__all__ = ["ATTR_ARRAY_PREFIX", "PreparedGraph", "StepPlan", "borrow", "io_graph"]


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
        # a plan holds data only: fail at prepare, not on save (numpy arrays in attrs are stored beside them)
        json.dumps(dict(self.attrs), allow_nan=False, default=_array_leaf)

    def to_json(self) -> dict[str, Any]:
        """The plan without its arrays (they are stored by name beside it: :meth:`to_data`)."""
        return self.to_data()[0]

    def stored_arrays(self) -> dict[str, np.ndarray]:
        """The arrays a context stores for this plan: its ``arrays`` and the arrays inside its ``attrs``."""
        return self.to_data()[1]

    def to_data(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The plan as JSON and the arrays stored beside it, in one walk of its attributes. Numpy arrays
        inside ``attrs`` (per-channel constants a kernel recorded) are stored as arrays too, named by their
        path: the JSON's ``attr_arrays`` maps each path to its array's name."""
        attrs, found = _externalize(self.attrs, "")
        doc = {"kernel": self.kernel, "node": self.node, "op_type": self.op_type, "inputs": list(self.inputs),
               "outputs": list(self.outputs), "attrs": attrs, "arrays": sorted(self.arrays)}
        if found:
            doc["attr_arrays"] = {path: ATTR_ARRAY_PREFIX + path for path in found}
        return doc, {**self.arrays, **{ATTR_ARRAY_PREFIX + path: a for path, a in found.items()}}

    @staticmethod
    def from_json(doc: Mapping[str, Any], arrays: Mapping[str, np.ndarray], prefix: str = "") -> StepPlan:
        """The plan of :meth:`to_json` with ``arrays`` (name -> array) looked up by the names it lists (each
        after ``prefix``: a context's arrays are named ``<step>/<name>``). Its attributes were read from JSON,
        so they are JSON: not checked again (opening stays cheap)."""
        attrs = dict(doc["attrs"])
        for path, name in doc.get("attr_arrays", {}).items():
            *parents, leaf = path.split("/")
            d = attrs
            for key in parents:  # copied on the way down: the document itself is left as it was
                d[key] = d = dict(d[key])
            d[leaf] = arrays[prefix + name]
        plan = object.__new__(StepPlan)
        values = (str(doc["kernel"]), str(doc["node"]), str(doc["op_type"]), tuple(doc["inputs"]),
                  tuple(doc["outputs"]), attrs, {name: arrays[prefix + name] for name in doc["arrays"]})
        plan.__dict__.update(zip(_FIELDS, values))  # (a frozen dataclass's fields, set as its __init__ would)
        return plan


ATTR_ARRAY_PREFIX = "@"


def _array_leaf(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return None
    raise TypeError(f"a plan attribute holds a {type(value).__name__}, which is not data (JSON values and numpy "
                    "arrays only)")


def _externalize(value: Any, path: str) -> tuple[Any, dict[str, np.ndarray]]:
    """``value`` with its numpy arrays taken out (None in their place), and those arrays by path."""
    if isinstance(value, np.ndarray):
        return None, {path: value}
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        found: dict[str, np.ndarray] = {}
        for k, v in value.items():
            if "/" in k:
                raise ValueError(f"plan attribute key {k!r} holds '/', which names array paths")
            out[k], sub = _externalize(v, f"{path}/{k}" if path else k)
            found.update(sub)
        return out, found
    return value, {}


_FIELDS = ("kernel", "node", "op_type", "inputs", "outputs", "attrs", "arrays")
assert _FIELDS == tuple(StepPlan.__dataclass_fields__)
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


def borrow(a: np.ndarray) -> torch.Tensor:
    """A plan's array as a CPU tensor for a kernel that only reads it: no copy where it is contiguous and 64-byte
    aligned (AVX-512 loads within cache lines; a context's arrays are read-only views of a copy-on-write mapping, so
    nothing could fault or reach the file), an aligned copy (PyTorch's allocator) otherwise."""
    import torch  # (here: importing openqnn, and reading a context, stays without PyTorch)

    if a.flags.c_contiguous and a.ctypes.data % 64 == 0:
        if a.flags.writeable:
            return torch.from_numpy(a)
        view = a.view()
        try:
            view.flags.writeable = True  # (allowed where the memory under it is writable: the mapping's copy)
            return torch.from_numpy(view)
        except ValueError:
            pass
    out = torch.empty(a.shape, dtype=torch.from_numpy(np.empty(0, a.dtype)).dtype)
    out.numpy()[...] = a
    return out
