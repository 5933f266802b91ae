"""htp integer kernels: pointwise nonlinearities as lookup tables (see registry.py for the conventions).

A unary op on a quantized activation is a function of the input code alone, so it runs as one
table lookup: ``out = table[q]`` with 2^bw entries (256 for 8-bit inputs, 65536 for 16-bit).
The table is built once, in float64 on the host, by running the cpu backend's float kernel of the
op (through the shared fallback path, ``openqnn.backends.fallback``) on every dequantized input code:

    table[q] = clamp(round_half_even(f((q + offset_in) * s_in) / s_out) - offset_out, qmin, qmax)

with NaN -> the code of real 0 and +-inf -> qmax / qmin. The reference path indexes the table in
numpy, the fast path gathers from the same table as a torch tensor, so both give the same bits by
construction. Every op with a float kernel gets an exact table: Sigmoid, Tanh, Gelu, HardSwish,
HardSigmoid, Elu, Selu, Celu, Mish, Exp, Log, SquareRoot, Rsqrt, Reciprocal, Softplus, Softsign,
Erf, Neg, Abs, Sign, Floor, Ceil, Round, the trigonometric and hyperbolic functions; and
ElementWisePower with a static one-element exponent (or base).

Reciprocal with ``htp_config.arithmetic: "qnn"`` (v68, v73, 8-bit codes): QNN's table
(``spec/qnn_unary.py``): QNN EP divides a constant 1.0 quantized in the input's encoding,
``q1 = clamp(round(1 / s_in) + z_in)``, by the input, so ``table[q] = clamp(z_out + round(s_in (q1 - z_in) /
(s_in (q - z_in)) / s_out))``; at ``q = z_in`` the real value 255.

16-bit codes with ``arithmetic: "qnn"`` (v68, v73; ``spec/qnn_unary16.py``): Abs is QNN's requantization of
``|q - z_in|`` (18-bit multiplier; rounding from 7/16 or from 1/2 by the parity of the element's index on the
second-to-last axis: two tables, ``htp.channel_table``), Log with an output scale at or below about ``2^-14`` is code 0
everywhere, Reciprocal is QNN's 16-bit Divide (``spec/qnn_div.py``) of 1.0 quantized in the input's 16-bit encoding
(clamped), SquareRoot nnlib's 10-bit reciprocal square root of the code (``spec/qnn_unary16.py``); Softplus follows
QNN's approximation (fitted, approximate); Elu from 0 up is QNN's 15-bit requantization (floored, then shifted up),
below 0 QNN's 16-bit Exp at the output scale ``s_out / alpha`` less ``alpha / s_out`` codes (``alpha / s_out`` under
2^16); Exp is QNN's exponent from the code with a four-segment cubic ``2^f`` in Q14 and a 15-bit output multiplier
(``spec/qnn_exp16.py``; steps ``s_in log2 e`` under 1); HardSwish is QNN's Q15 gate of the input code times the input
requantized to the output's codes (``spec/qnn_hardswish16.py``; ratios ``s_in / s_out`` under 64); Sin and Cos are
QNN's Q32 phase of the code, a fixed-point cubic per pi/8 of the quadrant and a sign-and-magnitude output conversion,
Atan a fixed-point quadratic per quarter of ``[0, 1]`` of ``x`` or of ``1 / x`` (``spec/qnn_trig16.py``; Atan's
reciprocal, of the top 17 bits of ``x`` floored to Q15, a table read off the simulator); Gelu is QNN's Q12 gate of
``z`` in Q14 (``spec/qnn_gelu16.py``; the gate a formula below ``|z|`` = 1, a table read off the simulator from 1 to 4,
then 4095); the rest is exact rounding. Gelu's tanh form is computed as the erf form with QNN's arithmetic on v68 and
v73, at 8 and 16 bits, as the HTP does (``gelu_form``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from openqnn.backends.fallback import FloatKernel, float_kernel
from openqnn.backends.htp.kernels.elementwise import act_params, operand_params
from openqnn.backends.htp.kernels.registry import (
    HtpBuildContext,
    HtpStep,
    QParams,
    Unsupported,
    bind_step,
    compact_codes,
    htp_binder,
    htp_kernel,
    plan_tensor,
    storage_dtype,
    wide_codes,
)
from openqnn.backends.htp.kernels.scratch import step_buffer
from openqnn.backends.htp.native import lookup_or
from openqnn.backends.htp.spec.qnn_exp16 import exp16_table_for
from openqnn.backends.htp.spec.qnn_gelu16 import gelu16_table_for, gelu_form
from openqnn.backends.htp.spec.qnn_hardswish16 import hardswish16_table_for
from openqnn.backends.htp.spec.qnn_trig16 import TRIG16_OPS, trig16_table_for
from openqnn.backends.htp.spec.qnn_unary import reciprocal_table_for
from openqnn.backends.htp.spec.qnn_unary16 import row_parity, unary16_tables_for
from openqnn.backends.plan import StepPlan
from openqnn.ir.graph import Node
from openqnn.ops.elementwise import UNARY

__all__ = ["LUT_OPS", "build_table", "channel_table_step", "quantize_table", "table_step"]

# Relu is a clamp (elementwise.py); Not takes booleans.
LUT_OPS = (*(op for op in UNARY if op not in ("Relu", "ElementWiseNot")), "Elu", "Selu", "Celu", "HardSigmoid")


def quantize_table(y: np.ndarray, qo: QParams) -> np.ndarray:
    """Float64 values -> codes of the per-tensor encoding ``qo`` (NaN: the code of 0)."""
    y = np.asarray(y, dtype=np.float64)
    lim = 2.0**40 * float(qo.scale[0])  # (no overflow dividing infinities or huge values by the scale)
    return qo.codes(np.clip(np.where(np.isnan(y), 0.0, y), -lim, lim))


def _codes(qi: QParams) -> torch.Tensor:
    codes = np.arange(1 << qi.bitwidth, dtype=np.float64)
    return torch.from_numpy((codes + float(qi.offset[0])) * float(qi.scale[0]))


def _float_kernel(node: Node, ctx: HtpBuildContext) -> FloatKernel:
    """The fallback backend's float kernel of ``node``: a table is that function on every input code."""
    try:
        return float_kernel(node, ctx.graph, "cpu")
    except Unsupported as e:
        raise Unsupported(f"no float kernel for {node.op_type} to build its table from ({e})") from None


