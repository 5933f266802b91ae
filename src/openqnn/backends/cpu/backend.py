"""The cpu backend: fp32 (and every other ONNX element type) on PyTorch's CPU kernels."""

from __future__ import annotations

from dataclasses import replace

import torch

from openqnn.backends.cpu.config import SPEC, CpuConfig
from openqnn.backends.cpu.kernels import BuildContext, Unsupported
from openqnn.backends.cpu.plan import Plan
from openqnn.backends.cpu.steps import build_step, check_round_trip, plan_steps, with_prepared
from openqnn.backends.partition import PlacementConfig
from openqnn.backends.plan import PreparedGraph, io_graph
from openqnn.backends.settings import Capabilities
from openqnn.backends.threads import apply_thread_policy, thread_policy
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

    def prepare(self, graph: Graph, placement: PlacementConfig | None = None) -> Plan:
        """``graph`` ready to run (``placement`` changes nothing: the cpu backend runs every node itself)."""
        self._set_threads()
        return Plan(graph, "cpu", float_dtype=self._float_dtype())

    def plan(self, graph: Graph) -> PreparedGraph:
        """``graph`` prepared as data (what a context binary holds): the steps with the fusions chosen. Each
        step is read back and bound once here, so a step that does not read back exactly as it was planned, or
        a node no kernel runs, fails now (naming it), never on save or open."""
        prepared = PreparedGraph(self.name, None, io_graph(graph), tuple(plan_steps(graph)))
        check_round_trip(graph, prepared.steps)
        bound = Plan.from_plans(prepared.io, prepared.steps, "cpu", record=True)
        # the weights the native kernels read, laid out as this machine's kernels read them: kept in the plan
        return replace(prepared, steps=tuple(with_prepared(p, *made) for p, made in zip(prepared.steps, bound.made)))

    def bind(self, prepared: PreparedGraph) -> Plan:
        """The executable of a prepared graph (one read from a context binary): binding only."""
        self._set_threads()
        return Plan.from_plans(prepared.io, prepared.steps, "cpu", float_dtype=self._float_dtype())

    def _float_dtype(self) -> torch.dtype | None:
        # enable_fast_math: float kernels compute in bfloat16 (oneDNN's reduced-precision paths); inputs and
        # outputs stay float32
        return torch.bfloat16 if self.config.enable_fast_math else None

    def _set_threads(self) -> None:
        apply_thread_policy(thread_policy(self.config.performance_mode, self.config.num_threads))
