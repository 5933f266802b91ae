"""The cpu backend: fp32 (and every other ONNX element type) on PyTorch's CPU kernels."""

from __future__ import annotations

import torch

from openqnn.backends.cpu.config import SPEC, CpuConfig
from openqnn.backends.cpu.kernels import BuildContext, Unsupported
from openqnn.backends.cpu.plan import Plan, build_step
from openqnn.backends.settings import Capabilities
from openqnn.ir.graph import Graph, Node

__all__ = ["CpuBackend"]


class CpuBackend:
    """Runs every IR op in float (or its integer type) on PyTorch CPU kernels."""

    name = SPEC.name
    capabilities: Capabilities = SPEC.capabilities

    def __init__(self, config: CpuConfig | None = None):
        self.config = config or CpuConfig()

    def unsupported(self, graph: Graph, node: Node) -> str | None:
        try:
            build_step(node, BuildContext(graph))
        except Unsupported as e:
            return str(e)
        return None

    def prepare(self, graph: Graph) -> Plan:
        if self.config.num_threads:
            torch.set_num_threads(self.config.num_threads)
        return Plan(graph, "cpu")
