"""The layout tracker shared by channel-first frontends (ONNX, and what is built on it: PyTorch, Caffe).

Every source value maps to a :class:`Value`: the IR tensor holding it, that tensor's layout relative to
the source tensor (``perm``: IR = source.transpose(perm); ``None`` for the source layout itself), and its
numpy value when it is known at conversion time (weights, constants, folded shape arithmetic). Constants
become STATIC IR tensors only when an IR node reads them, in the layout that node wants, so folded-away
weights never reach the graph.

Ops that work on channels (convolution, pooling, normalization, resize, ...) ask for their input
channel-last (``tracker.tensor(v, channel_last_perm(v.rank))``); layout-agnostic ops keep whatever layout
their inputs share; everything else asks for the source layout (``tracker.tensor(v)``). The transposes this
inserts cancel in the cleanup passes wherever two meet.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from openqnn.errors import ConversionError
from openqnn.ir.dtype import DType
from openqnn.ir.graph import Graph
from openqnn.ops.build import emit

__all__ = ["LayoutTracker", "Perm", "Value", "channel_last_perm", "inverse", "is_identity"]

Perm = tuple[int, ...]


def channel_last_perm(rank: int) -> Perm:
    """Channel-first -> channel-last: (0, 2, ..., rank-1, 1)."""
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
    """What a source value is inside the IR (see the module docstring)."""

    name: str | None  # IR tensor; None while the value is a constant not yet materialized
    shape: tuple[int, ...]  # source-layout shape
    dtype: DType
    perm: Perm | None = None
    const: np.ndarray | None = None  # source-layout value when known
    hint: str = ""  # the source name, used to name the IR tensor when a constant is materialized

    @property
    def rank(self) -> int:
        return len(self.shape)


class LayoutTracker:
    """The IR graph under construction and the source-name -> :class:`Value` map, with the layouts of both."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.values: dict[str, Value] = {}
        self._materialized: dict[tuple[str, Perm | None], str] = {}
        self._keepalive: dict[int, np.ndarray] = {}

    def value(self, name: str) -> Value:
        try:
            return self.values[name]
        except KeyError:
            raise ConversionError(f"'{name}' is not produced by any earlier node") from None

    def tensor(self, v: Value | str, perm: Perm | None = None) -> str:
        """The IR tensor of ``v`` in layout ``perm`` (None: source layout), adding a Transpose if needed."""
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
            self._materialized[key] = emit(self.graph, "Transpose", [v.name], {"perm": q},
                                               name=f"{v.name}_transpose")[0]
        return self._materialized[key]

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
