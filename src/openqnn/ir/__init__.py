"""The intermediate representation. Imports no framework."""

from openqnn.ir.dtype import DType
from openqnn.ir.graph import Graph, Node
from openqnn.ir.printer import format_graph
from openqnn.ir.tensor import Encoding, Tensor, TensorKind
from openqnn.ir.verifier import verify

__all__ = ["DType", "Encoding", "Graph", "Node", "Tensor", "TensorKind", "format_graph", "verify"]
