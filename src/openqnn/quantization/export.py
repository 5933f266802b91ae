"""Writing a quantized graph's encodings: AIMET 1.0.0 ``<stem>_encodings.json``."""

from __future__ import annotations

from pathlib import Path

from openqnn.ir.graph import Graph
from openqnn.ir.tensor import Encoding, TensorKind
from openqnn.quantization.encodings.formats import EncodingSpec, write_encodings

__all__ = ["encoding_spec", "write_graph_encodings"]


def encoding_spec(name: str, enc: Encoding) -> EncodingSpec:
    return EncodingSpec(name, enc.bitwidth, tuple(enc.scale), tuple(enc.offset), symmetric=enc.symmetric,
                        axis=enc.axis)


def write_graph_encodings(graph: Graph, path: str | Path) -> Path:
    """Every encoded tensor: static ones as param encodings, the rest as activation encodings."""
    acts: list[EncodingSpec] = []
    params: list[EncodingSpec] = []
    for t in graph.tensors.values():
        if t.encoding is None:
            continue
        (params if t.kind is TensorKind.STATIC else acts).append(encoding_spec(t.name, t.encoding))
    return write_encodings(path, acts, params, dict(graph.metadata.get("quantization", {})))
