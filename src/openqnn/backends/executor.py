"""One executor loop for every backend: bound steps over numbered slots.

A backend binds its plan's steps into callables (:class:`BoundStep`: ``outputs = fn(*inputs)``) and hands
them to an :class:`Executor`, which numbers every tensor, releases each intermediate right after its last
reader (so the allocator reuses its memory for later tensors) and runs the calls in order. What differs
between backends stays outside the loop: how feeds become the first values (quantized integers for htp,
torch tensors for cpu) and how outputs come back. ``after`` hooks run on a value as soon as it is made
(the cpu backend's quantization simulation quantize-dequantizes every encoded activation there).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

__all__ = ["BoundStep", "Executor"]


class BoundStep(NamedTuple):
    """A step ready to run: ``fn(*values of inputs)`` returns the value of each output (one: the value)."""

    fn: Callable[..., Any]
    inputs: Sequence[str]
    outputs: Sequence[str]
    node: str
    op_type: str


@dataclass(frozen=True)
class _Call:
    fn: Callable[..., Any]
    ins: tuple[int, ...]
    outs: tuple[int, ...]
    free: tuple[int, ...]  # slots whose last reader is this call
    after: tuple[tuple[int, Callable[[Any], Any]], ...]  # hooks on this call's outputs
    node: str
    op_type: str


class Executor:
    """Runs bound steps in order over numbered slots (see the module docstring).

    ``inputs`` and ``outputs`` name the graph's; ``statics`` gives values steps read that no step makes
    (weights bound as tensors); ``after`` maps a tensor name to a hook run on its value once made (graph
    inputs included)."""

    def __init__(self, steps: Sequence[BoundStep], inputs: Sequence[str], outputs: Sequence[str],
                 statics: Mapping[str, Any] | None = None, after: Mapping[str, Callable[[Any], Any]] | None = None):
        statics, after = statics or {}, after or {}
        slots: dict[str, int] = {}

        def slot(name: str) -> int:
            return slots.setdefault(name, len(slots))

        for name in inputs:
            slot(name)
        self.statics = [(slot(name), value) for name, value in statics.items()]
        last_use: dict[int, int] = {}
        for i, step in enumerate(steps):
            for x in step.inputs:
                last_use[slot(x)] = i
            for o in step.outputs:
                slot(o)
        for name in outputs:
            slot(name)
        keep = {slots[o] for o in outputs} | {s for s, _ in self.statics}
        frees: list[list[int]] = [[] for _ in steps]
        for s, last in last_use.items():
            if s not in keep:
                frees[last].append(s)
        self.calls = [_Call(step.fn, tuple(slots[x] for x in step.inputs), tuple(slots[o] for o in step.outputs),
                            tuple(frees[i]), tuple((slots[o], after[o]) for o in step.outputs if o in after),
                            step.node, step.op_type) for i, step in enumerate(steps)]
        self.input_after = [(slots[n], after[n]) for n in inputs if n in after]
        self.n_slots = len(slots)
        self.in_slots = [slots[n] for n in inputs]
        self.out_slots = [slots[n] for n in outputs]

    def run(self, inputs: Sequence[Any], profile: list[tuple[str, str, float]] | None = None) -> list[Any]:
        """The outputs' values from the inputs' (in the order given at construction); ``profile`` collects
        (node, op type, seconds) per call."""
        env: list[Any] = [None] * self.n_slots
        for s, v in zip(self.in_slots, inputs):
            env[s] = v
        for s, v in self.statics:
            env[s] = v
        for s, hook in self.input_after:
            env[s] = hook(env[s])
        # no cyclic garbage collection in the middle of a run (a pass costs tens of microseconds; a run's
        # own objects are freed by reference counting)
        collect = gc.isenabled()
        gc.disable()
        try:
            with torch.inference_mode():
                for c in self.calls:
                    t0 = time.perf_counter() if profile is not None else 0.0
                    res = c.fn(*[env[i] for i in c.ins])
                    if len(c.outs) == 1:
                        env[c.outs[0]] = res[0] if isinstance(res, (tuple, list)) else res
                    else:
                        for s, r in zip(c.outs, res):
                            env[s] = r
                    for s, hook in c.after:
                        env[s] = hook(env[s])
                    for s in c.free:
                        env[s] = None
                    if profile is not None:
                        profile.append((c.node, c.op_type, time.perf_counter() - t0))
        finally:
            if collect:
                gc.enable()
        return [env[s] for s in self.out_slots]
