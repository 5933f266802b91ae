"""Prepared execution plans: kernels resolved and weights laid out once, run many times.

The plan is a flat list of steps over numbered slots. Each intermediate is released right after
its last reader runs, so PyTorch's allocator reuses its memory for later tensors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from openqnn.backends.cpu.kernels import KERNELS, BuildContext, Step, Unsupported
from openqnn.errors import InputDataError, UnsupportedOpError
from openqnn.ir.graph import Graph, Node
from openqnn.ir.tensor import TensorKind

__all__ = ["Plan", "build_step"]


def build_step(node: Node, ctx: BuildContext) -> Step:
    """The prepared step of ``node``; raises Unsupported with the reason when no kernel fits."""
    builder = KERNELS.get(node.op_type)
    if builder is None:
        raise Unsupported(f"no kernel for {node.op_type}")
    step = builder(node, ctx)
    step.outputs = list(node.outputs)
    step.node, step.op_type = node.name, node.op_type
    return step


@dataclass
class _Call:
    fn: object
    ins: tuple[int, ...]
    outs: tuple[int, ...]
    free: tuple[int, ...]  # slots whose last reader is this call
    node: str
    op_type: str


class Plan:
    """An executable graph on PyTorch kernels (cpu, or any torch device)."""

    def __init__(self, graph: Graph, device: torch.device | str = "cpu", float_dtype: torch.dtype | None = None,
                 backend_name: str = "cpu"):
        self.graph = graph
        self.device = torch.device(device)
        self.float_dtype = float_dtype
        ctx = BuildContext(graph, self.device, float_dtype)
        steps = []
        for node in graph.nodes:
            try:
                steps.append(build_step(node, ctx))
            except Unsupported as e:
                raise UnsupportedOpError(
                    f"node '{node.name}' ({node.op_type}) cannot run on the {backend_name} backend: {e}"
                ) from None
        slots: dict[str, int] = {}

        def slot(name: str) -> int:
            return slots.setdefault(name, len(slots))

        for name in graph.inputs:
            slot(name)
        self._static: dict[int, torch.Tensor] = {}
        for step in steps:
            for x in step.inputs:
                if x and graph.tensors[x].kind is TensorKind.STATIC and x not in slots:
                    self._static[slot(x)] = ctx.static(x)
        last_use: dict[int, int] = {}
        for i, step in enumerate(steps):
            for x in step.inputs:
                last_use[slot(x)] = i
            for o in step.outputs:
                slot(o)
        keep = {slots[o] for o in graph.outputs} | set(self._static)
        self._calls = [
            _Call(step.fn, tuple(slots[x] for x in step.inputs), tuple(slots[o] for o in step.outputs),
                  tuple(s for s, last in last_use.items() if last == i and s not in keep), step.node, step.op_type)
            for i, step in enumerate(steps)
        ]
        self._n_slots = len(slots)
        self._in_slots = [(n, slots[n], graph.tensors[n]) for n in graph.inputs]
        self._out_slots = [(n, slots[n]) for n in graph.outputs]

    @property
    def op_types(self) -> list[str]:
        return [c.op_type for c in self._calls]

    def to_torch_inputs(self, feeds: Mapping[str, np.ndarray | torch.Tensor]) -> list[torch.Tensor]:
        from openqnn.backends.cpu.kernels.registry import to_torch, torch_dtype

        out = []
        for name, _, t in self._in_slots:
            if name not in feeds:
                raise InputDataError(f"missing input '{name}'; the model's inputs are {', '.join(self.graph.inputs)}")
            v = feeds[name]
            if isinstance(v, torch.Tensor):
                tv = v.to(self.device, torch_dtype(t.dtype, self.float_dtype))
            else:
                arr = np.asarray(v)
                if arr.dtype != t.dtype.numpy:
                    arr = arr.astype(t.dtype.numpy)
                tv = to_torch(arr, self.device, self.float_dtype)
            if tuple(tv.shape) != t.shape:
                raise InputDataError(f"input '{name}' has shape {tuple(tv.shape)}; the model expects {t.shape}")
            out.append(tv)
        return out

    def run_torch(self, inputs: Sequence[torch.Tensor], profile: list[tuple[str, str, float]] | None = None
                  ) -> list[torch.Tensor]:
        env: list[torch.Tensor | None] = [None] * self._n_slots
        for (_, s, _), v in zip(self._in_slots, inputs):
            env[s] = v
        for s, v in self._static.items():
            env[s] = v
        timer = None
        if profile is not None:
            import time

            timer = time.perf_counter
        with torch.inference_mode():
            for c in self._calls:
                t0 = timer() if timer else 0.0
                res = c.fn(*[env[i] for i in c.ins])  # type: ignore[operator]
                if len(c.outs) == 1:
                    env[c.outs[0]] = res if isinstance(res, torch.Tensor) else res[0]
                else:
                    for s, r in zip(c.outs, res):
                        env[s] = r
                for s in c.free:
                    env[s] = None
                if timer is not None and profile is not None:
                    profile.append((c.node, c.op_type, timer() - t0))
        return [env[s] for _, s in self._out_slots]  # type: ignore[misc]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = self.run_torch(self.to_torch_inputs(feeds))
        result = {}
        for (name, _), v in zip(self._out_slots, outs):
            want = self.graph.tensors[name].dtype.numpy
            arr = v.detach().to("cpu")
            if arr.dtype == torch.uint16:
                arr = arr.to(torch.int32)
            result[name] = np.ascontiguousarray(arr.numpy()).astype(want, copy=False)
        return result
