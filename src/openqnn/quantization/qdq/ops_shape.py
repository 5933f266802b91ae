"""IR-op -> ONNX translations of the data-movement ops: resize, reshape, transpose, concat, split,
strided slice, gather, scatter, pad, tile, depth-to-space / space-to-depth.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from onnx import TensorProto

from openqnn.ir.dtype import DType
from openqnn.ir.graph import Node
from openqnn.quantization.qdq.builder import (
    _channel_first,
    _channel_last,
    _Exporter,
    _handles,
    _pads,
    _Unsupported,
)

_INT64_MIN = -(1 << 63)


@_handles("Resize")
def _resize(ex: _Exporter, node: Node, outs: list[str]) -> None:
    a = node.attrs
    x = node.inputs[0]
    in_shape = ex.shape(x)
    rank = len(in_shape)
    if a["nearest_mode"] == "simple":
        raise _Unsupported("nearest_mode 'simple' (ONNX opset < 11 Upsample rounding) has no ONNX Resize mode")
    perm = _channel_first(rank) if rank == 4 else tuple(range(rank))  # NHWC: resize NCHW
    attrs: dict[str, Any] = {"mode": a["interpolation_mode"], "coordinate_transformation_mode": a["transformation_mode"],
                             "nearest_mode": a["nearest_mode"], "cubic_coeff_a": float(a["cubic_coeff"]),
                             "exclude_outside": int(a["exclude_outside"]), "antialias": int(a["antialias"]),
                             "extrapolation_value": float(a["extrapolation_value"])}
    roi = ""
    if a["roi"]:
        r = list(a["roi"])
        roi = ex.init(f"{node.name}_roi", np.asarray([r[p] for p in perm] + [r[rank + p] for p in perm], np.float32))
    if a["scales"]:
        if any(int(np.floor(np.float32(sc) * n)) != o for sc, n, o in zip(a["scales"], in_shape, a["output_shape"])):
            raise _Unsupported(f"its scales {list(a['scales'])} do not give its output shape {list(a['output_shape'])} "
                               "(keep_aspect_ratio_policy); ONNX Resize takes scales or sizes, not both")
        scales = ex.init(f"{node.name}_scales", np.asarray([a["scales"][p] for p in perm], np.float32))
        ins = [ex.v(x, perm), roi, scales]
    else:
        ins = [ex.v(x, perm), roi, "", ex.ints([a["output_shape"][p] for p in perm])]
    y = ex.one("Resize", ins, name=node.name, **attrs)
    ex.transpose(y, _channel_last(rank) if rank == 4 else tuple(range(rank)), outs[0])


@_handles("Reshape")
def _reshape(ex: _Exporter, node: Node, outs: list[str]) -> None:
    ex.one("Reshape", [ex.v(node.inputs[0]), ex.ints(node.attrs["shape"])], outs[0], name=node.name, allowzero=1)


@_handles("Transpose")
def _transpose(ex: _Exporter, node: Node, outs: list[str]) -> None:
    ex.one("Transpose", [ex.v(node.inputs[0])], outs[0], name=node.name, perm=list(node.attrs["perm"]))


@_handles("Concat")
def _concat(ex: _Exporter, node: Node, outs: list[str]) -> None:
    ex.one("Concat", [ex.v(x) for x in node.inputs], outs[0], name=node.name, axis=int(node.attrs["axis"]))


@_handles("Split")
def _split(ex: _Exporter, node: Node, outs: list[str]) -> None:
    x = node.inputs[0]
    axis = int(node.attrs["axis"])
    bounds = [0, *node.attrs["split_index"], ex.shape(x)[axis]]
    sizes = [b - a for a, b in itertools.pairwise(bounds)]
    ex.add("Split", [ex.v(x), ex.ints(sizes)], outs, name=node.name, axis=axis)


@_handles("StridedSlice")
def _strided_slice(ex: _Exporter, node: Node, outs: list[str]) -> None:
    ranges = node.attrs["ranges"]
    starts = [int(b) for b, _, _ in ranges]
    ends = [int(e) if e >= 0 else _INT64_MIN for _, e, _ in ranges]  # -1: past index 0 (negative strides)
    steps = [int(s) for _, _, s in ranges]
    ins = [ex.v(node.inputs[0]), ex.ints(starts), ex.ints(ends), ex.ints(range(len(ranges))), ex.ints(steps)]
    ex.one("Slice", ins, outs[0], name=node.name)


def _int64_indices(ex: _Exporter, name: str) -> str:
    v = ex.v(name)
    return v if ex.dtype(name) is DType.INT_64 else ex.one("Cast", [v], to=TensorProto.INT64)


@_handles("Gather", "GatherElements")
def _gather(ex: _Exporter, node: Node, outs: list[str]) -> None:
    ins = [ex.v(x) for x in node.inputs]  # int32 or int64 indices
    ex.one(node.op_type, ins, outs[0], name=node.name, axis=int(node.attrs["axis"]))


@_handles("GatherNd")
def _gather_nd(ex: _Exporter, node: Node, outs: list[str]) -> None:
    ins = [ex.v(node.inputs[0]), _int64_indices(ex, node.inputs[1])]
    ex.one("GatherND", ins, outs[0], name=node.name, batch_dims=int(node.attrs["batch_dims"]))


@_handles("ScatterElements", "ScatterNd")
def _scatter(ex: _Exporter, node: Node, outs: list[str]) -> None:
    idx = ex.v(node.inputs[1]) if node.op_type == "ScatterElements" else _int64_indices(ex, node.inputs[1])
    ins = [ex.v(node.inputs[0]), idx, ex.v(node.inputs[2])]
    attrs: dict[str, Any] = {"reduction": node.attrs["reduction"]}
    if node.op_type == "ScatterElements":
        attrs["axis"] = int(node.attrs["axis"])
    ex.one("ScatterElements" if node.op_type == "ScatterElements" else "ScatterND", ins, outs[0], name=node.name,
           **attrs)


_PAD_MODES = {0: "constant", 2: "reflect", 3: "edge"}


@_handles("Pad")
def _pad(ex: _Exporter, node: Node, outs: list[str]) -> None:
    scheme = node.attrs["scheme"]
    if scheme not in _PAD_MODES:
        raise _Unsupported("mirror-symmetric padding (scheme 1) has no ONNX Pad mode (constant, reflect, edge)")
    x = node.inputs[0]
    dt = ex.dtype(x)
    ins = [ex.v(x), ex.ints(_pads(node.attrs["pad_amount"]))]
    if scheme == 0:
        value = node.attrs["pad_constant_value"]
        ins.append(ex.scalar(value if dt.is_float else int(value), dt))
    ex.one("Pad", ins, outs[0], name=node.name, mode=_PAD_MODES[scheme])


@_handles("Tile")
def _tile(ex: _Exporter, node: Node, outs: list[str]) -> None:
    ex.one("Tile", [ex.v(node.inputs[0]), ex.ints(node.attrs["multiples"])], outs[0], name=node.name)


@_handles("DepthToSpace", "SpaceToDepth")
def _depth_space(ex: _Exporter, node: Node, outs: list[str]) -> None:
    bh, bw = node.attrs["block_size"]
    if bh != bw:
        raise _Unsupported(f"block size {bh}x{bw}: ONNX takes one square blocksize")
    attrs: dict[str, Any] = {"blocksize": int(bh)}
    if node.op_type == "DepthToSpace":
        attrs["mode"] = "CRD" if node.attrs["mode"] == 1 else "DCR"
    elif node.attrs["mode"] == 1:
        raise _Unsupported("SpaceToDepth in CRD mode")
    y = ex.one(node.op_type, [ex.v(node.inputs[0], _channel_first(4))], name=node.name, **attrs)
    ex.transpose(y, _channel_last(4), outs[0])
