"""One executor loop for every backend: bound steps over numbered slots.

A backend binds its plan's steps into callables (:class:`BoundStep`: ``outputs = fn(*inputs)``) and hands
them to an :class:`Executor`, which numbers every tensor, releases each intermediate right after its last
reader (so the allocator reuses its memory for later tensors) and runs the calls in order. What differs
between backends stays outside the loop: how feeds become the first values (quantized integers for htp,
torch tensors for cpu) and how outputs come back. ``after`` hooks run on a value as soon as it is made
(the cpu backend's quantization simulation quantize-dequantizes every encoded activation there).

Writing over a dead operand: a step may offer a second callable, ``over``, that writes its result over its
last input (a residual it adds, say) instead of into fresh memory. The executor calls it only where that
input's slot dies at this step, is made by an earlier step (never a graph input or a bound weight), and, at
run time, its tensor is held by nothing else (no other slot, view or caller): then the sum is accumulated where
the residual already lies, in cache, as ONNX Runtime's fused Conv + Sum does, instead of being written to a
buffer last touched a whole run ago.

Profiling: inside ``with recording() as records:`` every run on this thread (any backend) appends one
:class:`NodeRecord` per call: its start and duration, the shapes and bytes of what it read and wrote, and the
bytes of intermediates alive after it (the memory the release schedule above keeps). Outside it the loop is
the plain one.
"""

from __future__ import annotations

import contextlib
import gc
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

__all__ = ["BoundStep", "Executor", "NodeRecord", "recording"]


@dataclass(frozen=True)
class NodeRecord:
    """One call of one run, as :func:`recording` saw it: ``start`` (``time.perf_counter()`` seconds) and
    ``seconds``; the shapes and bytes of the values it read (weights bound as values included) and wrote;
    ``live_bytes``: the bytes of the activations (graph inputs and values steps made) alive once it finished
    and its dead inputs were released."""

    node: str
    op_type: str
    start: float
    seconds: float
    in_shapes: tuple[tuple[int, ...], ...]
    out_shapes: tuple[tuple[int, ...], ...]
    in_bytes: int
    out_bytes: int
    live_bytes: int


_RECORDS: ContextVar[list[NodeRecord] | None] = ContextVar("openqnn_executor_records", default=None)


@contextlib.contextmanager
def recording() -> Iterator[list[NodeRecord]]:
    """Collect a :class:`NodeRecord` per call of every executor run in this context (thread)."""
    records: list[NodeRecord] = []
    token = _RECORDS.set(records)
    try:
        yield records
    finally:
        _RECORDS.reset(token)


def _shape_bytes(value: Any) -> tuple[tuple[int, ...], int]:
    if isinstance(value, torch.Tensor):
        return tuple(value.shape), value.numel() * value.element_size()
    nbytes = getattr(value, "nbytes", None)
    if nbytes is not None:
        return tuple(getattr(value, "shape", ())), int(nbytes)
    return (), 0


class BoundStep(NamedTuple):
    """A step ready to run: ``fn(*values of inputs)`` returns the value of each output (one: the value);
    ``over``, where given, the same with the result written over the last input (see the module docstring)."""

    fn: Callable[..., Any]
    inputs: Sequence[str]
    outputs: Sequence[str]
    node: str
    op_type: str
    over: Callable[..., Any] | None = None


_use_count = getattr(torch._C, "_storage_Use_Count", None)


def _holders(value: Any) -> int:
    return sys.getrefcount(value)  # (at the depth of _sole's own call)


def _sole_refs() -> int:
    """What ``sys.getrefcount`` gives inside :func:`_sole` for a tensor only an argument list holds, as
    :meth:`Executor.run` calls it, on this interpreter (references on the stack are counted differently from
    one Python to the next); 0 (never sole) where one more holder would not show."""
    args = [torch.empty(1)]
    alone = _holders(args[-1])
    other = args[0]  # noqa: F841 (a second holder)
    return alone if _holders(args[-1]) == alone + 1 else 0


_SOLE_REFS = _sole_refs()


def _sole(value: Any) -> bool:
    """Whether ``value`` is a plain tensor that nothing but the caller's argument list holds: no other
    reference to it, no view of its storage, no tensor it is a view of."""
    return (_use_count is not None and type(value) is torch.Tensor and sys.getrefcount(value) == _SOLE_REFS
            and value._base is None and _use_count(value.untyped_storage()._cdata) == 2)


@dataclass(slots=True)  # (not frozen: a frozen dataclass's __init__ costs a microsecond more per step bound)
class _Call:
    fn: Callable[..., Any]
    ins: tuple[int, ...]
    outs: tuple[int, ...]
    free: tuple[int, ...]  # slots whose last reader is this call
    after: tuple[tuple[int, Callable[[Any], Any]], ...]  # hooks on this call's outputs
    node: str
    op_type: str
    over: Callable[..., Any] | None  # fn writing over the last input, where its slot dies here (else None)


