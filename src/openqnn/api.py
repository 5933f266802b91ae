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

from openqnn.ir.graph import Graph

if TYPE_CHECKING:
    from openqnn.runtime.context import Context

__all__ = ["compile", "convert", "encodings_path", "load", "save"]

def convert(
    source: str | os.PathLike[str] | object,
    input_dims: Mapping[str, Sequence[int]] | None = None,
    out_nodes: Sequence[str] | None = None,
    name: str | None = None,
    *,
    example_inputs: object = None,
    input_dtypes: Mapping[str, str] | None = None,
) -> Graph:
    """Convert a source model into an IR graph and run the ``convert`` pass pipeline on it.

    ``source`` is a model file (``.onnx``; ``.pt``/``.pth`` TorchScript, ``.pt2`` ExportedProgram; what
    else a registered frontend reads) or an in-memory model (``onnx.ModelProto``, ``torch.nn.Module``,
    ``torch.export.ExportedProgram``); the frontend is picked by its type or suffix
    (:mod:`openqnn.frontends.base`). ``input_dims`` fixes input shapes (``--input_dim``; a PyTorch file's
    inputs are named and shaped by it), ``out_nodes`` picks the outputs (``--out_node``), ``name`` names the
    graph. A PyTorch module is traced with ``example_inputs`` (a tensor, a tuple, or name -> tensor) or with
    zeros of ``input_dims``' shapes and ``input_dtypes``' types (default float32)::

        graph = openqnn.convert(torchvision.models.resnet18().eval(), example_inputs=torch.randn(1, 3, 224, 224))
    """
    from openqnn.frontends.base import FrontendOptions, convert_source

    return convert_source(source, FrontendOptions(input_dims=dict(input_dims or {}),
                                                  input_dtypes=dict(input_dtypes or {}),
                                                  out_nodes=tuple(out_nodes or ()), name=name,
                                                  example_inputs=example_inputs))


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
    from openqnn.runtime.loading import load_graph

    return load_graph(path)


def compile(graphs: Graph | Mapping[str, Graph], backend: str = "htp", config: object = None) -> Context:
    """Prepare a graph (or several, by name) for ``backend`` once, as data: ``compile(g).save("x.bin")``
    writes a context binary that ``Session("x.bin")`` opens without preparing again. ``config``: the
    backend's config dataclass, or a ``BackendConfig`` (with its placement: forced nodes, no fallback)."""
    from openqnn.runtime.context import compile_graph

    return compile_graph(graphs, backend, config)
