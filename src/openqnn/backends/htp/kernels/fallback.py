"""A node htp cannot run, as a step: the fallback backend's (cpu) float kernel, in float between conversion
steps at the edges of the fallback region.

The step is data like any other (kernel ``htp.cpu_fallback``): the cpu step plan of the node (through the
shared fallback path, :mod:`openqnn.backends.fallback`; its tensor declarations carry the encodings) and the
reason htp refused the node. A context binary holds it, and a session opened from one reports it as a fallback.

Conversions happen once per edge, not per consumer: an encoded tensor that htp makes and fallback steps read
is dequantized by one ``htp.edge_dequantize`` step, and one a fallback step makes and htp reads (or the
application, as an output) is quantized by one ``htp.edge_quantize`` step; between fallback steps it stays
float. Such a fallback step reads and writes the float tensors (``<name>#float``) and converts nothing itself
(its attribute ``float_io``); one without it (contexts written before) converts its own inputs and outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
from openqnn.ir.tensor import Encoding
from openqnn.quantization.encodings import math as qmath

__all__ = ["DEQUANTIZE_KERNEL", "KERNEL", "QUANTIZE_KERNEL", "build_fallback", "dequantize_t", "edge_step", "quantize_t"]

KERNEL = "htp.cpu_fallback"
DEQUANTIZE_KERNEL = "htp.edge_dequantize"  # integers -> float, once per tensor entering a fallback region
QUANTIZE_KERNEL = "htp.edge_quantize"  # float -> integers, once per tensor leaving one
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
    scale, offset = _qtensors(q, x)
    v = qmath.quantize(x.to(torch.float64), scale, offset, q.bitwidth, q.signed)
    return v.to(storage_dtype(q.bitwidth) if not q.signed else torch.int32)


def dequantize_t(v: torch.Tensor, q: QParams) -> torch.Tensor:
    """storage integers -> float32: (v + offset) * scale."""
    scale, offset = _qtensors(q, v)
    return qmath.dequantize(v.to(torch.float64), scale, offset).to(torch.float32)


def _qtensors(q: QParams, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``q``'s scale and offset as float64 tensors on ``x``'s device, shaped to broadcast against it."""
    shape = _qshape(q, x.dim())
    return (torch.as_tensor(q.scale, dtype=torch.float64, device=x.device).reshape(shape),
            torch.as_tensor(q.offset, dtype=torch.float64, device=x.device).reshape(shape))


def build_fallback(node: Node, ctx: HtpBuildContext, reason: str, float_io: Mapping[str, str] | None = None
                   ) -> HtpStep:
    """``node`` on the fallback backend, ``reason`` why htp refused it; raises UnsupportedOpError when the
    fallback has no kernel either. Where the cpu step is not data (an attribute JSON cannot carry), the step
    runs all the same, with no plan: a context binary refuses the graph, naming the node.

    ``float_io``: the step reads and writes float tensors, encoded tensor name -> its float tensor's name
    (the edge steps convert); None: it dequantizes its encoded inputs and quantizes its encoded outputs."""
    graph = ctx.graph
    try:
        cpu_plan, kernel = fallback_step(node, graph, ctx.device)
    except Unsupported as e:
        raise UnsupportedOpError(f"node '{node.name}' ({node.op_type}) runs neither on htp ({reason}) "
                                 f"nor on the cpu fallback ({e})") from None
    except UnsupportedOpError:
        cpu_plan, kernel = None, float_kernel(node, graph, ctx.device)
    rename = dict(float_io or {})
    inputs = [rename.get(x, x) for x in kernel.runtime_inputs]
    outputs = [rename.get(o, o) for o in node.outputs]
    if cpu_plan is None:
        ref = _wrap(kernel, list(node.outputs), True, float_io is not None)
        fast = _wrap(kernel, list(node.outputs), False, float_io is not None)
        return HtpStep(ref, fast, inputs, outputs, node.name, node.op_type, None)
    # (the encodings it converts with are the cpu step's own tensor declarations)
    cpu_doc, cpu_arrays = cpu_plan.to_data()
    attrs: dict[str, Any] = {"reason": reason, "cpu": cpu_doc}
    if float_io is not None:
        attrs["float_io"] = True
    arrays = {_CPU + k: v for k, v in cpu_arrays.items()}
    plan = StepPlan(KERNEL, node.name, node.op_type, tuple(inputs), tuple(outputs), attrs, arrays)
    return bind_step(plan, ctx.device)


def edge_step(tensor: str, float_name: str, enc: Encoding, to_float: bool, device: torch.device) -> HtpStep:
    """The one conversion of an encoded tensor at the edge of a fallback region: ``tensor`` (integers) ->
    ``float_name`` where ``to_float``, else the other way."""
    q = QParams.of(enc)
    attrs = {"edge": True, "bitwidth": q.bitwidth, "axis": q.axis, "signed": q.signed}
    arrays = {"scale": q.scale, "offset": q.offset}
    src, dst = (tensor, float_name) if to_float else (float_name, tensor)
    plan = StepPlan(DEQUANTIZE_KERNEL if to_float else QUANTIZE_KERNEL, dst, "Dequantize" if to_float else "Quantize",
                    (src,), (dst,), attrs, arrays)
    return bind_step(plan, device)


def _edge_qparams(plan: StepPlan) -> QParams:
    a = plan.attrs
    # (copies: a context's arrays are read-only views, which torch warns about)
    return QParams(int(a["bitwidth"]), np.array(plan.arrays["scale"], np.float64),
                   np.array(plan.arrays["offset"], np.int64), a["axis"], bool(a["signed"]))


@htp_binder(DEQUANTIZE_KERNEL)
def _bind_dequantize(plan: StepPlan, device: torch.device) -> tuple[Callable[..., Any], Callable[..., Any]]:
    q = _edge_qparams(plan)

    def reference(v: np.ndarray) -> np.ndarray:
        return dequantize_t(torch.from_numpy(np.asarray(v)), q).numpy()

    return reference, lambda v: dequantize_t(v, q)


@htp_binder(QUANTIZE_KERNEL)
def _bind_quantize(plan: StepPlan, device: torch.device) -> tuple[Callable[..., Any], Callable[..., Any]]:
    q = _edge_qparams(plan)

    def reference(x: np.ndarray) -> np.ndarray:
        return quantize_t(torch.from_numpy(np.asarray(x, np.float32)), q).numpy().astype(np.int64)

    return reference, lambda x: quantize_t(x.to(torch.float32), q)


@htp_binder(KERNEL)
def _bind_fallback(plan: StepPlan, device: torch.device) -> tuple[Callable[..., Any], Callable[..., Any]]:
    cpu = StepPlan.from_json(plan.attrs["cpu"], {k[len(_CPU):]: v for k, v in plan.arrays.items()
                                                 if k.startswith(_CPU)})
    kernel = bind_fallback(cpu, device)
    outputs = list(cpu.outputs)
    float_io = bool(plan.attrs.get("float_io", False))
    return _wrap(kernel, outputs, True, float_io), _wrap(kernel, outputs, False, float_io)


def _wrap(kernel: FloatKernel, outputs: list[str], reference: bool, float_io: bool) -> Callable[..., Any]:
    """The float kernel, its static inputs bound as the cpu simulation sees them (quantize-dequantized when
    encoded); unless ``float_io``, between dequantize (encoded run-time inputs) and quantize (encoded outputs).
    ``reference``: numpy in and out (int64 storage values), as the reference path runs."""
    fn, inputs, statics = kernel.fn, kernel.inputs, kernel.statics
    encs = {} if float_io else {n: QParams.of(enc) for n, enc in kernel.encodings.items()}

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
