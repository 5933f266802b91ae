"""Per-thread scratch buffers for the htp kernels' fast-path intermediates (see :func:`scratch`)."""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable, Sequence

import torch

__all__ = ["SCRATCH_MAX_BYTES", "output_slot", "release_scratch", "scratch", "step_buffer", "step_output"]


class _Scratch(threading.local):
    def __init__(self) -> None:
        self.bufs: dict[tuple[str, torch.dtype, torch.device, bool], torch.Tensor] = {}
        self.views: dict[tuple[str, tuple[int, ...], torch.dtype, torch.device, bool], torch.Tensor] = {}
        self.outs: dict[tuple[str, tuple[int, ...], bool], torch.Tensor] = {}  # step_output's, by slot and shape


_SCRATCH = _Scratch()
SCRATCH_MAX_BYTES = 1 << 27  # larger intermediates are allocated per call


def scratch(slot: str, shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A per-thread reusable buffer for a step's intermediate (its contents are garbage).

    Multi-megabyte temporaries allocated per call cost page faults on every call (the allocator
    returns them to the OS); steps of one thread run one after another, so each slot is reused.
    A step must not hand a scratch tensor to the next one (outputs are fresh, or :func:`step_output`). Buffers made
    under ``torch.inference_mode`` (how the executable runs) are kept apart from the others."""
    shape = tuple(shape)
    inference = torch.is_inference_mode_enabled()
    vkey = (slot, shape, dtype, device, inference)
    view = _SCRATCH.views.get(vkey)
    if view is not None:
        return view
    n = math.prod(shape)
    if n * dtype.itemsize > SCRATCH_MAX_BYTES:
        return torch.empty(shape, dtype=dtype, device=device)
    key = (slot, dtype, device, inference)
    buf = _SCRATCH.bufs.get(key)
    if buf is None or buf.numel() < n:
        buf = torch.empty(max(n, 1024), dtype=dtype, device=device)
        _SCRATCH.bufs[key] = buf
        for k in [k for k in _SCRATCH.views if (k[0], k[2], k[3], k[4]) == key]:
            del _SCRATCH.views[k]  # views of the old buffer
    view = buf[:n].view(shape)
    _SCRATCH.views[vkey] = view
    return view


_SLOTS = itertools.count()


def output_slot(kind: str) -> str:
    """A scratch slot of its own for one step's output (see :func:`step_output`)."""
    return f"{kind}:{next(_SLOTS)}"


def step_output(slot: str, shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A step's output in a per-thread buffer of the step's own slot (:func:`output_slot`), reused
    from run to run instead of allocated (about a microsecond per tensor, and no page faults).

    The exception to "outputs are always fresh": safe because a step runs once per run and nothing
    outside a run keeps a step's output (the executable copies the graph's outputs). A slot is one
    step's, so its dtype and device never change: the lookup is by slot and shape alone (it runs
    once per step and run, so it is kept short)."""
    key = (slot, shape if type(shape) is tuple else tuple(shape), torch.is_inference_mode_enabled())
    out = _SCRATCH.outs.get(key)
    if out is None:
        out = _SCRATCH.outs[key] = scratch(slot, shape, dtype, device)
    return out


def step_buffer(shape: Sequence[int], device: torch.device, dtype: torch.dtype = torch.uint8
                ) -> Callable[[], torch.Tensor]:
    """A new step's output buffer as a function of no arguments (:func:`step_output` of a slot of its own)."""
    slot, shape = output_slot("out"), tuple(shape)
    return lambda: step_output(slot, shape, dtype, device)


def release_scratch() -> None:
    """Drop this thread's scratch buffers."""
    _SCRATCH.bufs.clear()
    _SCRATCH.views.clear()
    _SCRATCH.outs.clear()