def build_table(fn: Callable[[torch.Tensor], torch.Tensor], qi: QParams, qo: QParams) -> np.ndarray:
    """``fn`` (float64 torch -> torch) on every code of ``qi``, quantized to ``qo`` (int64)."""
    with torch.inference_mode(), np.errstate(all="ignore"):
        y = fn(_codes(qi))
    return quantize_table(y.to(torch.float64).numpy(), qo)


# 8-bit tables QNN's HTP computes in float32 (v68, v73, with QNN's arithmetic): the input dequantized in float32, the
# function in float32, divided by the float32 output scale, rounded half to even. Exact rounding differs where the value
# sits on a tie: calibration gives HardSigmoid's [0, 1] and Sigmoid's near it an output scale of 1/255, which puts 0.5
# on one (float32's 0.5 / float32(1/255) is just below 127.5: code 127, exact rounding 128). Measured, docs/htp-
# fidelity.md, "16-bit Gelu and Atan as measured tables (stop 30)": HardSigmoid every code of 20 tie-heavy probes
# (alpha 0.2 and 1/6) and of the sweep's cases, Sigmoid every code of 42 tie-prone encodings, v68 and v73 (exact
# rounding misses some of each). Elu is not: float32 and exact rounding each miss a few codes, neither fewer
# throughout; Tanh and Exp: no probe tells them apart.
FLOAT32_TABLE_OPS = ("HardSigmoid", "Sigmoid")


