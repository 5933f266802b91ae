"""Annotation rules: which tensors of a graph get which kind of encoding.

Annotate first, materialize once: these rules only say what each tensor is (an activation, a
weight, a bias, something that shares another tensor's encoding, something with a fixed
encoding, or nothing); ``quantizer.py`` computes the numbers in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from openqnn.ir.graph import Graph
from openqnn.ir.tensor import TensorKind

__all__ = ["Role", "annotate", "untie_static_uses"]

# ops whose output is its (first) input rearranged: one encoding on both sides
DATA_MOVEMENT = frozenset({
    "Reshape", "Transpose", "Split", "StridedSlice", "Gather", "GatherElements", "GatherNd", "Tile",
    "DepthToSpace", "SpaceToDepth", "PoolMax2d", "PoolMax3d", "ReduceMax", "ReduceMin", "Pad",
})
# weight input index and its output-channel axis, per op
WEIGHTED = {"Conv2d": (1, 3), "DepthWiseConv2d": (1, 3), "TransposeConv2d": (1, 3), "Conv3d": (1, 4),
            "TransposeConv3d": (1, 4), "FullyConnected": (1, 0), "MatMul": (1, -1)}
# ops whose weights take per-block encodings: blocks along the reduction (input-channel) axis
BLOCKED = frozenset({"Conv2d", "FullyConnected", "MatMul"})
BIASED = {"Conv2d", "DepthWiseConv2d", "TransposeConv2d", "Conv3d", "TransposeConv3d", "FullyConnected"}
# ops whose input 2 is an additive bias on input 0 times a static input 1 that is no WEIGHTED weight: a
# 32-bit bias of scale s_in x s_gamma, as QNN takes LayerNorm's beta (ONNX Runtime's QDQ node unit of a
# LayerNormalization needs an int32 bias: with an 8-bit one QNN EP runs the op on floats)
SCALED_BIAS = frozenset({"LayerNorm"})
# ops that clamp to [lo, hi] and can take over their producer's encoding (Conv + ReLU squash)
CLAMPS = frozenset({"Relu", "ReluMinMax"})
# fixed output ranges: op -> (min, max) in real values
FIXED = {"Sigmoid": (0.0, 1.0), "Softmax": (0.0, 1.0), "Tanh": (-1.0, 1.0)}


@dataclass(frozen=True)
class Role:
    """kind: "act" (calibrated activation), "param" (weight; axis for per-channel), "bias"
    (32-bit, scale from input x weight), "shared" (same encoding as ``source``), "fixed"
    (the op's fixed output range), "const" (a static operand of an element-wise op: per-tensor
    param encoding)."""

    kind: str
    source: str | None = None  # shared: tensor whose encoding this one takes; bias: the op's input
    weight: str | None = None  # bias: the op's weight
    axis: int | None = None  # param: channel axis
    op: str | None = None  # fixed: the op type
    channel_axis: int | None = None  # param of a BLOCKED op: its output-channel axis (whatever ``axis`` is)
    block_axis: int | None = None  # param of a BLOCKED op: its reduction axis, along which blocks run


def _quantizable(graph: Graph, name: str) -> bool:
    t = graph.tensors.get(name)
    return t is not None and t.dtype.is_float


def _block_axes(op: str, rank: int, transposed: bool) -> tuple[int, int]:
    """(output-channel axis, reduction axis) of a BLOCKED op's weight."""
    if op == "Conv2d":  # [kh, kw, cin, cout]
        return rank - 1, rank - 2
    if op == "FullyConnected":  # [units, k]
        return 0, 1
    return (rank - 2, rank - 1) if transposed else (rank - 1, rank - 2)  # MatMul in1: [..., k, n] / [..., n, k]


def _use_key(node_op: str, attrs: dict[str, Any], idx: int, inputs: list[str]) -> tuple[Any, ...]:
    """What a static operand's encoding depends on at one use: uses with equal keys can share it."""
    if node_op in WEIGHTED and idx == WEIGHTED[node_op][0]:
        return ("param", node_op, bool(attrs.get("transpose_in1")))
    if (node_op in BIASED or node_op in SCALED_BIAS) and idx == 2:
        return ("bias", inputs[0], inputs[1])  # scale = s_in x s_w: per input and weight
    return ("const",)


