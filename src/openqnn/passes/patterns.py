"""Pattern fusions: decomposed activations (as older exporters write them) back into one QNN op,
and cheap layout rewrites."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from openqnn.ir.graph import Graph, Node
from openqnn.ir.tensor import TensorKind
from openqnn.passes.manager import graph_pass


class _View:
    """Producer/consumer lookups over a graph that is being rewritten."""

    def __init__(self, graph: Graph):
        self.g = graph
        self.prod = graph.producers()
        self.cons = graph.consumers()

    def scalar(self, name: str) -> float | None:
        t = self.g.tensors.get(name)
        if t is None or t.kind is not TensorKind.STATIC or t.data is None or t.data.size != 1:
            return None
        return float(np.asarray(t.data).reshape(-1)[0])

    def only_user(self, name: str, op_type: str) -> Node | None:
        users = self.cons.get(name, [])
        if len(users) == 1 and users[0].op_type == op_type and name not in self.g.outputs:
            return users[0]
        return None

    def other_input(self, node: Node, name: str) -> str | None:
        if len(node.inputs) != 2 or name not in node.inputs:
            return None
        return node.inputs[1] if node.inputs[0] == name else node.inputs[0]


def _close(a: float | None, b: float, tol: float = 1e-4) -> bool:
    return a is not None and abs(a - b) <= tol * max(1.0, abs(b))


def _replace(graph: Graph, first: Node, dead: list[Node], op_type: str, x: str, out: str,
             attrs: dict | None = None) -> None:
    """Put one ``op_type(x) -> out`` node where ``first`` stood and drop the matched nodes."""
    idx = graph.nodes.index(first)
    for n in dead:
        graph.nodes.remove(n)
    graph.add_node(Node(first.name, op_type, [x], [out], attrs or {}), min(idx, len(graph.nodes)))


def _rewrite_each(graph: Graph, rewrite: Callable[[Node, _View], bool]) -> tuple[Graph, bool]:
    """Offer every node (in the order before rewriting) to ``rewrite``, which returns whether it
    rewrote the graph there; lookups are rebuilt after each rewrite, dead tensors dropped at the end."""
    changed = False
    v = _View(graph)
    for node in list(graph.nodes):
        if rewrite(node, v):
            changed = True
            v = _View(graph)
    if changed:
        graph.remove_unused()
    return graph, changed


@graph_pass("fuse_gelu")
def fuse_gelu(graph: Graph) -> tuple[Graph, bool]:
    """The erf form of GELU becomes one Gelu.

    before: %a = ElementWiseDivide(%x, 1.4142); %b = ElementWiseErf(%a); %c = ElementWiseAdd(%b, 1)
            %d = ElementWiseMultiply(%x, %c);   %y = ElementWiseMultiply(%d, 0.5)
    after:  %y = Gelu(%x)
    """
    def rewrite(erf: Node, v: _View) -> bool:
        if erf.op_type != "ElementWiseErf":
            return False
        scale = v.prod.get(erf.inputs[0])
        if scale is None or len(v.cons.get(erf.inputs[0], [])) != 1:
            return False
        x: str | None = None
        if scale.op_type == "ElementWiseDivide" and _close(v.scalar(scale.inputs[1]), math.sqrt(2)):
            x = scale.inputs[0]
        elif scale.op_type == "ElementWiseMultiply":
            x = next((a for a, b in (scale.inputs, scale.inputs[::-1]) if _close(v.scalar(b), 1 / math.sqrt(2))), None)
        if x is None:
            return False
        add = v.only_user(erf.outputs[0], "ElementWiseAdd")
        if add is None or not _close(v.scalar(v.other_input(add, erf.outputs[0]) or ""), 1.0):
            return False
        m1 = v.only_user(add.outputs[0], "ElementWiseMultiply")
        if m1 is None:
            return False
        other = v.other_input(m1, add.outputs[0])
        if other == x:  # x * (1 + erf) * 0.5
            m2 = v.only_user(m1.outputs[0], "ElementWiseMultiply")
            if m2 is None or not _close(v.scalar(v.other_input(m2, m1.outputs[0]) or ""), 0.5):
                return False
            last = m2
        else:  # (x * 0.5) * (1 + erf)
            half = v.prod.get(other or "")
            if half is None or half.op_type != "ElementWiseMultiply" or len(v.cons.get(half.outputs[0], [])) != 1:
                return False
            if not (half.inputs[0] == x and _close(v.scalar(half.inputs[1]), 0.5)):
                return False
            last = m1
            m2 = half
        if graph.tensors[x].shape != graph.tensors[last.outputs[0]].shape:
            return False
        _replace(graph, scale, [scale, erf, add, m1, m2], "Gelu", x, last.outputs[0], {"approximate": "none"})
        return True

    return _rewrite_each(graph, rewrite)


@graph_pass("fuse_hardswish")
def fuse_hardswish(graph: Graph) -> tuple[Graph, bool]:
    """x * relu6(x + 3) / 6 and x * HardSigmoid(x; 1/6, 0.5) become one HardSwish.

    before: %a = ElementWiseAdd(%x, 3); %b = ReluMinMax(%a) {0, 6}; %c = ElementWiseMultiply(%x, %b)
            %y = ElementWiseDivide(%c, 6)
    after:  %y = HardSwish(%x)
    """
    def rewrite(node: Node, v: _View) -> bool:
        if node.op_type == "HardSigmoid" and _close(node.attrs["alpha"], 1 / 6) and _close(node.attrs["beta"], 0.5):
            x = node.inputs[0]
            mul = v.only_user(node.outputs[0], "ElementWiseMultiply")
            if mul is None or v.other_input(mul, node.outputs[0]) != x:
                return False
            _replace(graph, node, [node, mul], "HardSwish", x, mul.outputs[0])
            return True
        if node.op_type != "ReluMinMax" or node.attrs["min_value"] != 0.0 or node.attrs["max_value"] != 6.0:
            return False
        add = v.prod.get(node.inputs[0])
        if add is None or add.op_type != "ElementWiseAdd" or len(v.cons.get(add.outputs[0], [])) != 1:
            return False
        x3 = next((a for a, b in (add.inputs, add.inputs[::-1]) if _close(v.scalar(b), 3.0)), None)
        mul = v.only_user(node.outputs[0], "ElementWiseMultiply")
        if x3 is None or mul is None or v.other_input(mul, node.outputs[0]) != x3:
            return False
        div = v.only_user(mul.outputs[0], "ElementWiseDivide")
        last: Node | None = div if div is not None and _close(v.scalar(div.inputs[1]), 6.0) else None
        if last is None:
            last = v.only_user(mul.outputs[0], "ElementWiseMultiply")
            if last is None or not _close(v.scalar(v.other_input(last, mul.outputs[0]) or ""), 1 / 6):
                return False
        if graph.tensors[x3].shape != graph.tensors[last.outputs[0]].shape:
            return False
        _replace(graph, add, [add, node, mul, last], "HardSwish", x3, last.outputs[0])
        return True

    return _rewrite_each(graph, rewrite)


@graph_pass("fold_fc_bias_add")
def fold_fc_bias_add(graph: Graph) -> tuple[Graph, bool]:
    """A constant vector added after a bias-less FullyConnected becomes its bias (MatMul + Add).

    before: %m = FullyConnected(%x, %w) {keep_dims}; %y = ElementWiseAdd(%m, %b: STATIC [units])
    after:  %y = FullyConnected(%x, %w, %b) {keep_dims}
    """
    def rewrite(fc: Node, v: _View) -> bool:
        if fc.op_type != "FullyConnected" or (len(fc.inputs) > 2 and fc.inputs[2]):
            return False
        add = v.only_user(fc.outputs[0], "ElementWiseAdd")
        if add is None:
            return False
        b = v.other_input(add, fc.outputs[0])
        units = graph.tensors[fc.inputs[1]].shape[0]
        bt = graph.tensors.get(b or "")
        if bt is None or bt.kind is not TensorKind.STATIC or bt.data is None or bt.data.size != units:
            return False
        if bt.shape[-1:] != (units,) or graph.tensors[add.outputs[0]].shape != graph.tensors[fc.outputs[0]].shape:
            return False
        bias = graph.add_constant(b or "bias", bt.data.reshape(units)).name if bt.rank != 1 else bt.name
        fc.inputs = [fc.inputs[0], fc.inputs[1], bias]
        out = add.outputs[0]
        graph.nodes.remove(add)
        del graph.tensors[fc.outputs[0]]
        fc.outputs = [out]
        return True

    return _rewrite_each(graph, rewrite)


@graph_pass("transpose_to_reshape")
def transpose_to_reshape(graph: Graph) -> tuple[Graph, bool]:
    """A Transpose that only moves size-1 dims is a Reshape (no data moves).

    before: %y = Transpose(%x: (1, 1, 1, 64)) {perm=[0, 3, 1, 2]} : (1, 64, 1, 1)
    after:  %y = Reshape(%x) {shape=[1, 64, 1, 1]}
    """
    changed = False
    for i, node in enumerate(graph.nodes):
        if node.op_type != "Transpose":
            continue
        shape = graph.tensors[node.inputs[0]].shape
        moved = [p for p in node.attrs["perm"] if shape[p] != 1]
        if moved == sorted(moved):
            out_shape = graph.tensors[node.outputs[0]].shape
            graph.nodes[i] = Node(node.name, "Reshape", node.inputs, node.outputs, {"shape": out_shape})
            changed = True
    return graph, changed
