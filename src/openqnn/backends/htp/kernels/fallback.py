"""A node htp cannot run, as a step: the fallback backend's (cpu) float kernel between a dequantize of its
run-time inputs and a quantize of its outputs.

The step is data like any other (kernel ``htp.cpu_fallback``): the cpu step plan of the node (through the
shared fallback path, :mod:`openqnn.backends.fallback`; its tensor declarations carry the encodings the step
converts with) and the reason htp refused the node. A context binary holds it, and a session opened from one reports it as a fallback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from openqnn.backends.fallback import FloatKernel, bind_fallback, fallback_step, float_kernel
from openqnn.backends.htp import native
from openqnn.backends.htp.kernels.registry import (
    HtpBuildContext,
    HtpStep,
    QParams,
    Unsupported,
    bind_step,
    htp_binder,
    storage_dtype,
)
from openqnn.backends.plan import StepPlan
from openqnn.errors import UnsupportedOpError
from openqnn.ir.graph import Node

__all__ = ["KERNEL", "build_fallback", "dequantize_t", "quantize_t"]

KERNEL = "htp.cpu_fallback"
_CPU = "cpu:"  # the cpu step's arrays, by their names in it


def _qshape(q: QParams, rank: int) -> list[int]:
    shape = [1] * rank
    if q.axis is not None and rank:
        shape[q.axis] = q.scale.size
    return shape


def quantize_t(x: torch.Tensor, q: QParams) -> torch.Tensor:
    """float -> storage integers: clamp(round_half_even(x / scale) - offset)."""
    if (q.axis is None and x.dtype == torch.float32 and x.device.type == "cpu" and x.is_contiguous()
            and native.library() is not None):
        dtype = storage_dtype(q.bitwidth) if not q.signed else torch.int32
        if dtype in (torch.uint8, torch.int32):
            return native.quantize(x, float(q.scale[0]), int(q.offset[0]), q.qmin, q.qmax, dtype)
    shape = _qshape(q, x.dim())
    scale = torch.as_tensor(q.scale, dtype=torch.float64, device=x.device).reshape(shape)
    offset = torch.as_tensor(q.offset, dtype=torch.float64, device=x.device).reshape(shape)
    v = torch.clamp(torch.round(x.to(torch.float64) / scale) - offset, q.qmin, q.qmax)
    return v.to(storage_dtype(q.bitwidth) if not q.signed else torch.int32)


def dequantize_t(v: torch.Tensor, q: QParams) -> torch.Tensor:
    """storage integers -> float32: (v + offset) * scale."""
    shape = _qshape(q, v.dim())
    scale = torch.as_tensor(q.scale, dtype=torch.float64, device=v.device).reshape(shape)
    offset = torch.as_tensor(q.offset, dtype=torch.float64, device=v.device).reshape(shape)
    return ((v.to(torch.float64) + offset) * scale).to(torch.float32)


def build_fallback(node: Node, ctx: HtpBuildContext, reason: str) -> HtpStep:
    """``node`` on the fallback backend, ``reason`` why htp refused it; raises UnsupportedOpError when the
    fallback has no kernel either. Where the cpu step is not data (an attribute JSON cannot carry), the step
    runs all the same, with no plan: a context binary refuses the graph, naming the node."""
    graph = ctx.graph
    try:
        cpu_plan, kernel = fallback_step(node, graph, ctx.device)
    except Unsupported as e:
        raise UnsupportedOpError(f"node '{node.name}' ({node.op_type}) runs neither on htp ({reason}) "
                                 f"nor on the cpu fallback ({e})") from None
    except UnsupportedOpError:
        cpu_plan, kernel = None, float_kernel(node, graph, ctx.device)
    if cpu_plan is None:
        ref, fast = _wrap(kernel, list(node.outputs), True), _wrap(kernel, list(node.outputs), False)
        return HtpStep(ref, fast, kernel.runtime_inputs, list(node.outputs), node.name, node.op_type, None)
    # (the encodings it converts with are the cpu step's own tensor declarations)
    cpu_doc, cpu_arrays = cpu_plan.to_data()
    attrs = {"reason": reason, "cpu": cpu_doc}
    arrays = {_CPU + k: v for k, v in cpu_arrays.items()}
    plan = StepPlan(KERNEL, node.name, node.op_type, tuple(kernel.runtime_inputs), tuple(node.outputs), attrs, arrays)
    return bind_step(plan, ctx.device)


@htp_binder(KERNEL)
def _bind_fallback(plan: StepPlan, device: torch.device) -> tuple[Callable[..., Any], Callable[..., Any]]:
    cpu = StepPlan.from_json(plan.attrs["cpu"], {k[len(_CPU):]: v for k, v in plan.arrays.items()
                                                 if k.startswith(_CPU)})
    kernel = bind_fallback(cpu, device)
    outputs = list(plan.outputs)
    return _wrap(kernel, outputs, True), _wrap(kernel, outputs, False)


def _wrap(kernel: FloatKernel, outputs: list[str], reference: bool) -> Callable[..., Any]:
    """The float kernel between dequantize (encoded run-time inputs) and quantize (encoded outputs); its
    static inputs are bound as the cpu simulation sees them (quantize-dequantized when encoded).
    ``reference``: numpy in and out (int64 storage values), as the reference path runs."""
    fn, inputs, statics = kernel.fn, kernel.inputs, kernel.statics
    encs = {n: QParams.of(enc) for n, enc in kernel.encodings.items()}

    def run(*xs: Any) -> Any:
        it = iter(xs)
        ins = []
        for x in inputs:
            if x in statics:
                ins.append(statics[x])
                continue
            v = next(it)
            if reference:
                v = torch.from_numpy(np.asarray(v))
            ins.append(dequantize_t(v, encs[x]) if x in encs else v)
        res = fn(*ins)
        outs = [res] if isinstance(res, torch.Tensor) else list(res)
        conv = [quantize_t(o, encs[n]) if n in encs else o for n, o in zip(outputs, outs)]
        if reference:
            conv = [c.cpu().numpy().astype(np.int64) if n in encs else c.cpu().numpy() for n, c in zip(outputs, conv)]
        return conv[0] if len(conv) == 1 else tuple(conv)

    return run