def untie_static_uses(graph: Graph) -> dict[str, str]:
    """Give a static tensor one copy per kind of use, in place; returns each copy's original name.

    Exporters share initializers with equal values (PyTorch's dynamo exporter folds every all-zero
    bias of a freshly initialised model into one tensor; ALBERT shares its layers' weights), so
    one static tensor can be a FullyConnected bias (per-channel, 32-bit, scale s_in x s_w), the
    bias of another FullyConnected with another input, and an ElementWiseAdd operand (per-tensor)::

        fc1 = FullyConnected(x, w1, b)    add = ElementWiseAdd(y, b)    fc2 = FullyConnected(z, w2, b)
     -> fc1 = FullyConnected(x, w1, b)    add = ElementWiseAdd(y, b_1)  fc2 = FullyConnected(z, w2, b_2)

    Uses whose encodings cannot differ (the same weight in two FullyConnected nodes) keep sharing. An
    override naming the original tensor applies to its copies too (it was one tensor in the model).
    """
    first: dict[str, tuple[Any, ...]] = {}
    copies: dict[tuple[str, tuple[Any, ...]], str] = {}
    for node in graph.nodes:
        for i, x in enumerate(node.inputs):
            t = graph.tensors.get(x) if x else None
            if t is None or t.kind is not TensorKind.STATIC or not t.dtype.is_float:
                continue
            key = _use_key(node.op_type, node.attrs, i, node.inputs)
            if first.setdefault(x, key) == key:
                continue
            if (x, key) not in copies:
                copies[x, key] = graph.add_tensor(replace(t, name=graph.unique_name(x), encoding=None)).name
            node.inputs[i] = copies[x, key]
    return {copy: original for (original, _), copy in copies.items()}


def annotate(graph: Graph, per_channel: bool, per_row: bool) -> dict[str, Role]:
    """Roles for every float tensor that should carry an encoding."""
    roles: dict[str, Role] = {}
    consumers = graph.consumers()
    for name in graph.inputs:
        if _quantizable(graph, name):
            roles[name] = Role("act")
    for node in graph.nodes:
        # weights and biases
        if node.op_type in WEIGHTED and len(node.inputs) > 1:
            idx, axis = WEIGHTED[node.op_type]
            w = node.inputs[idx]
            if graph.tensors[w].kind is TensorKind.STATIC and _quantizable(graph, w):
                rank = graph.tensors[w].rank
                want = per_channel if node.op_type not in ("FullyConnected", "MatMul") else per_row
                if node.op_type == "MatMul":
                    axis = rank - 1
                channel_axis = block_axis = None
                if node.op_type in BLOCKED and rank >= 2:
                    channel_axis, block_axis = _block_axes(node.op_type, rank, bool(node.attrs.get("transpose_in1")))
                roles[w] = Role("param", axis=axis % rank if want else None, channel_axis=channel_axis,
                                block_axis=block_axis)
            if node.op_type in BIASED and len(node.inputs) > 2 and node.inputs[2]:
                b = node.inputs[2]
                if graph.tensors[b].kind is TensorKind.STATIC:
                    roles[b] = Role("bias", source=node.inputs[0], weight=w)
        if node.op_type in SCALED_BIAS and len(node.inputs) > 2 and node.inputs[1] and node.inputs[2]:
            g, b = node.inputs[1], node.inputs[2]
            if all(graph.tensors[t].kind is TensorKind.STATIC and _quantizable(graph, t) for t in (g, b)):
                roles[b] = Role("bias", source=node.inputs[0], weight=g)
        for x in node.inputs:
            if x and x not in roles and graph.tensors[x].kind is TensorKind.STATIC and _quantizable(graph, x):
                roles[x] = Role("const")
        # outputs
        for out in node.outputs:
            if not _quantizable(graph, out):
                continue
            src = node.inputs[0] if node.inputs else ""
            if node.op_type in DATA_MOVEMENT and src and _quantizable(graph, src):
                roles[out] = Role("shared", source=src)
            elif node.op_type in FIXED:
                roles[out] = Role("fixed", op=node.op_type)
            else:
                roles[out] = Role("act")
    # Conv/FC/Add + ReLU: the producer's output takes the clamp's encoding (QNN squashes the ReLU)
    producers = graph.producers()
    for node in graph.nodes:
        if node.op_type not in CLAMPS:
            continue
        src = node.inputs[0]
        prev = producers.get(src)
        if (prev is not None and roles.get(src, Role("")).kind == "act" and len(consumers.get(src, [])) == 1
                and src not in graph.outputs and prev.op_type not in DATA_MOVEMENT):
            roles[src] = Role("shared", source=node.outputs[0])
    return roles
