"""Adding nodes to a graph through their schemas: attributes normalized, outputs typed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from openqnn.errors import InvalidModelError
from openqnn.ir.graph import Graph, Node
from openqnn.ir.tensor import Tensor, TensorKind
from openqnn.ops.elementwise import OPENQNN_PACKAGE as _EW_OWN
from openqnn.ops.reduce import OPENQNN_PACKAGE as _RED_OWN
from openqnn.ops.schema import TType, get_schema

__all__ = ["emit", "infer_types", "package_of"]

_OWN = _EW_OWN | _RED_OWN | {"PoolLp2d", "LpNorm", "Selu", "Celu", "PoolMax2dWithIndices"}


def package_of(op_type: str) -> str:
    """``qti.aisw`` for QNN's own ops, ``openqnn`` for ops openqnn adds."""
    return "openqnn" if op_type in _OWN else "qti.aisw"


def infer_types(graph: Graph, node: Node, attrs: dict[str, Any] | None = None) -> list[TType]:
    """Output types of ``node`` from its schema and its inputs' types in ``graph`` (``attrs``: the
    node's attributes already normalized by the schema; default ``node.attrs``).

    Raises InvalidModelError naming the node when its inputs or attributes do not fit the op."""
    schema = get_schema(node.op_type)
    schema.check_arity(node.name, len(node.inputs))
    where = f"node '{node.name}' ({node.op_type})"
    for i, (x, slot) in enumerate(zip(node.inputs, schema.inputs)):
        if not x and not slot.endswith(("?", "*")):
            raise InvalidModelError(f"{where}: required input {i} ({slot}) is empty")
    missing = [x for x in node.inputs if x and x not in graph.tensors]
    if missing:
        raise InvalidModelError(f"{where}: input '{missing[0]}' is not a tensor of the graph")
    ins = [TType(graph.tensors[x].shape, graph.tensors[x].dtype) if x else None for x in node.inputs]
    try:
        types = schema.infer(node.attrs if attrs is None else attrs, ins)  # type: ignore[arg-type]
    except InvalidModelError as e:
        msg = str(e)
        raise InvalidModelError(msg if msg.startswith("node '") else f"{where}: {msg}") from None
    except (IndexError, KeyError, ValueError, TypeError, AttributeError, ZeroDivisionError, OverflowError) as e:
        # shape inference indexes shapes and attributes as the op defines them; a malformed node lands here
        shapes = ", ".join(str(t.shape) if t is not None else "-" for t in ins)
        raise InvalidModelError(f"{where}: its inputs (shapes {shapes}) or attributes do not fit the op "
                                f"({type(e).__name__}: {e}); check the node against {node.op_type}'s definition"
                                ) from None
    for t in types:
        if any(d < 0 for d in t.shape):
            raise InvalidModelError(f"{where}: the op would give an output of shape {t.shape} (a negative dim); "
                                    "check its attributes")
    return types


def emit(
    graph: Graph,
    op_type: str,
    inputs: Sequence[str],
    attrs: dict[str, Any] | None = None,
    *,
    name: str | None = None,
    outputs: Sequence[str] | None = None,
    num_outputs: int | None = None,
    index: int | None = None,
) -> list[str]:
    """Append (or insert at ``index``) an ``op_type`` node and create its typed output tensors.

    ``outputs`` names the outputs (they must be new); otherwise fresh names derived from the node's
    name are used. Returns the output tensor names.
    """
    schema = get_schema(op_type)
    node_name = graph.unique_name(name or op_type.lower())
    node = Node(node_name, op_type, list(inputs), [], schema.normalize_attrs(node_name, attrs or {}),
                package_of(op_type))
    types = infer_types(graph, node)
    if num_outputs is not None:
        types = types[:num_outputs]
    if outputs is None:
        outputs = [node_name if len(types) == 1 else f"{node_name}_{i}" for i in range(len(types))]
        outputs = [o if o not in graph.tensors else graph.unique_name(o) for o in outputs]
    for out, t in zip(outputs, types):
        graph.add_tensor(Tensor(out, t.shape, t.dtype, TensorKind.NATIVE))
    node.outputs = list(outputs)
    graph.add_node(node, index)
    return list(outputs)
