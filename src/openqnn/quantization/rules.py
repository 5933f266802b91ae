"""Annotation rules: which tensors of a graph get which kind of encoding.

Annotate first, materialize once: these rules only say what each tensor is (an activation, a
weight, a bias, something that shares another tensor's encoding, something with a fixed
encoding, or nothing); ``quantizer.py`` computes the numbers in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from openqnn.ir.graph import Graph
from openqnn.ir.tensor import TensorKind

__all__ = ["Role", "annotate"]

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
