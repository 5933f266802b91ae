"""What would run where: each node of a graph checked against backends' builders, before any device.

The same rule as preparing (:mod:`openqnn.backends.partition`): a node runs on a backend where its builder
accepts it, otherwise on the cpu fallback with the builder's reason. A backend this build cannot create, or a
float model on a backend that runs quantized models, is reported as such instead of node by node.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from openqnn.backends import backend_spec, create_backend
from openqnn.errors import InvalidConfigError
from openqnn.ir.graph import Graph

__all__ = ["Placement", "format_placement", "placement"]


@dataclass(frozen=True)
class Placement:
    backend: str
    note: str | None  # the whole backend's story where it is not node by node (unavailable, needs quantizing)
    runs: tuple[str, ...]  # node names that run on the backend
    falls_back: tuple[tuple[str, str, str], ...]  # (node, op type, reason) on the cpu fallback


def placement(graph: Graph, backends: Sequence[str]) -> list[Placement]:
    out = []
    quantized = any(t.encoding is not None for t in graph.tensors.values())
    for name in backends:
        spec = backend_spec(name)
        try:
            backend = create_backend(spec.name)
        except InvalidConfigError:
            out.append(Placement(spec.name, f"not available here ({spec.why_unavailable()}); every node would need "
                                            "another backend on this machine", (), ()))
            continue
        if spec.capabilities.quantized_only and not quantized:
            out.append(Placement(spec.name, "the model is float and this backend runs quantized models: quantize it "
                                            "(qnn-onnx-converter --input_list, or qnn-context-binary-generator "
                                            "--input_list) to check its nodes", (), ()))
            continue
        runs, back = [], []
        for node in graph.nodes:
            reason = backend.unsupported(graph, node)
            if reason is None:
                runs.append(node.name)
            else:
                back.append((node.name, node.op_type, reason))
        out.append(Placement(spec.name, None, tuple(runs), tuple(back)))
    return out


def format_placement(graph: Graph, rows: Sequence[Placement]) -> str:
    total = len(graph.nodes)
    lines = [f"placement of {graph.name!r} ({total} nodes):"]
    for p in rows:
        if p.note is not None:
            lines.append(f"  {p.backend}: {p.note}")
            continue
        lines.append(f"  {p.backend}: {len(p.runs)} of {total} nodes run here"
                     + ("" if not p.falls_back else f"; {len(p.falls_back)} fall back to cpu:"))
        lines += [f"    {node} ({op}): {reason}" for node, op, reason in p.falls_back]
    return "\n".join(lines)
