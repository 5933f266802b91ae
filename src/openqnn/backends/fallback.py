"""The shared fallback path: what a backend cannot run goes to the fallback backend (cpu) as a float kernel.

Other backends reach the cpu backend's kernels only through here: :func:`float_kernel` for one node (its
static inputs bound as the cpu simulation sees them, quantize-dequantized where they are encoded),
:func:`float_plan` for a whole float graph in another float type (htp's fp16 mode).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from openqnn.backends.base import Executable, Unsupported
from openqnn.backends.cpu.kernels import BuildContext
from openqnn.backends.cpu.plan import Plan, keep_freed_memory
from openqnn.backends.cpu.steps import bind_step, build_step, check_round_trip, plan_node, read_step
from openqnn.backends.plan import StepPlan
from openqnn.ir.graph import Graph, Node
from openqnn.ir.tensor import TensorKind

__all__ = ["FloatKernel", "Unsupported", "bind_fallback", "fallback_step", "float_kernel", "float_plan",
           "keep_freed_memory"]


@dataclass(frozen=True)
class FloatKernel:
    """A node as the fallback backend runs it: ``fn(*values of inputs)``, static inputs in ``statics``."""

    fn: Callable[..., Any]
    inputs: list[str]
    statics: dict[str, torch.Tensor]

    @property
    def runtime_inputs(self) -> list[str]:
        return [x for x in self.inputs if x not in self.statics]


def float_kernel(node: Node, graph: Graph, device: torch.device | str = "cpu") -> FloatKernel:
    """The fallback backend's kernel for ``node``; raises :class:`Unsupported` with the reason when it has none."""
    ctx = BuildContext(graph, torch.device(device))
    step = build_step(node, ctx)
    statics = {x: ctx.static(x) for x in step.inputs if graph.tensors[x].kind is TensorKind.STATIC}
    return FloatKernel(step.fn, list(step.inputs), statics)


def fallback_step(node: Node, graph: Graph, device: torch.device | str = "cpu") -> tuple[StepPlan, FloatKernel]:
    """``node`` as the fallback backend's step plan (data a context can hold) and its kernel, bound now;
    raises :class:`Unsupported` with the reason when the fallback has no kernel for it either."""
    kernel = float_kernel(node, graph, device)
    plan = plan_node(graph, node)
    check_round_trip(graph, [plan])
    return plan, kernel


def bind_fallback(plan: StepPlan, device: torch.device | str = "cpu") -> FloatKernel:
    """The kernel of a fallback step plan read back from a context (:func:`fallback_step`'s)."""
    nodes, ctx = read_step(plan, device)
    step = bind_step(plan, nodes, ctx)
    statics = {x: ctx.static(x) for x in step.inputs if ctx.is_static(x)}
    return FloatKernel(step.fn, list(step.inputs), statics)


def float_plan(graph: Graph, device: torch.device | str, float_dtype: torch.dtype, backend_name: str) -> Executable:
    """A float graph on the fallback backend's kernels in ``float_dtype`` (e.g. fp16), unfused."""
    return Plan(graph, device, float_dtype=float_dtype, backend_name=backend_name, fuse=False)
