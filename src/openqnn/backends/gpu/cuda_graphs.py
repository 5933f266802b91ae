"""CUDA graphs for small batches: one capture of a plan's run, replayed with new inputs.

At batch 1 to :data:`MAX_BATCH` a run is many small kernels, and launching them from Python costs more than
running them; a CUDA graph records the launches once and replays them in one call. Larger batches are
bound by the kernels themselves, so they run eagerly. A graph is captured at the first run (after warm-up
runs on a side stream, as PyTorch's documentation asks); a plan whose kernels cannot be captured (one that
reads a value back to the host, say) runs eagerly from then on, with one log line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch

log = logging.getLogger("openqnn.gpu")

__all__ = ["MAX_BATCH", "CapturedRun", "use_cuda_graph"]

MAX_BATCH = 8
WARMUP_RUNS = 2

RunFn = Callable[[Sequence[torch.Tensor]], list[torch.Tensor]]


def use_cuda_graph(device: torch.device, input_shapes: Sequence[tuple[int, ...]], max_batch: int = MAX_BATCH) -> bool:
    """Whether runs on ``device`` with inputs of these shapes are captured: a CUDA device, and a batch (the
    first dimension of every input of rank 1 or more) of at most ``max_batch``."""
    if device.type != "cuda":
        return False
    batches = [s[0] for s in input_shapes if len(s) >= 1]
    return all(0 < b <= max_batch for b in batches)


class CapturedRun:
    """``run`` captured as a CUDA graph over fixed input buffers. Calling it copies the inputs in and replays;
    the outputs it returns are the graph's own buffers, overwritten by the next call (copy them out first)."""

    def __init__(self, run: RunFn, inputs: Sequence[torch.Tensor]):
        device = inputs[0].device if inputs else torch.device("cuda")
        self._inputs = [x.clone() for x in inputs]
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_RUNS):
                run(self._inputs)
        torch.cuda.current_stream(device).wait_stream(side)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._outputs = run(self._inputs)

    def __call__(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        for buf, x in zip(self._inputs, inputs):
            buf.copy_(x)
        self._graph.replay()
        return self._outputs
