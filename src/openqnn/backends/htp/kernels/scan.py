"""htp kernels: the CumulativeSum of quantized codes (see registry.py for the conventions).

With ``htp_config.arithmetic: "qnn"`` (v68, v73; unsigned 8- or 16-bit codes of one width, the last axis, neither
exclusive nor reverse) QNN's scan (``spec/qnn_cumsum.py``): float32 throughout, each output quantized and the next
started from it (``v = f(f(s_out) (y - z_out)) + f(f(s_in) (q - z_in))``, ``y = clamp(rint(f(v inv) + z_out))``),
a loop over the axis in both paths (numpy float32 and torch float32: the same IEEE single roundings, no fused
multiply-add). Everything else (``tflite``, other axes, exclusive or reverse) raises Unsupported: the cpu fallback,
as before. The integer (unquantized) CumulativeSum stays in ``reduce.py``, which hands quantized ones here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from openqnn.backends.htp.kernels.common import c_array, quantized_io, to_storage
from openqnn.backends.htp.kernels.registry import HtpBuildContext, HtpStep, Unsupported, bind_step, htp_binder
from openqnn.backends.htp.spec.qnn_cumsum import cumsum_codes, cumsum_consts_for
from openqnn.backends.plan import StepPlan
from openqnn.ir.graph import Node

__all__ = ["quantized_cumulative_sum"]

Bound = tuple[Callable[..., Any], Callable[..., Any]]


def quantized_cumulative_sum(node: Node, ctx: HtpBuildContext) -> HtpStep:
    """The builder of a CumulativeSum whose input is quantized (called by ``reduce.cumulative_sum``)."""
    qi, qo = quantized_io(node, ctx)
    rank = len(ctx.shape(node.inputs[0]))
    if rank == 0:
        raise Unsupported("CumulativeSum of a scalar")
    axis = int(node.attrs["axis"]) % rank
    consts = cumsum_consts_for(ctx.arch.name, ctx.arithmetic, qi.bitwidth, qo.bitwidth, qi.signed or qo.signed,
                               axis == rank - 1, bool(node.attrs["exclusive"]), bool(node.attrs["reverse"]),
                               float(qi.scale[0]), int(qi.zero_point[0]), float(qo.scale[0]), int(qo.zero_point[0]))
    if consts is None:
        raise Unsupported("CumulativeSum of a quantized tensor: QNN's scan is established for the last axis "
                          "of unsigned 8- or 16-bit codes with arithmetic 'qnn', not exclusive or reverse")
    plan = StepPlan("htp.cumsum_qnn", node.name, node.op_type, (node.inputs[0],), tuple(node.outputs),
                    {**consts, "bits": qo.bitwidth})
    return bind_step(plan, ctx.device)


@htp_binder("htp.cumsum_qnn")
def _bind_cumsum_qnn(plan: StepPlan, device: torch.device) -> Bound:
    p = plan.attrs
    z_in, z_out, qmax, bits = int(p["z_in"]), int(p["z_out"]), int(p["qmax"]), int(p["bits"])
    si, so, inv = np.float32(p["s_in"]), np.float32(p["s_out"]), np.float32(p["inv"])
    zo = np.float32(z_out)
    si_t, so_t, inv_t, zo_t = (torch.tensor(float(v), dtype=torch.float32, device=device) for v in (si, so, inv, zo))

    def reference(a: np.ndarray) -> np.ndarray:  # (the spec itself)
        return c_array(cumsum_codes(np.asarray(a), float(si), z_in, float(so), z_out, bits))

    def fast(t: torch.Tensor) -> torch.Tensor:
        x = (t.to(torch.int32) - z_in).to(torch.float32) * si_t
        out = torch.empty(x.shape, dtype=torch.int32, device=x.device)
        y = torch.full(x.shape[:-1], z_out, dtype=torch.int32, device=x.device)
        for i in range(x.shape[-1]):
            v = (y - z_out).to(torch.float32) * so_t + x[..., i]
            y = torch.clamp(torch.round(v * inv_t + zo_t), 0, qmax).to(torch.int32)
            out[..., i] = y
        return to_storage(out, bits)

    return reference, fast
