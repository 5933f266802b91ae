"""Writing a quantized graph's encodings: AIMET 1.0.0 ``<stem>_encodings.json``."""

from __future__ import annotations

from pathlib import Path

from openqnn.ir.graph import Graph
from openqnn.ir.tensor import Encoding, TensorKind
from openqnn.quantization.encodings.formats import EncodingSpec, write_encodings

__all__ = ["encoding_spec", "graph_encodings", "write_graph_encodings"]


def encoding_spec(name: str, enc: Encoding, shape: tuple[int, ...] | None = None) -> EncodingSpec:
    """The file entry of ``enc``: per-tensor, per-channel, PER_BLOCK ([channels, blocks] scales), or
    LPBQ (per-channel scales at the decompressed bitwidth and per-block integers; needs ``shape``)."""
    if enc.block_scale_bitwidth is not None and shape is not None:
        channel_scale, ints, _ = enc.lpbq_factors(shape)
        decompressed = enc.bitwidth + enc.block_scale_bitwidth
        return EncodingSpec(name, decompressed, tuple(float(s) for s in channel_scale),
                            (-(1 << (decompressed - 1)),) * len(channel_scale), symmetric=True, axis=enc.axis,
                            block_size=enc.block_size, compressed_bitwidth=enc.bitwidth,
                            per_block_int_scale=tuple(int(k) for k in ints.reshape(-1)))
    return EncodingSpec(name, enc.bitwidth, tuple(enc.scale), tuple(enc.offset), symmetric=enc.symmetric,
                        axis=enc.axis, block_size=enc.block_size)


def graph_encodings(graph: Graph) -> tuple[list[EncodingSpec], list[EncodingSpec]]:
    """Every encoded tensor's file entry: (activation encodings, param encodings: the static tensors')."""
    acts: list[EncodingSpec] = []
    params: list[EncodingSpec] = []
    for t in graph.tensors.values():
        if t.encoding is not None:
            (params if t.kind is TensorKind.STATIC else acts).append(encoding_spec(t.name, t.encoding, t.shape))
    return acts, params


def write_graph_encodings(graph: Graph, path: str | Path) -> Path:
    """Every encoded tensor: static ones as param encodings, the rest as activation encodings."""
    acts, params = graph_encodings(graph)
    return write_encodings(path, acts, params, dict(graph.metadata.get("quantization", {})))