def build_table_f32(fn: Callable[[torch.Tensor], torch.Tensor], qi: QParams, qo: QParams) -> np.ndarray:
    """``fn`` (float32 torch -> torch) on every code of ``qi`` dequantized in float32, over ``qo``'s float32 scale,
    rounded half to even (int64 codes; NaN: the code of 0)."""
    codes = torch.arange(1 << qi.bitwidth, dtype=torch.float32)
    x = torch.tensor(float(qi.scale[0]), dtype=torch.float32) * (codes + float(qi.offset[0]))
    with torch.inference_mode(), np.errstate(all="ignore"):
        y = fn(x).to(torch.float32)
    v = torch.round(y / torch.tensor(float(qo.scale[0]), dtype=torch.float32)).to(torch.float64).numpy()
    v = np.nan_to_num(v, nan=0.0, posinf=1e12, neginf=-1e12)
    return np.clip(v - float(qo.offset[0]), 0, (1 << qo.bitwidth) - 1).astype(np.int64)


def table_step(node: Node, ctx: HtpBuildContext, x_name: str, table: np.ndarray, qo: QParams) -> HtpStep:
    """An ``htp.lut`` step of ``x_name``: ``out = table[q]`` (int64 codes of ``qo``)."""
    plan = StepPlan("htp.lut", node.name, node.op_type, (x_name,), tuple(node.outputs),
                    {"bits": qo.bitwidth, "out_shape": list(ctx.shape(node.outputs[0]))},
                    {"table": compact_codes(table, qo.bitwidth)})
    return bind_step(plan, ctx.device)


def channel_table_step(node: Node, ctx: HtpBuildContext, x_name: str, tables: np.ndarray, channel_shape: tuple[int, ...],
                       qo: QParams, rows: np.ndarray | None = None) -> HtpStep:
    """An ``htp.channel_table`` step: ``out = tables[c, q]`` with the table row ``c`` of each element given by an
    index array of ``channel_shape`` (``C`` rows of ``2^bw`` codes; ``channel_shape`` broadcasts against the input,
    e.g. ``(C,)`` for channels last or ``(C, 1, 1)`` for NCHW): ``0 .. C - 1``, or ``rows`` where given."""
    n, width = tables.shape
    index = np.arange(n, dtype=np.int64) if rows is None else np.asarray(rows, np.int64)
    base = (index * width).reshape(channel_shape)
    plan = StepPlan("htp.channel_table", node.name, node.op_type, (x_name,), tuple(node.outputs),
                    {"bits": qo.bitwidth, "out_shape": list(ctx.shape(node.outputs[0]))},
                    {"table": compact_codes(np.ascontiguousarray(tables.reshape(-1)), qo.bitwidth), "base": base})
    return bind_step(plan, ctx.device)


@htp_binder("htp.channel_table")
def _bind_channel_table(plan: StepPlan, device: torch.device) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """``out = table[q + base]``, ``base`` (``256 c``) broadcast against the input."""
    table = wide_codes(plan.arrays["table"])
    base = np.asarray(plan.arrays["base"], dtype=np.int64)
    table_t = plan_tensor(plan.arrays["table"], device, storage_dtype(int(plan.attrs["bits"])))
    base_t = plan_tensor(base, device)
    out_shape = tuple(plan.attrs["out_shape"])

    def reference(x: np.ndarray) -> np.ndarray:
        return table()[np.asarray(x, dtype=np.int64) + base].reshape(out_shape)

    def fast(x: torch.Tensor) -> torch.Tensor:
        idx = x.to(torch.int64) + base_t
        return table_t.index_select(0, idx.reshape(-1)).reshape(out_shape)

    return reference, fast


@htp_binder("htp.lut")
def _bind_lut(plan: StepPlan, device: torch.device) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """``out = table[q]``: the reference indexes the table in numpy, the fast path gathers from it as a
    tensor (in C for 8-bit codes)."""
    table = wide_codes(plan.arrays["table"])
    table_t = plan_tensor(plan.arrays["table"], device, storage_dtype(int(plan.attrs["bits"])))
    out_shape = tuple(plan.attrs["out_shape"])  # a one-element constant may add leading 1s

    def reference(x: np.ndarray) -> np.ndarray:
        return table()[np.asarray(x, dtype=np.int64)].reshape(out_shape)

    def fast_t(x: torch.Tensor) -> torch.Tensor:
        return table_t[x.to(torch.int64)].reshape(out_shape)

    return reference, lookup_or(table_t, fast_t, out_shape, step_buffer(out_shape, device))  # 8-bit: in C


