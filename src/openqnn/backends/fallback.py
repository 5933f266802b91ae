"""The shared fallback path: what a backend cannot run goes to the fallback backend (cpu) as a float kernel.

Other backends reach the cpu backend's kernels only through here: :func:`float_kernel` for one node (its
static inputs bound as the cpu simulation sees them, quantize-dequantized where they are encoded),
:func:`float_plan` for a whole float graph in another float type (htp's fp16 mode).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from openqnn.backends.base import Executable, Unsupported
from openqnn.backends.cpu.kernels import BuildContext, Step
from openqnn.backends.cpu.plan import Plan, keep_freed_memory
from openqnn.backends.cpu.steps import bind_step, build_step, check_round_trip, plan_node, read_step
from openqnn.backends.plan import StepPlan
from openqnn.ir.graph import Graph, Node
from openqnn.ir.tensor import Encoding

__all__ = ["FloatKernel", "Unsupported", "bind_fallback", "fallback_step", "float_kernel", "float_plan",
           "keep_freed_memory"]


@dataclass(frozen=True)
class FloatKernel:
    """A node as the fallback backend runs it: ``fn(*values of inputs)``, static inputs in ``statics``;
    ``encodings`` of its run-time inputs and outputs that carry one (where another backend converts)."""

    fn: Callable[..., Any]
    inputs: list[str]
    statics: dict[str, torch.Tensor]
    encodings: dict[str, Encoding]

    @property
    def runtime_inputs(self) -> list[str]:
        return [x for x in self.inputs if x not in self.statics]


def _kernel(step: Step, ctx: BuildContext, outputs: Sequence[str]) -> FloatKernel:
    graph = ctx.graph
    statics = {x: ctx.static(x) for x in step.inputs if ctx.is_static(x)}
    encodings = {n: enc for n in dict.fromkeys((*step.inputs, *outputs))
                 if n and n not in statics and (enc := graph.tensors[n].encoding) is not None}
    return FloatKernel(step.fn, list(step.inputs), statics, encodings)


def float_kernel(node: Node, graph: Graph, device: torch.device | str = "cpu") -> FloatKernel:
    """The fallback backend's kernel for ``node``; raises :class:`Unsupported` with the reason when it has none."""
    ctx = BuildContext(graph, torch.device(device))
    return _kernel(build_step(node, ctx), ctx, node.outputs)


def fallback_step(node: Node, graph: Graph, device: torch.device | str = "cpu") -> tuple[StepPlan, FloatKernel]:
    """``node`` as the fallback backend's step plan (data a context can hold) and its kernel, bound now;
    raises :class:`Unsupported` with the reason when the fallback has no kernel for it either."""
    kernel = float_kernel(node, graph, device)
    plan = plan_node(graph, node)
    check_round_trip(graph, [plan])
    return plan, kernel


def bind_fallback(plan: StepPlan, device: torch.device | str = "cpu") -> FloatKernel:
    """The kernel of a fallback step plan read back from a context (:func:`fallback_step`'s); its encodings
    come from the tensor declarations the plan holds."""
    nodes, ctx = read_step(plan, device)
    return _kernel(bind_step(plan, nodes, ctx), ctx, plan.outputs)


def float_plan(graph: Graph, device: torch.device | str, float_dtype: torch.dtype, backend_name: str) -> Executable:
    """A float graph on the fallback backend's kernels in ``float_dtype`` (e.g. fp16), unfused."""
    return Plan(graph, device, float_dtype=float_dtype, backend_name=backend_name, fuse=False)
