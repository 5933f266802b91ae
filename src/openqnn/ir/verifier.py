"""Structural checks of a graph: every node's schema, arity, attributes and inferred types."""

from __future__ import annotations

from openqnn.errors import InvalidModelError
from openqnn.ir.graph import Graph
from openqnn.ir.tensor import TensorKind

__all__ = ["verify"]


def verify(graph: Graph) -> None:
    """Raise InvalidModelError naming the first node or tensor that is inconsistent."""
    from openqnn.ops.build import infer_types
    from openqnn.ops.schema import get_schema

    defined = set(graph.inputs) | {t.name for t in graph.static_tensors()}
    for name in graph.inputs:
        if graph.tensor(name).kind is not TensorKind.APP_WRITE:
            raise InvalidModelError(f"graph input '{name}' is not an APP_WRITE tensor")
    for t in graph.static_tensors():
        if t.data is None or tuple(t.data.shape) != t.shape or t.data.dtype != t.dtype.numpy:
            raise InvalidModelError(f"static tensor '{t.name}': data does not match shape {t.shape} / {t.dtype.name}")
    for node in graph.nodes:
        schema = get_schema(node.op_type)
        attrs = schema.normalize_attrs(node.name, node.attrs)
        for x in node.inputs:
            if x and x not in defined:
                raise InvalidModelError(f"node '{node.name}' ({node.op_type}) reads '{x}' before it is produced")
        types = infer_types(graph, node, attrs)
        if len(types) != len(node.outputs) and not schema.outputs[-1].endswith("*"):
            raise InvalidModelError(f"node '{node.name}' has {len(node.outputs)} outputs, schema gives {len(types)}")
        for out, want in zip(node.outputs, types):
            have = graph.tensor(out)
            if have.shape != want.shape or have.dtype is not want.dtype:
                raise InvalidModelError(
                    f"node '{node.name}' ({node.op_type}): output '{out}' is {have.shape}/{have.dtype.name} "
                    f"but the op gives {want.shape}/{want.dtype.name}"
                )
            if out in defined:
                raise InvalidModelError(f"tensor '{out}' is produced twice")
            defined.add(out)
    if not graph.outputs:
        raise InvalidModelError(f"graph '{graph.name}' has no outputs")
    for name in graph.outputs:
        if name not in defined:
            raise InvalidModelError(f"graph output '{name}' is never produced")