class Executor:
    """Runs bound steps in order over numbered slots (see the module docstring).

    ``inputs`` and ``outputs`` name the graph's; ``statics`` gives values steps read that no step makes
    (weights bound as tensors); ``after`` maps a tensor name to a hook run on its value once made (graph
    inputs included)."""

    def __init__(self, steps: Sequence[BoundStep], inputs: Sequence[str], outputs: Sequence[str],
                 statics: Mapping[str, Any] | None = None, after: Mapping[str, Callable[[Any], Any]] | None = None):
        statics, after = statics or {}, after or {}
        # (this runs once per prepare and per context opened: written for hundreds of steps, with the slots'
        # lookups mapped in C)
        slots: dict[str, int] = {}
        number = slots.setdefault
        for name in inputs:
            number(name, len(slots))
        self.statics = [(number(name, len(slots)), value) for name, value in statics.items()]
        ins: list[tuple[int, ...]] = []
        outs: list[tuple[int, ...]] = []
        last_use: dict[int, int] = {}
        for i, step in enumerate(steps):
            for x in step.inputs:
                number(x, len(slots))
            xs = tuple(map(slots.__getitem__, step.inputs))
            last_use.update(dict.fromkeys(xs, i))
            for o in step.outputs:
                number(o, len(slots))
            ins.append(xs)
            outs.append(tuple(map(slots.__getitem__, step.outputs)))
        for name in outputs:
            number(name, len(slots))
        keep = {slots[o] for o in outputs} | {s for s, _ in self.statics}
        frees: list[list[int]] = [[] for _ in steps]
        for s, last in last_use.items():
            if s not in keep:
                frees[last].append(s)
        made = {s for o in outs for s in o} - {slots[n] for n in inputs}

        def over(i: int, step: BoundStep) -> Callable[..., Any] | None:
            if step.over is None or not step.inputs:
                return None
            last = ins[i][-1]
            sole = last in frees[i] and last in made and ins[i].count(last) == 1
            return step.over if sole else None

        self.calls = [_Call(step.fn, ins[i], outs[i], tuple(frees[i]),
                            tuple((slots[o], after[o]) for o in step.outputs if o in after) if after else (),
                            step.node, step.op_type, over(i, step))
                      for i, step in enumerate(steps)]
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
        records = _RECORDS.get()
        if records is not None:
            return self._run_recorded(env, records)
        # no cyclic garbage collection in the middle of a run (a pass costs tens of microseconds; a run's
        # own objects are freed by reference counting)
        collect = gc.isenabled()
        gc.disable()
        try:
            with torch.inference_mode():
                for c in self.calls:
                    t0 = time.perf_counter() if profile is not None else 0.0
                    args = [env[i] for i in c.ins]
                    if c.over is not None:
                        env[c.ins[-1]] = None  # (its last reader is this call)
                        res = (c.over if _sole(args[-1]) else c.fn)(*args)
                    else:
                        res = c.fn(*args)
                    del args
                    if len(c.outs) == 1:
                        env[c.outs[0]] = res[0] if isinstance(res, (tuple, list)) else res
                    else:
                        for s, r in zip(c.outs, res):
                            env[s] = r
                    res = r = None  # (the outputs live in env alone: a later step may write over them)
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

    def _run_recorded(self, env: list[Any], records: list[NodeRecord]) -> list[Any]:
        """The loop of :meth:`run`, appending a :class:`NodeRecord` per call. A value on a GPU is waited for
        before the clock stops, so each call's time is its own. (The call and its outputs' stores are written
        out in both loops, not shared through a function: :meth:`run` is the hot path of every backend, and a
        call per step costs it measurably on small models.)"""
        sizes = [0] * self.n_slots  # activations only: weights bound as values stay out of live_bytes
        for s in self.in_slots:
            sizes[s] = _shape_bytes(env[s])[1]
        live = sum(sizes)
        with torch.inference_mode():
            for c in self.calls:
                ins = [_shape_bytes(env[i]) for i in c.ins]
                t0 = time.perf_counter()
                args = [env[i] for i in c.ins]
                if c.over is not None:
                    env[c.ins[-1]] = None
                    res = (c.over if _sole(args[-1]) else c.fn)(*args)
                else:
                    res = c.fn(*args)
                del args
                if len(c.outs) == 1:
                    env[c.outs[0]] = res[0] if isinstance(res, (tuple, list)) else res
                else:
                    for s, r in zip(c.outs, res):
                        env[s] = r
                res = r = None
                for s, hook in c.after:
                    env[s] = hook(env[s])
                if any(isinstance(env[s], torch.Tensor) and env[s].is_cuda for s in c.outs):
                    torch.cuda.synchronize()
                t1 = time.perf_counter()
                outs = [_shape_bytes(env[s]) for s in c.outs]
                for s, (_, nbytes) in zip(c.outs, outs):
                    live += nbytes - sizes[s]
                    sizes[s] = nbytes
                for s in c.free:
                    env[s] = None
                    live -= sizes[s]
                    sizes[s] = 0
                records.append(NodeRecord(c.node, c.op_type, t0, t1 - t0, tuple(sh for sh, _ in ins),
                                          tuple(sh for sh, _ in outs), sum(b for _, b in ins),
                                          sum(b for _, b in outs), live))
        return [env[s] for s in self.out_slots]
