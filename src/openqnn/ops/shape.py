"""Data movement: Reshape, Transpose, Concat, Split, StridedSlice, Gather*, Scatter*, Pad, Tile,
DepthToSpace, SpaceToDepth. None of these change values, only where they sit."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from openqnn.errors import InvalidModelError
from openqnn.ops.schema import Attr, TType, norm_axis, op


def _prod(shape: Sequence[int]) -> int:
    return int(np.prod(shape, dtype=np.int64))


@op("Reshape", ["in"], attrs=(Attr("shape", "ints"),))
def _reshape(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    """Same data, new static shape (QNN reads it from the output tensor; the IR keeps it here too)."""
    shape = attrs["shape"]
    if _prod(shape) != _prod(ins[0].shape):
        raise InvalidModelError(f"Reshape: cannot reshape {ins[0].shape} to {shape}")
    return [TType(tuple(shape), ins[0].dtype)]


@op("Transpose", ["in"], attrs=(Attr("perm", "ints"),))
def _transpose(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    """out.shape[i] = in.shape[perm[i]]."""
    perm, shape = attrs["perm"], ins[0].shape
    if sorted(perm) != list(range(len(shape))):
        raise InvalidModelError(f"Transpose: perm {perm} is not a permutation of rank {len(shape)}")
    return [TType(tuple(shape[p] for p in perm), ins[0].dtype)]


@op("Concat", ["in*"], attrs=(Attr("axis", "int"),))
def _concat(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    """Join along axis; other dims must match."""
    rank = len(ins[0].shape)
    ax = norm_axis(attrs["axis"], rank)
    for t in ins[1:]:
        if len(t.shape) != rank or any(a != b for i, (a, b) in enumerate(zip(t.shape, ins[0].shape)) if i != ax):
            raise InvalidModelError(f"Concat: shapes {[t.shape for t in ins]} differ off axis {ax}")
    total = sum(t.shape[ax] for t in ins)
    return [TType(tuple(total if i == ax else d for i, d in enumerate(ins[0].shape)), ins[0].dtype)]


@op("Split", ["in"], outputs=("out*",), attrs=(Attr("axis", "int"), Attr("split_index", "ints")))
def _split(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    """Cut along axis at the (increasing) positions split_index; len(split_index)+1 outputs."""
    x = ins[0]
    ax = norm_axis(attrs["axis"], len(x.shape))
    bounds = [0, *attrs["split_index"], x.shape[ax]]
    if any(b < a for a, b in itertools.pairwise(bounds)):
        raise InvalidModelError(f"Split: split_index {attrs['split_index']} does not fit axis size {x.shape[ax]}")
    return [TType(tuple(b - a if i == ax else d for i, d in enumerate(x.shape)), x.dtype)
            for a, b in itertools.pairwise(bounds)]


def slice_len(begin: int, end: int, stride: int) -> int:
    if stride > 0:
        return max(0, (end - begin + stride - 1) // stride)
    return max(0, (begin - end - stride - 1) // -stride)


@op("StridedSlice", ["in"], attrs=(Attr("ranges", "ints2d", doc="[[begin, end, stride]] per dim, already clamped"),))
def _strided_slice(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    """Per dim, elements begin, begin+stride, ... up to (not including) end. end may be -1 for
    negative strides running past index 0."""
    x = ins[0]
    if len(attrs["ranges"]) != len(x.shape):
        raise InvalidModelError(f"StridedSlice: {len(attrs['ranges'])} ranges for rank {len(x.shape)}")
    return [TType(tuple(slice_len(b, e, s) for b, e, s in attrs["ranges"]), x.dtype)]


@op("Gather", ["in", "indices"], attrs=(Attr("axis", "int", 0),))
def _gather(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    """out = take(in, indices, axis); out rank = rank(in) - 1 + rank(indices)."""
    x, idx = ins
    ax = norm_axis(attrs["axis"], len(x.shape))
    return [TType((*x.shape[:ax], *idx.shape, *x.shape[ax + 1:]), x.dtype)]


@op("GatherElements", ["in", "indices"], attrs=(Attr("axis", "int", 0),))
def _gather_elements(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    """out[i][j] = in[index[i][j]][j] along axis (torch.gather)."""
    norm_axis(attrs["axis"], len(ins[0].shape))
    return [TType(ins[1].shape, ins[0].dtype)]


@op("GatherNd", ["in", "indices"], attrs=(Attr("batch_dims", "int", 0),))
def _gather_nd(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    """ONNX GatherND semantics."""
    x, idx = ins
    b, k = attrs["batch_dims"], idx.shape[-1]
    return [TType((*idx.shape[:-1], *x.shape[b + k:]), x.dtype)]


@op("ScatterElements", ["in", "indices", "updates"], attrs=(Attr("axis", "int", 0), Attr("reduction", "str", "none")))
def _scatter_elements(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    """Copy of in with updates written at indices along axis (reduction none/add/mul/max/min)."""
    return [ins[0]]


@op("ScatterNd", ["in", "indices", "updates"], attrs=(Attr("reduction", "str", "none"),))
def _scatter_nd(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    """ONNX ScatterND semantics."""
    return [ins[0]]


PAD_CONSTANT, PAD_MIRROR_SYMMETRIC, PAD_MIRROR_REFLECT, PAD_EDGE = 0, 1, 2, 3


@op("Pad", ["in"], attrs=(Attr("pad_amount", "ints2d"), Attr("scheme", "int", PAD_CONSTANT),
                           Attr("pad_constant_value", "float", 0.0)))
def _pad(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    """pad_amount [[before, after]] per dim (non-negative); scheme 0 constant, 1 mirror symmetric,
    2 mirror reflect, 3 edge."""
    x, pads = ins[0], attrs["pad_amount"]
    if len(pads) != len(x.shape):
        raise InvalidModelError(f"Pad: {len(pads)} pad pairs for rank {len(x.shape)}")
    return [TType(tuple(d + a + b for d, (a, b) in zip(x.shape, pads)), x.dtype)]


@op("Tile", ["in"], attrs=(Attr("multiples", "ints"),))
def _tile(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    """Repeat the tensor multiples[i] times along dim i."""
    x, m = ins[0], attrs["multiples"]
    if len(m) != len(x.shape):
        raise InvalidModelError(f"Tile: {len(m)} multiples for rank {len(x.shape)}")
    return [TType(tuple(d * k for d, k in zip(x.shape, m)), x.dtype)]


DCR, CRD = 0, 1


@op("DepthToSpace", ["in"], attrs=(Attr("block_size", "ints"), Attr("mode", "int", DCR)))
def _depth_to_space(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    """NHWC: [n, h, w, c] -> [n, h*bh, w*bw, c/(bh*bw)]; mode 0 DCR, 1 CRD."""
    n, h, w, c = ins[0].shape
    bh, bw = attrs["block_size"]
    if c % (bh * bw):
        raise InvalidModelError(f"DepthToSpace: {c} channels not divisible by block {bh}x{bw}")
    return [TType((n, h * bh, w * bw, c // (bh * bw)), ins[0].dtype)]


@op("SpaceToDepth", ["in"], attrs=(Attr("block_size", "ints"), Attr("mode", "int", DCR)))
def _space_to_depth(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    """NHWC: [n, h, w, c] -> [n, h/bh, w/bw, c*bh*bw]."""
    n, h, w, c = ins[0].shape
    bh, bw = attrs["block_size"]
    if h % bh or w % bw:
        raise InvalidModelError(f"SpaceToDepth: spatial {h}x{w} not divisible by block {bh}x{bw}")
    return [TType((n, h // bh, w // bw, c * bh * bw), ins[0].dtype)]
