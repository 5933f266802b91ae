"""Graph rewrites the htp backend applies before building its steps, where QNN's HTP computes a pattern
otherwise than op by op (``htp_config.arithmetic: "qnn"``, the archs whose arithmetic is established).

:func:`int8_right_operands`: the right operand of a MatMul of two 8-bit activations, when an op computes it
(through data movement: Reshape, Transpose), is written by that op as int8 at its own scale, zero point 0 (an
8-bit code of zero point 128), not in the 8-bit encoding the model gives the tensor: QNN uses in[1] as a
convolution's int8 weights (spec/qnn_matmul.py), and the producer's requantization writes them directly.
Established on Qualcomm's HTP simulator (onnxruntime-qnn 2.7.0, QNN 2.51) in the BERT-style encoder, whose
key and value come from FullyConnected -> Reshape -> Transpose (``tests/fidelity/attention_probe.py``,
docs/htp-fidelity.md "MatMul of two activations"):

- v73 (the zero point joins after rounding): the same values, except where the model's encoding saturates
  and int8 does not, or the reverse: a key of zero point 123 whose codes read 0 or 255 enters the product
  as -128 or 127 (not -123 or 132); every code of layer 1's Q.K^T with it (98.6% without).
- v68 (the zero point joins before the floor of the dropped bits): the producer's rounding with zero point 128
  differs from the model's by one on a few percent of the values: layer 0's Q.K^T is 100% identical with the
  key computed at zero point 128 (82.3% from the codes QNN writes out; zero points 126, 127, 129: 82-86%).

A graph output (or another consumer) of the original tensors keeps them: the rewrite clones the producer and
the movement chain for the MatMul, so what QNN writes out is the model's encoding, as the simulator shows.
A right operand that is a graph input (or data movement of one) is left to the MatMul's run-time conversion.

Only where the model's zero point is within ``128 +- 16`` (``INT8_WINDOW``): a zero point of 111 or below, 145 or
above, keeps the model's encoding, and the MatMul converts its out-of-range columns at run time (v68, the
64-token encoder's layer 0 value, zero point 110, and its key and value moved to zero points 104-152 with the
scale kept: 112-144 give the int8 clone's codes, every one; 111 and 145-148 the model's, every one).
"""

from __future__ import annotations

import dataclasses

from openqnn.ir.graph import Graph, Node

__all__ = ["INT8_WINDOW", "INT8_ZERO", "MOVEMENT", "int8_right_operands", "rewrite_for"]

MOVEMENT = ("Reshape", "Transpose")
INT8_ZERO = 128  # int8 zero point 0 as an 8-bit code's zero point (QNN's offset -128)
INT8_WINDOW = 16  # the model's zero point within 128 +- 16: written as int8; further off: left as it is


def rewrite_for(graph: Graph, arch: str, arithmetic: str) -> Graph:
    """``graph`` as the htp backend builds it: rewritten (a copy) where QNN's arithmetic asks for it, else the
    graph itself."""
    if arithmetic != "qnn" or arch not in ("v68", "v73"):
        return graph
    return int8_right_operands(graph)


def _per_tensor_8bit(graph: Graph, name: str) -> bool:
    t = graph.tensors.get(name)
    e = t.encoding if t is not None else None
    return (t is not None and not t.is_static and e is not None and e.bitwidth == 8 and len(e.scale) == 1
            and not e.is_signed and e.qmin is None and e.block_size is None)


def int8_right_operands(graph: Graph) -> Graph:
    """A copy of ``graph`` in which each MatMul of two 8-bit activations whose in[1] an op computes (through
    Reshape / Transpose) reads a clone of that op and chain whose tensors have zero point 128 (int8), or
    ``graph`` itself where there is none (module docstring)."""
    producers = graph.producers()
    todo: list[tuple[Node, list[Node]]] = []
    for node in graph.nodes:
        if node.op_type != "MatMul" or len(node.inputs) < 2:
            continue
        a, b = node.inputs[0], node.inputs[1]
        if not (_per_tensor_8bit(graph, a) and _per_tensor_8bit(graph, b)):
            continue
        zb = -graph.tensors[b].encoding.offset[0]  # type: ignore[union-attr]
        if zb == INT8_ZERO or abs(zb - INT8_ZERO) > INT8_WINDOW:
            continue  # already int8, or too far off: QNN keeps the model's encoding (run-time conversion)
        chain: list[Node] = []
        cur = b
        while (p := producers.get(cur)) is not None and p.op_type in MOVEMENT:
            if not _per_tensor_8bit(graph, p.inputs[0]) or graph.tensors[p.inputs[0]].encoding != graph.tensors[cur].encoding:
                break
            chain.append(p)
            cur = p.inputs[0]
        root = producers.get(cur)
        if root is None or root.op_type in MOVEMENT or len(root.outputs) != 1 or not _per_tensor_8bit(graph, cur):
            continue  # a graph input (or data movement of one): the MatMul converts it at run time
        todo.append((node, [root, *chain[::-1]]))
    if not todo:
        return graph
    g = graph.copy()
    for mm, ops in todo:
        mm_g = next(n for n in g.nodes if n.name == mm.name)
        prev_new: str | None = None
        index = next(i for i, n in enumerate(g.nodes) if n.name == mm.name)
        clones: list[Node] = []
        for op in ops:
            out = op.outputs[0]
            t = g.tensors[out]
            assert t.encoding is not None
            enc = dataclasses.replace(t.encoding, offset=(-INT8_ZERO,))
            new_name = g.unique_name(f"{out}__int8")
            g.add_tensor(dataclasses.replace(t, name=new_name, encoding=enc))
            inputs = list(op.inputs)
            if prev_new is not None:
                inputs[0] = prev_new
            clones.append(Node(g.unique_name(f"{op.name}__int8"), op.op_type, inputs, [new_name], dict(op.attrs),
                               op.package))
            prev_new = new_name
        for k, c in enumerate(clones):
            g.add_node(c, index + k)
        assert prev_new is not None
        mm_g.inputs = [mm_g.inputs[0], prev_new, *mm_g.inputs[2:]]
        # the originals nothing else reads (no other consumer, not a graph output) go, the chain's end first
        for op in ops[::-1]:
            out = op.outputs[0]
            if out in g.outputs or any(out in n.inputs for n in g.nodes):
                break
            g.nodes = [n for n in g.nodes if n.name != op.name]
            del g.tensors[out]
    return g
