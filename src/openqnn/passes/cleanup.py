"""Cleanup passes: transposes and reshapes that cancel or fold, dead nodes."""

from __future__ import annotations

import numpy as np

from openqnn.ir.graph import Graph, Node
from openqnn.ir.tensor import TensorKind
from openqnn.passes.manager import graph_pass


def bypass(graph: Graph, node: Node, source: str) -> bool:
    """Make the readers of ``node``'s single output read ``source``; False when the output is a graph
    output (its name is part of the model's interface)."""
    out = node.outputs[0]
    if out in graph.outputs:
        return False
    graph.replace_uses(out, source)
    graph.nodes.remove(node)
    del graph.tensors[out]
    return True


@graph_pass("fold_static_data_movement")
def fold_static_data_movement(graph: Graph) -> tuple[Graph, bool]:
    """Transpose/Reshape of a STATIC tensor becomes a STATIC tensor.

    before: %w' = Transpose(%w: STATIC) {perm=[2, 3, 1, 0]}
    after:  %w': STATIC (data transposed once)
    """
    changed = False
    for node in list(graph.nodes):
        if node.op_type not in ("Transpose", "Reshape") or not node.inputs[0]:
            continue
        src = graph.tensors[node.inputs[0]]
        out = node.outputs[0]
        if src.kind is not TensorKind.STATIC or out in graph.outputs:
            continue
        assert src.data is not None
        data = np.transpose(src.data, node.attrs["perm"]) if node.op_type == "Transpose" else src.data.reshape(
            node.attrs["shape"])
        t = graph.tensors[out]
        t.kind, t.data = TensorKind.STATIC, np.asarray(data, order="C")
        graph.nodes.remove(node)
        changed = True
    if changed:
        graph.remove_unused()
    return graph, changed


@graph_pass("cancel_transposes")
def cancel_transposes(graph: Graph) -> tuple[Graph, bool]:
    """Two Transposes in a row compose into one, or vanish when they cancel.

    before: %b = Transpose(%a) {perm=[0, 2, 3, 1]};  %c = Transpose(%b) {perm=[0, 3, 1, 2]}
    after:  (readers of %c read %a)
    """
    changed = False
    producers = graph.producers()
    for node in list(graph.nodes):
        if node.op_type != "Transpose":
            continue
        perm = node.attrs["perm"]
        if perm == tuple(range(len(perm))):
            changed |= bypass(graph, node, node.inputs[0])
            continue
        prev = producers.get(node.inputs[0])
        if prev is None or prev.op_type != "Transpose" or prev not in graph.nodes:
            continue
        composed = tuple(prev.attrs["perm"][p] for p in perm)
        node.inputs = [prev.inputs[0]]
        node.attrs = {"perm": composed}
        changed = True
    if changed:
        graph.remove_unused()
    return graph, changed


@graph_pass("simplify_reshapes")
def simplify_reshapes(graph: Graph) -> tuple[Graph, bool]:
    """Reshape to the same shape disappears; Reshape of a Reshape reads the first one's input.

    before: %b = Reshape(%a) {shape=[1, 64]};  %c = Reshape(%b) {shape=[64]}
    after:  %c = Reshape(%a) {shape=[64]}
    """
    changed = False
    producers = graph.producers()
    for node in list(graph.nodes):
        if node.op_type != "Reshape":
            continue
        src = node.inputs[0]
        if graph.tensors[src].shape == node.attrs["shape"]:
            changed |= bypass(graph, node, src)
            continue
        prev = producers.get(src)
        if prev is not None and prev.op_type == "Reshape" and prev in graph.nodes:
            node.inputs = [prev.inputs[0]]
            changed = True
    if changed:
        graph.remove_unused()
    return graph, changed


@graph_pass("remove_dead_nodes")
def remove_dead_nodes(graph: Graph) -> tuple[Graph, bool]:
    """Nodes whose outputs no one reads are removed."""
    return graph, graph.remove_unused() > 0
