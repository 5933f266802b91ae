"""The pipeline's spine: convert -> (passes) -> [quantize] -> prepare -> run.

    graph = openqnn.convert("model.onnx", input_dims={"input": (1, 3, 224, 224)})
    openqnn.save(graph, "model.cpp")            # model_net.json + model.bin
    sess = openqnn.Session("model_net.json", backend="cpu")
    outputs = sess.run({"input": x})
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from openqnn.errors import ConversionError
from openqnn.ir.graph import Graph

if TYPE_CHECKING:
    from openqnn.runtime.context import Context

__all__ = ["compile", "convert", "encodings_path", "load", "save"]

_FRONTENDS = {".onnx": "onnx", ".tflite": "tflite"}


def convert(
    source: str | os.PathLike[str] | object,
    input_dims: Mapping[str, Sequence[int]] | None = None,
    out_nodes: Sequence[str] | None = None,
    name: str | None = None,
) -> Graph:
    """Convert a source model (an ``.onnx`` or ``.tflite`` path, or an ``onnx.ModelProto``) into an IR graph."""
    import onnx

    if isinstance(source, onnx.ModelProto):
        from openqnn.frontends.onnx import convert_onnx

        return convert_onnx(source, input_dims, out_nodes, name)
    path = Path(source)  # type: ignore[arg-type]
    kind = _FRONTENDS.get(path.suffix.lower())
    if kind is None:
        raise ConversionError(f"{path}: unknown model type '{path.suffix}'; openqnn converts "
                              + ", ".join(sorted(_FRONTENDS)) + " files")
    if kind == "tflite":
        from openqnn.frontends.tflite import convert_tflite

        return convert_tflite(path, input_dims, out_nodes, name)
    from openqnn.frontends.onnx import convert_onnx

    return convert_onnx(path, input_dims, out_nodes, name)


def save(graph: Graph, output_path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``<stem>_net.json`` and ``<stem>.bin`` for ``output_path`` (e.g. ``model.cpp``), the graph
    composition source ``<stem>.cpp`` where ``output_path`` ends in ``.cpp``, and for a quantized graph
    ``<stem>_encodings.json`` (AIMET 1.0.0), as ``qnn-onnx-converter`` does; returns the paths of the
    ``_net.json`` and the ``.bin`` (:func:`encodings_path` gives the encodings')."""
    from openqnn.serialization import save_model

    json_path, bin_path = save_model(graph, output_path)
    if Path(output_path).suffix == ".cpp":
        from openqnn.modellib import write_source

        write_source(graph, output_path, bin_path)
    if any(t.encoding is not None for t in graph.tensors.values()):
        from openqnn.quantization.export import write_graph_encodings

        write_graph_encodings(graph, encodings_path(json_path))
    return json_path, bin_path


def encodings_path(net_json: str | os.PathLike[str]) -> Path:
    """``<stem>_encodings.json`` beside ``<stem>_net.json``."""
    p = Path(net_json)
    return p.with_name(p.name.removesuffix("_net.json") + "_encodings.json")


def load(path: str | os.PathLike[str]) -> Graph:
    """Read a ``<stem>_net.json`` model (``<stem>.cpp`` / ``<stem>`` also find it) or a model library
    (``lib<name>.so`` from ``qnn-model-lib-generator``: its graph composed through the C ABI)."""
    from openqnn.modellib import is_model_library, load_library
    from openqnn.serialization import load_model, model_paths

    p = Path(path)
    if p.suffix == ".so" or is_model_library(p):
        return load_library(p)
    if not p.name.endswith("_net.json"):
        p = model_paths(p)[0]
    return load_model(p)


def compile(graphs: Graph | Mapping[str, Graph], backend: str = "htp", config: object = None) -> Context:
    """Prepare a graph (or several, by name) for ``backend`` once, as data: ``compile(g).save("x.bin")``
    writes a context binary that ``Session("x.bin")`` opens without preparing again."""
    from openqnn.runtime.context import compile_graph

    return compile_graph(graphs, backend, config)