# QNN's rules that give one table of every input code, by op type: each takes the node (for its attributes) and
# (arch, arithmetic, s_in, z_in, s_out, z_out, in_bits, out_bits), and gives None where its rule does not hold
TableFor = Callable[..., "np.ndarray | None"]
_QNN_TABLES: dict[str, TableFor] = {
    "ElementWiseReciprocal": lambda node, *enc: reciprocal_table_for(*enc),
    "ElementWiseExp": lambda node, *enc: exp16_table_for(*enc),
    "Gelu": lambda node, *enc: gelu16_table_for(*enc, approximate=str(node.attrs.get("approximate", "none"))),
    "HardSwish": lambda node, *enc: hardswish16_table_for(*enc),
    **{op: (lambda node, *enc, op=op: trig16_table_for(op, *enc)) for op in TRIG16_OPS},
}


@htp_kernel(*LUT_OPS)
def unary(node: Node, ctx: HtpBuildContext) -> HtpStep:
    x_name = node.inputs[0]
    qi, qo = act_params(ctx, x_name), act_params(ctx, node.outputs[0])
    enc = (ctx.arch.name, ctx.arithmetic, float(qi.scale[0]), int(qi.zero_point[0]), float(qo.scale[0]),
           int(qo.zero_point[0]), qi.bitwidth, qo.bitwidth)
    if node.op_type == "Gelu":  # the form the HTP computes (the erf form, with QNN's arithmetic)
        form = gelu_form(ctx.arch.name, ctx.arithmetic, str(node.attrs.get("approximate", "none")))
        node = dataclasses.replace(node, attrs={**node.attrs, "approximate": form})
    table_for = _QNN_TABLES.get(node.op_type)
    table = table_for(node, *enc) if table_for is not None else None
    if table is not None:
        return table_step(node, ctx, x_name, table, qo)
    tables = unary16_tables_for(node.op_type, *enc, alpha=float(node.attrs.get("alpha", 1.0)))
    if tables is not None:
        rows = row_parity(tuple(ctx.shape(x_name)))
        if len(tables) == 1 or not rows.any():
            return table_step(node, ctx, x_name, tables[0], qo)
        return channel_table_step(node, ctx, x_name, tables, rows.shape, qo, rows=rows)
    if (node.op_type in FLOAT32_TABLE_OPS and ctx.arithmetic == "qnn" and ctx.arch.name in ("v68", "v73")
            and qi.bitwidth == qo.bitwidth == 8):
        return table_step(node, ctx, x_name, build_table_f32(_float_kernel(node, ctx).fn, qi, qo), qo)
    return table_step(node, ctx, x_name, build_table(_float_kernel(node, ctx).fn, qi, qo), qo)


@htp_kernel("ElementWisePower")
def power(node: Node, ctx: HtpBuildContext) -> HtpStep:
    """x ** c or c ** x with a static one-element c: a table of the run-time operand."""
    a, b = node.inputs[:2]
    static = [n for n in (a, b) if ctx.is_static(n)]
    if len(static) != 1 or ctx.graph.tensors[static[0]].size != 1:
        raise Unsupported("ElementWisePower runs on htp with one static one-element operand")
    x_name = b if static[0] == a else a
    qi, qo = act_params(ctx, x_name), act_params(ctx, node.outputs[0])
    if ctx.graph.tensors[static[0]].encoding is not None:
        operand_params(ctx, static[0])
    kernel = _float_kernel(node, ctx)
    c = kernel.statics[static[0]].to(torch.float64).reshape(())
    fn = (lambda x: kernel.fn(x, c)) if x_name == a else (lambda x: kernel.fn(c, x))
    return table_step(node, ctx, x_name, build_table(fn, qi, qo), qo)
