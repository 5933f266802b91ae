"""A readable text form of a graph, one line per tensor and per node."""

from __future__ import annotations

from openqnn.ir.graph import Graph

__all__ = ["format_graph"]


def _fmt_attr(v: object) -> str:
    if isinstance(v, tuple):
        return "[" + ", ".join(_fmt_attr(x) for x in v) + "]"
    if isinstance(v, float):
        return f"{v:g}"
    if hasattr(v, "name"):
        return str(v.name)
    return str(v)


def format_graph(graph: Graph) -> str:
    """E.g. ``%conv1 = Conv2d(%input, %w, %b) {stride=[1, 1], ...} : (1, 32, 32, 8) FLOAT_32``."""
    lines = [f"graph {graph.name} {{"]
    for name in graph.inputs:
        t = graph.tensors[name]
        lines.append(f"  input %{name}: {t.shape} {t.dtype.name}")
    n_static = sum(1 for _ in graph.static_tensors())
    n_params = sum(t.size for t in graph.static_tensors())
    lines.append(f"  # {n_static} static tensors, {n_params} values")
    for node in graph.nodes:
        outs = ", ".join(f"%{o}" for o in node.outputs)
        ins = ", ".join(f"%{i}" if i else "_" for i in node.inputs)
        attrs = ", ".join(f"{k}={_fmt_attr(v)}" for k, v in node.attrs.items())
        types = "; ".join(f"{graph.tensors[o].shape} {graph.tensors[o].dtype.name}" for o in node.outputs)
        lines.append(f"  {outs} = {node.op_type}({ins}){' {' + attrs + '}' if attrs else ''} : {types}")
    lines.append("  return " + ", ".join(f"%{o}" for o in graph.outputs))
    lines.append("}")
    return "\n".join(lines)
