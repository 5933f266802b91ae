"""The VTCM memory plan: what each node htp runs needs in VTCM, held against ``htp_config.vtcm_mb``.

A node's working set is its run-time inputs and outputs in their storage types (8-bit codes one byte each,
16-bit two, float tensors their own size), plus its weights unless ``enable_dma`` streams them in as the node
runs. Nodes on the cpu fallback use no VTCM. A node that cannot fit is an error naming it, its need, and
what to do; the plan (each node's need, the largest) is returned for reporting.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from openqnn.errors import InvalidConfigError
from openqnn.ir.graph import Graph, Node
from openqnn.ir.tensor import Tensor, TensorKind

__all__ = ["MB", "VtcmNeed", "check_vtcm", "vtcm_needs"]

MB = 1 << 20


@dataclass(frozen=True)
class VtcmNeed:
    """One node's VTCM working set, in bytes."""

    node: str
    op_type: str
    activations: int
    weights: int  # 0 where DMA streams them

    @property
    def total(self) -> int:
        return self.activations + self.weights


def _bytes(t: Tensor) -> int:
    n = 1
    for d in t.shape:
        n *= int(d)
    if t.encoding is not None:
        return n * ((t.encoding.bitwidth + 7) // 8)
    return n * t.dtype.numpy.itemsize


def vtcm_needs(graph: Graph, nodes: Iterable[Node], dma: bool) -> list[VtcmNeed]:
    """The working set of each of ``nodes`` (those htp runs)."""
    needs = []
    for node in nodes:
        names = [x for x in dict.fromkeys((*node.inputs, *node.outputs)) if x in graph.tensors]
        acts = sum(_bytes(graph.tensors[x]) for x in names if graph.tensors[x].kind is not TensorKind.STATIC)
        weights = 0 if dma else sum(_bytes(graph.tensors[x]) for x in names
                                    if graph.tensors[x].kind is TensorKind.STATIC)
        needs.append(VtcmNeed(node.name, node.op_type, acts, weights))
    return needs


def check_vtcm(graph: Graph, nodes: Iterable[Node], vtcm_mb: int, dma: bool) -> list[VtcmNeed]:
    """The plan of ``nodes`` within ``vtcm_mb``; the first node that cannot fit is an InvalidConfigError."""
    needs = vtcm_needs(graph, nodes, dma)
    for need in needs:
        if need.total > vtcm_mb * MB:
            weights = (f" + weights {need.weights / MB:.2f} MB; set htp_config.enable_dma to stream them"
                       if need.weights else "")
            raise InvalidConfigError(
                f"htp_config.vtcm_mb = {vtcm_mb}: node '{need.node}' ({need.op_type}) needs {need.total / MB:.2f} MB "
                f"of VTCM (activations {need.activations / MB:.2f} MB{weights}); raise vtcm_mb, or force the node "
                "to cpu (openqnn.force_backend)")
    return needs
