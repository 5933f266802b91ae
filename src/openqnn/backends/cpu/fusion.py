"""Plan-level fusions of the cpu backend: which IR nodes run as one step.

* :func:`fuse_epilogues`: a convolution / FullyConnected with the element-wise ops that only it
  feeds -- ``ElementWiseAdd`` of a same-shape tensor, then ``Relu`` or ``ReluMinMax`` -- which
  oneDNN applies as post-ops while the result is still in cache;
* :func:`share_gemms`: FullyConnected nodes reading one input (attention's query, key and value
  projections) as one GEMM over the stacked weights.

The math is the same; only intermediates are never written out and calls are saved. These run at
prepare time only: the groups are recorded in the cpu step plans (:mod:`openqnn.backends.cpu.steps`).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

from openqnn.backends.cpu.kernels import BuildContext, Step
from openqnn.backends.cpu.kernels.conv import Epilogue, build_conv2d
from openqnn.backends.cpu.kernels.linear import (
    build_fully_connected,
    build_fully_connected_siblings,
    can_share_gemm,
)
from openqnn.ir.graph import Graph, Node

__all__ = ["EPILOGUE_BUILDERS", "Fusion", "SharedGemm", "fuse_epilogues", "share_gemms"]

# op types whose kernels take an Epilogue, and their builders
EPILOGUE_BUILDERS = {"Conv2d": build_conv2d, "DepthWiseConv2d": build_conv2d,
                     "FullyConnected": build_fully_connected}


@dataclass
class Fusion:
    """``head`` (a convolution / FullyConnected) runs ``epilogue`` in place of the ``absorbed`` nodes.

    Its step runs where the last absorbed node ran: every input (the add's other operand too)
    exists by then.
    """

    head: Node
    absorbed: list[Node]
    epilogue: Epilogue

    @property
    def nodes(self) -> list[Node]:
        return [self.head, *self.absorbed]

    @property
    def at(self) -> str:
        return self.absorbed[-1].name

    @property
    def op_type(self) -> str:
        return "+".join(n.op_type for n in self.nodes)

    def build(self, ctx: BuildContext) -> Step:
        step = EPILOGUE_BUILDERS[self.head.op_type](self.head, ctx, self.epilogue)
        step.outputs = list(self.absorbed[-1].outputs)
        return step


@dataclass
class SharedGemm:
    """FullyConnected nodes reading the same input, run as one GEMM where the first one ran."""

    nodes: list[Node]

    @property
    def at(self) -> str:
        return self.nodes[0].name

    @property
    def op_type(self) -> str:
        return f"FullyConnected*{len(self.nodes)}"

    def build(self, ctx: BuildContext) -> Step:
        step = build_fully_connected_siblings(self.nodes, ctx)
        step.outputs = [n.outputs[0] for n in self.nodes]
        return step


def fuse_epilogues(graph: Graph) -> list[Fusion]:
    """Each convolution / FullyConnected with the element-wise ops that only it feeds.

    A node is absorbed only when it is the sole reader of the previous output and that output is
    not a graph output, so nothing else ever needed the intermediates.
    """
    consumers = graph.consumers()
    outputs = set(graph.outputs)

    def sole_reader(name: str) -> Node | None:
        readers = consumers.get(name, [])
        if name in outputs or len(readers) != 1 or len(readers[0].outputs) != 1:
            return None
        return readers[0]

    fusions = []
    absorbed_anywhere: set[str] = set()  # an Add of two convolutions' outputs joins the first one only
    for node in graph.nodes:
        if node.op_type not in EPILOGUE_BUILDERS or len(node.outputs) != 1 or node.name in absorbed_anywhere:
            continue
        y = graph.tensors[node.outputs[0]]
        if not y.dtype.is_float:
            continue
        absorbed: list[Node] = []
        add = ""
        nxt = sole_reader(y.name)
        if nxt is not None and nxt.name in absorbed_anywhere:
            continue
        if nxt is not None and nxt.op_type == "ElementWiseAdd" and len(nxt.inputs) == 2:
            other = nxt.inputs[1] if nxt.inputs[0] == y.name else nxt.inputs[0]
            t = graph.tensors[other]
            if other != y.name and t.shape == y.shape and t.dtype is y.dtype:
                add = other
                absorbed.append(nxt)
                nxt = sole_reader(nxt.outputs[0])
        clamp = _clamp_of(nxt) if nxt is not None else None
        if nxt is not None and clamp is not None:
            absorbed.append(nxt)
        if absorbed:
            absorbed_anywhere.update(n.name for n in absorbed)
            fusions.append(Fusion(node, absorbed, Epilogue(add, clamp)))
    return fusions


def _clamp_of(node: Node) -> tuple[float, float] | None:
    """The (lo, hi) bounds of a Relu / ReluMinMax node, None for other ops."""
    if node.op_type == "Relu":
        return 0.0, math.inf
    if node.op_type == "ReluMinMax":
        return float(node.attrs["min_value"]), float(node.attrs["max_value"])
    return None


def share_gemms(graph: Graph, ctx: BuildContext, exclude: Collection[str] = ()) -> list[SharedGemm]:
    """Groups of two or more FullyConnected nodes (not in ``exclude``) with one input and static weights."""
    by_input: dict[str, list[Node]] = {}
    for node in graph.nodes:
        if node.name not in exclude and can_share_gemm(node, ctx):
            by_input.setdefault(node.inputs[0], []).append(node)
    return [SharedGemm(nodes) for nodes in by_input.values() if len(nodes) > 1]
