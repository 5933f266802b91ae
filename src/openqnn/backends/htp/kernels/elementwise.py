"""htp integer kernels: element-wise arithmetic and clamps (see registry.py for the conventions).

Notation: an activation ``q`` (unsigned, ``bw`` bits) with encoding (s, offset) is the real
``s * (q + offset)``; ``q + offset`` = ``q - z`` is its signed value. ``mbqm`` is TFLite's
MultiplyByQuantizedMultiplier (``fixedpoint.mbqm_np``), ``mbqm64`` its int64-accumulator variant;
``(m, shift) = quantize_multiplier(r)`` represents the real ratio ``r``. Every result is
``clamp(value - offset_out, qmin, qmax)`` in the output encoding. Static operands (constants of the
graph) are taken in their own encoding (``ctx.static_q``); numpy broadcasting throughout.

- ElementWiseAdd / ElementWiseSubtract, ``htp_config.arithmetic: "qnn"`` (v68, v73, all codes 8-bit or all
  16-bit): QNN's (``spec/qnn_eltwise.py``): two 16-bit multipliers of the raw codes sharing one exponent,
  8 low bits (16-bit codes: 1) floored, an offset with the zero points and a rounding half, a final right
  shift; the plan stores the integers.
- ElementWiseAdd / ElementWiseSubtract otherwise: TFLite's reference add. ``left_shift`` = 20 when both
  operands are 8-bit, 15 otherwise; with ``twice = 2 * max(s1, s2)``:
  ``a_i = mbqm((q_i - z_i) << left_shift, s_i / twice)``, ``raw = a_1 +- a_2``,
  ``out = mbqm(raw, twice / (2^left_shift * s_out)) + z_out``.
- ElementWiseMultiply, ``"qnn"`` (v68, v73, all codes 8-bit or all 16-bit): QNN's (``spec/qnn_eltwise.py``):
  the exact product of the centred codes, a 16-bit (8-bit codes) or 31-bit (16-bit codes) multiplier, one
  rounding (16-bit: a floor, then a rounding shift by 3) with the zero point folded in.
- ElementWiseMultiply otherwise: ``acc = (q1 - z1) * (q2 - z2)``; ``out = R(acc, s1 * s2 / s_out) + z_out``
  where R is ``mbqm`` when ``|acc|`` fits int32 (both operands <= 8 bits, or 16 x 8), else ``mbqm64``.
- ElementWiseDivide: ``r = s1 / (s2 * s_out)`` as ``m * 2^-t`` (``m`` 31-bit from
  quantize_multiplier, ``t = 31 - shift``; when ``t > 46`` m is rounded down to ``t = 46``). With
  ``a = q1 - z1``, ``d = q2 - z2``: ``out = z_out + round_half_away(a * m / (d * 2^t))``, computed
  exactly as integer division of int64s (one rounding). ``d == 0``: x/0 saturates to qmax
  (a > 0) or qmin (a < 0); 0/0 gives the code of real 0. ``"qnn"`` (v68, v73, two run-time 16-bit operands,
  broadcast or not; established): QNN's, the numerator's magnitude times the ratio's rounded 15-bit significand as a
  rounded Q15 product, times nnlib's 16-bit reciprocal of the divisor's code, one rounding shift (``spec/qnn_div.py``).
- ElementWiseMaximum / ElementWiseMinimum, ``"qnn"`` (v68, v73, 8-bit run-time operands and output): QNN's
  (``spec/qnn_eltwise.py``, ``QnnConvertSpec``): each operand's codes requantized into the output's with a 15-bit
  multiplier and a rounding a little above a half, then the larger / smaller code. Otherwise (TFLite's):
- ElementWiseMaximum / ElementWiseMinimum: each operand requantized to the output encoding with
  14 bits of headroom (``mbqm((q_i - z_i) << 14, s_i / s_out / 2^14) + z_out``; identity when the
  encodings are equal, as TFLite requires), then max/min.
- Relu / ReluMinMax: TFLite's ReluX: the input requantized to the output encoding
  (``mbqm(q - z_in, s_in / s_out) + z_out``; identity when equal), then clamped to the codes of 0 /
  [min_value, max_value] (``roundf(v / s_out) + z_out`` in float32, half away from zero).

- Prelu: TFLite's two-multiplier prelu. ``a = q - z``; ``a >= 0``: ``mbqm(a, s_in / s_out)``;
  else ``R(a * (qc - zc), s_in * s_c / s_out)`` (R as for Multiply); coeff static or run-time.
  A one-element static coeff is LeakyRelu, as TFLite runs it: ``a < 0``: ``mbqm(a, alpha * s_in /
  s_out)`` with the float alpha (a negative alpha: the negated multiplier). With ``htp_config.arithmetic:
  "qnn"`` (v68, v73, 8-bit codes and slope): QNN's, exact rounding of ``a s_in / s_out`` and of
  ``a s_in alpha / s_out`` with alpha the slope's code times its scale, as a table (``spec/qnn_unary.py``;
  TFLite's double rounding parts from it on about 1 code in 20); with 16-bit codes and slope, QNN's 15-bit
  multiplier per branch, truncated, at the larger slope's shift (``spec/qnn_unary16.py``), as a table of 65,536
  codes. A static slope of several values, "qnn": each
  branch QNN's Max / Min requantization (``QnnConvertSpec``) of ``s_in / s_out`` or ``s_in alpha / s_out``, as
  tables per slope value (``htp.channel_table``; approximate, ``spec/qnn_unary.py``).

Fast paths: where the result depends on at most 2^16 combinations of run-time codes (one operand,
or two 8-bit operands, any static operand one-element) the fast path looks the result up in a
table of the reference evaluated on every combination; per-operand stages that depend on one
code (the scaled inputs of Add, the requantized operands of Maximum) are tables too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from openqnn.backends.htp.fixedpoint import (
    INT32_MAX,
    mbqm64_np,
    mbqm64_t,
    mbqm_np,
    mbqm_t,
    quantize_multiplier,
)
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
)
from openqnn.backends.htp.kernels.scratch import step_buffer
from openqnn.backends.htp.native import lookup_or
from openqnn.backends.htp.spec.qnn_div import (
    div16_apply,
    div16_multiplier_for,
    div16_scaled_numerator,
    recip16_of_divisor,
)
from openqnn.backends.htp.spec.qnn_eltwise import (
    QnnAddSpec,
    QnnMulSpec,
    add_spec_for,
    complements,
    convert_spec_for,
    convert_spec_from_attrs,
    mul_spec_for,
)
from openqnn.backends.htp.spec.qnn_unary import leaky_relu_table_for, prelu_tables_for
from openqnn.backends.htp.spec.qnn_unary16 import leaky_relu16_table_for
from openqnn.backends.plan import StepPlan
from openqnn.ir.graph import Node

__all__ = [
    "Codes",
    "RealMultiplier",
    "Rescale",
    "act_params",
    "code_of",
    "finish_np",
    "finish_t",
    "operand_params",
    "round_div_np",
    "round_div_t",
    "static_real",
]


# -- shared helpers (also used by lut.py and normalization.py) ---------------------------------

def act_params(ctx: HtpBuildContext, name: str) -> QParams:
    """The encoding of a run-time activation: per-tensor, unsigned, 8 or 16 bits."""
    if ctx.is_static(name):
        raise Unsupported(f"'{name}' is static where a run-time input is expected (constant folding handles this)")
    q = ctx.need_enc(name)
    if q.axis is not None or q.scale.size != 1:
        raise Unsupported(f"tensor '{name}' has a per-axis encoding; htp activations are per-tensor")
    if q.signed or q.bitwidth not in (8, 16):
        raise Unsupported(f"tensor '{name}' is {'signed ' if q.signed else ''}{q.bitwidth}-bit; "
                          "htp activations are unsigned 8 or 16-bit")
    if not q.scale[0] > 0 or not math.isfinite(q.scale[0]):
        raise Unsupported(f"tensor '{name}' has scale {q.scale[0]}")
    return q


def operand_params(ctx: HtpBuildContext, name: str) -> QParams:
    """An activation's encoding, or a static operand's (per-tensor, unsigned, at most 16 bits)."""
    if not ctx.is_static(name):
        return act_params(ctx, name)
    q = ctx.need_enc(name)
    if q.axis is not None or q.scale.size != 1:
        raise Unsupported(f"static operand '{name}' has a per-axis encoding; element-wise ops take per-tensor")
    if q.signed or q.bitwidth > 16 or not q.scale[0] > 0:
        raise Unsupported(f"static operand '{name}' has an unsupported encoding ({q.bitwidth}-bit)")
    return q


def static_real(ctx: HtpBuildContext, name: str) -> np.ndarray:
    """A static tensor as float64 reals: dequantized from its encoding, else its raw data."""
    t = ctx.graph.tensors[name]
    if t.data is None:
        raise Unsupported(f"static tensor '{name}' has no data")
    if t.encoding is None:
        return np.asarray(t.data, dtype=np.float64)
    q = QParams.of(t.encoding)
    shape = [1] * t.rank
    if q.axis is not None and t.rank:
        shape[q.axis] = q.scale.size
    codes = np.asarray(ctx.static_q(name), dtype=np.int64)
    return (codes + q.offset.reshape(shape)).astype(np.float64) * q.scale.reshape(shape)


def code_of(value: float, q: QParams) -> int:
    """The code of a real value in a per-tensor encoding, as TFLite quantizes activation bounds:
    clamp(roundf(v / s) - offset) in float32, rounding half away from zero (+-inf saturate)."""
    with np.errstate(all="ignore"):
        v = float(np.float32(value) / np.float32(q.scale[0]))
    if math.isnan(v):
        raise Unsupported("NaN clamp bound")
    v = min(max(v, -2.0**40), 2.0**40)
    r = math.trunc(v)
    if abs(v - r) >= 0.5:
        r += 1 if v > 0 else -1
    return int(min(max(r - int(q.offset[0]), q.qmin), q.qmax))


@dataclass(frozen=True)
class Codes:
    """What a step's output side needs at run time: its bitwidth and code range (``finish_np`` /
    ``finish_t`` take this or the :class:`QParams` it was made from)."""

    bitwidth: int
    qmin: int
    qmax: int

    @staticmethod
    def of(q: QParams) -> Codes:
        return Codes(q.bitwidth, q.qmin, q.qmax)

    def to_attrs(self) -> dict[str, int]:
        return asdict(self)

    @staticmethod
    def from_attrs(doc: Mapping[str, Any]) -> Codes:
        return Codes(int(doc["bitwidth"]), int(doc["qmin"]), int(doc["qmax"]))


def finish_np(v: np.ndarray, q: QParams | Codes) -> np.ndarray:
    return np.clip(np.asarray(v, dtype=np.int64), q.qmin, q.qmax).astype(np.int64)


def finish_t(v: torch.Tensor, q: QParams | Codes) -> torch.Tensor:
    return torch.clamp(v, q.qmin, q.qmax).to(storage_dtype(q.bitwidth))


def round_div_np(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den rounded half away from zero; den > 0 (int64, exact)."""
    num = np.asarray(num, dtype=np.int64)
    den = np.asarray(den, dtype=np.int64)
    mag = (np.abs(num) + (den >> 1)) // den
    return np.where(num < 0, -mag, mag)


def round_div_t(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    mag = torch.div(num.abs() + (den >> 1), den, rounding_mode="floor")
    return torch.where(num < 0, -mag, mag)


def _lt(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.int64)


@dataclass(frozen=True)
class RealMultiplier:
    """Multiply an integer accumulator by a real ratio >= 0: mbqm, or mbqm64 for wide accumulators (an
    elementwise product's one multiplier; convolutions and GEMMs requantize with requant.py's :class:`Requant`)."""

    multiplier: int
    shift: int
    wide: bool

    @staticmethod
    def of(ratio: float, acc_bound: float, what: str) -> RealMultiplier:
        m, shift = quantize_multiplier(ratio)
        wide = acc_bound > INT32_MAX
        if wide:
            if shift > 14:
                raise Unsupported(f"{what}: multiplier {ratio:g} is too large for the int64 requantization")
            if acc_bound * (1 << 15) >= 2.0**62:
                raise Unsupported(f"{what}: the accumulator ({acc_bound:g}) overflows int64")
        return RealMultiplier(m, shift, wide)

    def to_attrs(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_attrs(doc: Mapping[str, Any]) -> RealMultiplier:
        return RealMultiplier(int(doc["multiplier"]), int(doc["shift"]), bool(doc["wide"]))

    def np(self, x: np.ndarray) -> np.ndarray:
        return (mbqm64_np if self.wide else mbqm_np)(x, self.multiplier, self.shift)

    def t(self, x: torch.Tensor) -> torch.Tensor:
        return (mbqm64_t if self.wide else mbqm_t)(x, self.multiplier, self.shift)


# -- coded steps: plans over operand codes ---------------------------------------------------------

_TABLE_MAX = 1 << 16  # the fast path looks results up when all run-time codes index at most this many

Attrs = Mapping[str, Any]
Arrays = Mapping[str, np.ndarray]
Maker = Callable[[Attrs, Arrays, torch.device], tuple[Callable[..., np.ndarray], Callable[..., torch.Tensor]]]
_MAKERS: dict[str, Maker] = {}


def _coded(kernel: str) -> Callable[[Maker], Maker]:
    """Register ``make(attrs, arrays, device) -> (ref, fast)``, the arithmetic of a coded step over all
    its operands as int64 codes, and the binder of ``kernel`` that wraps it (:func:`_bind_coded`)."""
    def register(make: Maker) -> Maker:
        _MAKERS[kernel] = make
        htp_binder(kernel)(lambda plan, device: _bind_coded(plan, device, make))
        return make

    return register


def _coded_step(node: Node, ctx: HtpBuildContext, kernel: str, names: Sequence[str], attrs: dict[str, Any],
                arrays: dict[str, np.ndarray] | None = None) -> HtpStep:
    """The plan of a step over ``names``: static ones are substituted by their codes (``ctx.static_q``,
    arrays ``static<i>``), run-time ones come in order; ``attrs`` / ``arrays`` are the arithmetic's
    (``kernel``'s maker reads them).

    When the result is a function of at most 2^16 run-time code combinations (one operand of up to
    16 bits or two 8-bit operands, the static ones one-element), the plan carries ``table``: the
    reference evaluated on every combination, which the fast path looks up (the same bits by
    construction)."""
    statics = {i: np.asarray(ctx.static_q(n), dtype=np.int64) for i, n in enumerate(names) if ctx.is_static(n)}
    runtime = [n for i, n in enumerate(names) if i not in statics]
    if not runtime:
        raise Unsupported("all operands are static (constant folding handles this)")
    attrs = {**attrs, "operands": len(names), "statics": sorted(statics),
             "out_shape": list(ctx.shape(node.outputs[0])), "out": Codes.of(act_params(ctx, node.outputs[0])).to_attrs()}
    arrays = {**(arrays or {}), **{f"static{i}": a for i, a in statics.items()}}
    bits = [act_params(ctx, r).bitwidth for r in runtime]
    if all(a.size == 1 for a in statics.values()) and 2 ** sum(bits) <= _TABLE_MAX:
        ref, _ = _MAKERS[kernel](attrs, arrays, torch.device("cpu"))
        grids = np.meshgrid(*[np.arange(1 << b, dtype=np.int64) for b in bits], indexing="ij")
        it = iter(grids)
        n = len(names)
        arrays["table"] = compact_codes(np.ascontiguousarray(
            ref(*[statics[i].reshape(()) if i in statics else next(it) for i in range(n)]).reshape(-1)),
            int(attrs["out"]["bitwidth"]))
        attrs["table_bits"] = bits
    plan = StepPlan(kernel, node.name, node.op_type, tuple(runtime), tuple(node.outputs), attrs, arrays)
    return bind_step(plan, ctx.device)


def _bind_coded(plan: StepPlan, device: torch.device, make: Maker) -> tuple[Callable[..., Any], Callable[..., Any]]:
    ref, fast = make(plan.attrs, plan.arrays, device)
    n = int(plan.attrs["operands"])
    statics = {int(i): np.asarray(plan.arrays[f"static{i}"], dtype=np.int64) for i in plan.attrs["statics"]}
    statics_t = {i: plan_tensor(a, device) for i, a in statics.items()}
    out_shape = tuple(plan.attrs["out_shape"])

    def reference(*xs: np.ndarray) -> np.ndarray:
        it = iter(xs)
        return ref(*[statics[i] if i in statics else np.asarray(next(it), dtype=np.int64) for i in range(n)])

    def direct(*xs: torch.Tensor) -> torch.Tensor:
        it = iter(xs)
        return fast(*[statics_t[i] if i in statics_t else _lt(next(it)) for i in range(n)])

    if "table" not in plan.arrays:
        return reference, direct
    bits = [int(b) for b in plan.attrs["table_bits"]]
    out_bits = int(plan.attrs["out"]["bitwidth"])
    table_t = plan_tensor(plan.arrays["table"], device, storage_dtype(out_bits))
    strides = [1 << sum(bits[j + 1:]) for j in range(len(bits))]

    def lookup_t(*xs: torch.Tensor) -> torch.Tensor:
        # the flat index fits int32 (< 2^16); index_select on a 1-D table is far faster than
        # advanced indexing with an int64 index of the operand's shape
        idx = xs[0].to(torch.int32)
        if len(xs) > 1:
            idx = idx.mul(strides[0]) if idx is xs[0] else idx.mul_(strides[0])
            for x, stride in zip(xs[1:], strides[1:]):
                idx = idx.add_(x) if stride == 1 and idx.shape == torch.broadcast_shapes(idx.shape, x.shape) \
                    else torch.add(idx, x.to(torch.int32), alpha=stride)
        out = table_t.index_select(0, idx.reshape(-1))
        return out.reshape(out_shape)

    return reference, lookup_or(table_t, lookup_t, out_shape, step_buffer(out_shape, device))


def _per_code(fn: Callable[[np.ndarray], np.ndarray], q: QParams) -> np.ndarray:
    """``fn`` (the numpy spec) on every code of an encoding: an int64 table for the fast path."""
    return np.ascontiguousarray(np.asarray(fn(np.arange(1 << q.bitwidth, dtype=np.int64)), dtype=np.int64))


def _on(device: torch.device, a: np.ndarray) -> torch.Tensor:
    """A plan's int64 array as a tensor on ``device`` (a copy: plan arrays may be read-only)."""
    return plan_tensor(np.asarray(a, dtype=np.int64), device)


def _qmax_abs(q: QParams) -> int:
    """The largest |q - z| of an encoding."""
    z = int(q.zero_point[0])
    return max(abs(q.qmin - z), abs(q.qmax - z))


def _integer_output(node: Node, ctx: HtpBuildContext) -> bool:
    t = ctx.graph.tensors[node.outputs[0]]
    return not t.dtype.is_float and t.encoding is None


def _integer_arithmetic(node: Node, ctx: HtpBuildContext) -> HtpStep:
    """Token-id and position arithmetic on integer tensors: exact (logical.py; it imports this module)."""
    from openqnn.backends.htp.kernels.logical import integer_arithmetic

    return integer_arithmetic(node, ctx)


# -- Add / Subtract ------------------------------------------------------------------------------

def _scalar_constant(ctx: HtpBuildContext, *names: str) -> bool:
    """Whether an operand is a one-element constant (QNN runs those another way: spec/qnn_eltwise.py)."""
    return any(ctx.is_static(n) and ctx.graph.tensors[n].size == 1 for n in names)


@htp_kernel("ElementWiseAdd", "ElementWiseSubtract")
def add_sub(node: Node, ctx: HtpBuildContext) -> HtpStep:
    if _integer_output(node, ctx):
        return _integer_arithmetic(node, ctx)
    a_name, b_name = node.inputs[:2]
    qa, qb = operand_params(ctx, a_name), operand_params(ctx, b_name)
    qo = act_params(ctx, node.outputs[0])
    sub = node.op_type == "ElementWiseSubtract"
    qnn = add_spec_for(ctx.arch.name, ctx.arithmetic, float(qa.scale[0]), int(qa.zero_point[0]), float(qb.scale[0]),
                       int(qb.zero_point[0]), float(qo.scale[0]), int(qo.zero_point[0]), sub,
                       (qa.bitwidth, qb.bitwidth, qo.bitwidth), complements(ctx.shape(a_name), ctx.shape(b_name)),
                       _scalar_constant(ctx, a_name, b_name))
    if qnn is not None:
        return _coded_step(node, ctx, "htp.add_qnn", [a_name, b_name], {"spec": qnn.to_attrs()})
    left = 20 if max(qa.bitwidth, qb.bitwidth) <= 8 else 15
    if max(_qmax_abs(qa), _qmax_abs(qb)) << left > INT32_MAX:
        raise Unsupported("operand range too wide for the add scheme")
    sa, sb, so = float(qa.scale[0]), float(qb.scale[0]), float(qo.scale[0])
    twice = 2.0 * max(sa, sb)
    ma, sha = quantize_multiplier(sa / twice)
    mb, shb = quantize_multiplier(sb / twice)
    mo, sho = quantize_multiplier(twice / ((1 << left) * so))
    oa, ob, oo = int(qa.offset[0]), int(qb.offset[0]), int(qo.offset[0])
    # fast: each operand's scaled value is a function of its code: look it up
    ta = _per_code(lambda c: mbqm_np((c + oa) << left, ma, sha), qa)
    tb = _per_code(lambda c: mbqm_np((c + ob) << left, mb, shb), qb)
    attrs = {"sub": sub, "left": left, "ma": ma, "sha": sha, "mb": mb, "shb": shb,
             "mo": mo, "sho": sho, "oa": oa, "ob": ob, "oo": oo}
    return _coded_step(node, ctx, "htp.add", [a_name, b_name], attrs, {"scaled_a": ta, "scaled_b": tb})


@_coded("htp.add")
def _make_add(p: Attrs, arrays: Arrays, device: torch.device) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """TFLite's add (module docstring); the fast path looks each operand's scaled value up."""
    sub, left, ma, sha, mb, shb = bool(p["sub"]), int(p["left"]), int(p["ma"]), int(p["sha"]), int(p["mb"]), int(p["shb"])
    mo, sho, oa, ob, oo = int(p["mo"]), int(p["sho"]), int(p["oa"]), int(p["ob"]), int(p["oo"])
    qo = Codes.from_attrs(p["out"])
    ta, tb = _on(device, arrays["scaled_a"]), _on(device, arrays["scaled_b"])

    def ref(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        xa = mbqm_np((x + oa) << left, ma, sha)
        yb = mbqm_np((y + ob) << left, mb, shb)
        raw = xa - yb if sub else xa + yb
        return finish_np(mbqm_np(raw, mo, sho) - oo, qo)

    def fast(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raw = ta[x] - tb[y] if sub else ta[x] + tb[y]
        return finish_t(mbqm_t(raw, mo, sho) - oo, qo)

    return ref, fast


def _qnn_spec_maker(spec_of: Callable[[Attrs], QnnAddSpec | QnnMulSpec]) -> Maker:
    """The maker of a step that runs one of spec/qnn_eltwise.py's specs (Add / Subtract, Multiply); two 8-bit
    run-time operands are looked up in the plan's table instead."""
    def make(p: Attrs, arrays: Arrays, device: torch.device) -> tuple[Callable[..., Any], Callable[..., Any]]:
        spec = spec_of(p["spec"])
        qo = Codes.from_attrs(p["out"])

        def ref(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            return finish_np(spec.apply_np(x, y), qo)

        def fast(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return finish_t(spec.apply_t(x, y), qo)

        return ref, fast

    return make


_coded("htp.add_qnn")(_qnn_spec_maker(QnnAddSpec.from_attrs))
_coded("htp.multiply_qnn")(_qnn_spec_maker(QnnMulSpec.from_attrs))


# -- Multiply ------------------------------------------------------------------------------------

@htp_kernel("ElementWiseMultiply")
def multiply(node: Node, ctx: HtpBuildContext) -> HtpStep:
    if _integer_output(node, ctx):
        return _integer_arithmetic(node, ctx)
    a_name, b_name = node.inputs[:2]
    qa, qb = operand_params(ctx, a_name), operand_params(ctx, b_name)
    qo = act_params(ctx, node.outputs[0])
    qnn = mul_spec_for(ctx.arch.name, ctx.arithmetic, float(qa.scale[0]), int(qa.zero_point[0]), float(qb.scale[0]),
                       int(qb.zero_point[0]), float(qo.scale[0]), int(qo.zero_point[0]),
                       (qa.bitwidth, qb.bitwidth, qo.bitwidth), _scalar_constant(ctx, a_name, b_name))
    if qnn is not None:
        return _coded_step(node, ctx, "htp.multiply_qnn", [a_name, b_name], {"spec": qnn.to_attrs()})
    rq = RealMultiplier.of(float(qa.scale[0]) * float(qb.scale[0]) / float(qo.scale[0]),
                           float(_qmax_abs(qa) * _qmax_abs(qb)), "ElementWiseMultiply")
    attrs = {"rq": rq.to_attrs(), "oa": int(qa.offset[0]), "ob": int(qb.offset[0]), "oo": int(qo.offset[0])}
    return _coded_step(node, ctx, "htp.multiply", [a_name, b_name], attrs)


@_coded("htp.multiply")
def _make_multiply(p: Attrs, arrays: Arrays, device: torch.device) -> tuple[Callable[..., Any], Callable[..., Any]]:
    rq, qo = RealMultiplier.from_attrs(p["rq"]), Codes.from_attrs(p["out"])
    oa, ob, oo = int(p["oa"]), int(p["ob"]), int(p["oo"])

    def ref(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return finish_np(rq.np((x + oa) * (y + ob)) - oo, qo)

    def fast(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return finish_t(rq.t((x + oa) * (y + ob)) - oo, qo)

    return ref, fast


# -- Divide --------------------------------------------------------------------------------------

_DIV_MAX_T = 46  # |d| < 2^16, so |d| << t stays below 2^62
_SATURATE = 1 << 40  # beyond any code: x / 0 clamps to the encoding's end
_DIV16_MAX_LEFT = 20  # spec/qnn_div.py's _MAX_LEFT: past it any non-zero value saturates


@htp_kernel("ElementWiseDivide")
def divide(node: Node, ctx: HtpBuildContext) -> HtpStep:
    a_name, b_name = node.inputs[:2]
    qa, qb = operand_params(ctx, a_name), operand_params(ctx, b_name)
    qo = act_params(ctx, node.outputs[0])
    runtime = not ctx.is_static(a_name) and not ctx.is_static(b_name)  # (broadcasts probed alike, stop 27)
    qnn16 = div16_multiplier_for(ctx.arch.name, ctx.arithmetic, float(qa.scale[0]), float(qb.scale[0]),
                                 float(qo.scale[0]), (qa.bitwidth, qb.bitwidth, qo.bitwidth), runtime)
    if qnn16 is not None:
        attrs16 = {"m": qnn16[0], "k": qnn16[1], "za": int(qa.zero_point[0]), "zb": int(qb.zero_point[0]),
                   "zo": int(qo.zero_point[0])}
        return _coded_step(node, ctx, "htp.divide_qnn16", [a_name, b_name], attrs16)
    m, shift = quantize_multiplier(float(qa.scale[0]) / (float(qb.scale[0]) * float(qo.scale[0])))
    t = 31 - shift
    if t > _DIV_MAX_T:  # the ratio is below ~2^-15: keep fewer multiplier bits (round half up)
        drop = t - _DIV_MAX_T
        m, t = (m + (1 << (drop - 1))) >> drop, _DIV_MAX_T
    attrs = {"m": m, "t": t, "oa": int(qa.offset[0]), "ob": int(qb.offset[0]), "oo": int(qo.offset[0])}
    return _coded_step(node, ctx, "htp.divide", [a_name, b_name], attrs)


@_coded("htp.divide")
def _make_divide(p: Attrs, arrays: Arrays, device: torch.device) -> tuple[Callable[..., Any], Callable[..., Any]]:
    m, t, oa, ob, oo = int(p["m"]), int(p["t"]), int(p["oa"]), int(p["ob"]), int(p["oo"])
    qo = Codes.from_attrs(p["out"])

    def ref(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        a, d = x + oa, y + ob
        num = np.where(d < 0, -a, a) * m
        den = np.abs(d) << t
        q = round_div_np(num, np.where(den == 0, 1, den))
        q = np.where(d == 0, np.sign(a) * _SATURATE, q)
        return finish_np(q - oo, qo)

    def fast(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        a, d = x + oa, y + ob
        num = torch.where(d < 0, -a, a) * m
        den = d.abs() << t
        q = round_div_t(num, torch.where(den == 0, torch.ones_like(den), den))
        q = torch.where(d == 0, torch.sign(a) * _SATURATE, q)
        return finish_t(q - oo, qo)

    return ref, fast


@_coded("htp.divide_qnn16")
def _make_divide_qnn16(p: Attrs, arrays: Arrays,
                       device: torch.device) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """QNN's 16-bit Divide (``spec/qnn_div.py``): the reference is the spec; the fast path looks each numerator
    code's scaled magnitude ``p`` and exponent ``ea`` and each divisor code's reciprocal and shift up in tables of
    65,536 and does the same integer arithmetic."""
    m, k, za, zb, zo = (int(p[n]) for n in ("m", "k", "za", "zb", "zo"))
    qo = Codes.from_attrs(p["out"])
    a_all = np.arange(1 << 16, dtype=np.int64) - za
    d_all = np.arange(1 << 16, dtype=np.int64) - zb
    pa, ea = div16_scaled_numerator(a_all, m)
    x0, s = recip16_of_divisor(d_all)
    pa_t, ea_t, sa_t = (torch.from_numpy(v).to(device) for v in (pa, ea - (14 + k), np.sign(a_all)))
    x0_t, s_t, sd_t = (torch.from_numpy(v).to(device) for v in (x0, s, np.sign(d_all)))

    def ref(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return finish_np(div16_apply(x, y, za, zb, zo, m, k), qo)

    def fast(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        xi, yi = x.to(torch.int64), y.to(torch.int64)
        sh = -(ea_t[xi] + s_t[yi])  # 14 + k - ea - s
        prod = pa_t[xi] * x0_t[yi]
        right = sh.clamp(1, 62)
        v = torch.where(sh >= 1, torch.bitwise_right_shift(prod + torch.bitwise_left_shift(torch.ones_like(right),
                                                                                            right - 1), right),
                        torch.bitwise_left_shift(prod, (-sh).clamp(0, _DIV16_MAX_LEFT)))
        sa = sa_t[xi]
        v = torch.where(yi == zb, sa * _SATURATE, sa * sd_t[yi] * v)
        return finish_t(v + zo, qo)

    return ref, fast


# -- Maximum / Minimum ---------------------------------------------------------------------------

_HEADROOM = 14  # |q - z| < 2^16: (q - z) << 14 stays in int32


@dataclass(frozen=True)
class Rescale:
    """Requantize codes of one per-tensor encoding to codes (unclamped) of another:
    ``mbqm((q - z) << headroom, m, shift - headroom) + z_out``; ``multiplier`` None: the identity
    (equal encodings). headroom 0 is TFLite's requantization (ReluX); with headroom the srdhm
    rounding is 2^-headroom finer, so the result is round(x * ratio) but for near-ties."""

    multiplier: int | None
    shift: int
    offset_in: int
    offset_out: int
    headroom: int

    @staticmethod
    def of(q: QParams, qo: QParams, headroom: int = 0) -> Rescale:
        oi, oo = int(q.offset[0]), int(qo.offset[0])
        if float(q.scale[0]) == float(qo.scale[0]) and oi == oo:
            return Rescale(None, 0, oi, oo, headroom)
        m, shift = quantize_multiplier(float(q.scale[0]) / float(qo.scale[0]))
        return Rescale(m, shift, oi, oo, headroom)

    def to_attrs(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_attrs(doc: Mapping[str, Any]) -> Rescale:
        m = doc["multiplier"]
        return Rescale(None if m is None else int(m), int(doc["shift"]), int(doc["offset_in"]),
                       int(doc["offset_out"]), int(doc["headroom"]))

    def fn(self) -> Callable[[np.ndarray], np.ndarray]:
        """The numpy spec as one closure over plain ints."""
        if self.multiplier is None:
            return lambda x: x
        m, shift, oi, oo, headroom = self.multiplier, self.shift, self.offset_in, self.offset_out, self.headroom
        return lambda x: mbqm_np((x + oi) << headroom, m, shift - headroom) - oo


@htp_kernel("ElementWiseMaximum", "ElementWiseMinimum")
def max_min(node: Node, ctx: HtpBuildContext) -> HtpStep:
    a_name, b_name = node.inputs[:2]
    qa, qb = operand_params(ctx, a_name), operand_params(ctx, b_name)
    qo = act_params(ctx, node.outputs[0])
    is_max = node.op_type == "ElementWiseMaximum"
    if not ctx.is_static(a_name) and not ctx.is_static(b_name):  # run-time operands: QNN's where established
        so, zo = float(qo.scale[0]), int(qo.zero_point[0])
        ca, cb = (convert_spec_for(ctx.arch.name, ctx.arithmetic, float(q.scale[0]), int(q.zero_point[0]), so, zo,
                                   (q.bitwidth, qo.bitwidth), q.signed or qo.signed) for q in (qa, qb))
        if ca is not None and cb is not None:  # each operand requantized into the output's codes, then max/min
            attrs = {"is_max": is_max, "qnn_a": ca.to_attrs(), "qnn_b": cb.to_attrs()}
            return _coded_step(node, ctx, "htp.max_min", [a_name, b_name], attrs,
                               {"rescaled_a": ca.table(), "rescaled_b": cb.table()})
    ra, rb = Rescale.of(qa, qo, _HEADROOM), Rescale.of(qb, qo, _HEADROOM)
    attrs = {"is_max": is_max, "ra": ra.to_attrs(), "rb": rb.to_attrs()}
    arrays = {"rescaled_a": _per_code(ra.fn(), qa), "rescaled_b": _per_code(rb.fn(), qb)}
    return _coded_step(node, ctx, "htp.max_min", [a_name, b_name], attrs, arrays)


@_coded("htp.max_min")
def _make_max_min(p: Attrs, arrays: Arrays, device: torch.device) -> tuple[Callable[..., Any], Callable[..., Any]]:
    ra_np: Callable[[np.ndarray], np.ndarray]
    rb_np: Callable[[np.ndarray], np.ndarray]
    if "qnn_a" in p:  # QNN's requantized codes: a table lookup on the fast path, the spec on the reference
        ra_np, rb_np = convert_spec_from_attrs(p["qnn_a"]).apply_np, convert_spec_from_attrs(p["qnn_b"]).apply_np
    else:
        ra_np, rb_np = Rescale.from_attrs(p["ra"]).fn(), Rescale.from_attrs(p["rb"]).fn()
    ta, tb = _on(device, arrays["rescaled_a"]), _on(device, arrays["rescaled_b"])
    is_max, qo = bool(p["is_max"]), Codes.from_attrs(p["out"])

    def ref(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        fx, fy = ra_np(x), rb_np(y)
        return finish_np(np.maximum(fx, fy) if is_max else np.minimum(fx, fy), qo)

    def fast(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fx, fy = ta[x], tb[y]
        return finish_t(torch.maximum(fx, fy) if is_max else torch.minimum(fx, fy), qo)

    return ref, fast


# -- Relu / ReluMinMax ---------------------------------------------------------------------------

@htp_kernel("Relu", "ReluMinMax")
def relu(node: Node, ctx: HtpBuildContext) -> HtpStep:
    qi, qo = act_params(ctx, node.inputs[0]), act_params(ctx, node.outputs[0])
    if node.op_type == "Relu":
        lo_v, hi_v = 0.0, math.inf
    else:
        lo_v, hi_v = float(node.attrs["min_value"]), float(node.attrs["max_value"])
    lo, hi = code_of(lo_v, qo), code_of(hi_v, qo)
    same = (qi.bitwidth == qo.bitwidth and qi.axis is None and qo.axis is None
            and np.array_equal(qi.scale, qo.scale) and np.array_equal(qi.offset, qo.offset))
    if same:
        # the quantizer gives a ReLU after a convolution the convolution's output encoding: the
        # requantization is the identity, and the clamp is one too when the encoding starts at 0
        lo_c, hi_c = max(lo, qo.qmin), min(hi, qo.qmax)
        kernel = "htp.relu_noop" if lo_c <= qo.qmin and hi_c >= qo.qmax else "htp.relu_clip"
        plan = StepPlan(kernel, node.name, node.op_type, (node.inputs[0],), tuple(node.outputs),
                        {"lo": lo_c, "hi": hi_c})
        return bind_step(plan, ctx.device)
    r = Rescale.of(qi, qo)
    # 16-bit Clip: QNN requantizes as Where does (QnnConvert16Spec, select=True), then clamps to the bounds' codes
    qnn = (convert_spec_for(ctx.arch.name, ctx.arithmetic, float(qi.scale[0]), int(qi.zero_point[0]),
                            float(qo.scale[0]), int(qo.zero_point[0]), (qi.bitwidth, qo.bitwidth),
                            qi.signed or qo.signed, select=True)
           if node.op_type == "ReluMinMax" and qi.bitwidth == 16 and qi.axis is None and qo.axis is None else None)
    if qnn is not None:
        return _coded_step(node, ctx, "htp.relu", [node.inputs[0]],
                           {"r": r.to_attrs(), "qnn": qnn.to_attrs(), "lo": lo, "hi": hi}, {"rescaled": qnn.table()})
    return _coded_step(node, ctx, "htp.relu", [node.inputs[0]], {"r": r.to_attrs(), "lo": lo, "hi": hi},
                       {"rescaled": _per_code(r.fn(), qi)})


@htp_binder("htp.relu_noop")
def _bind_relu_noop(plan: StepPlan, device: torch.device) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """A ReLU whose clamp covers its (equal) encodings: the input itself."""
    return (lambda x: x), (lambda x: x)


@htp_binder("htp.relu_clip")
def _bind_relu_clip(plan: StepPlan, device: torch.device) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """A ReLU between equal encodings: a clamp of the codes to [lo, hi]."""
    lo_c, hi_c = int(plan.attrs["lo"]), int(plan.attrs["hi"])

    def ref_same(x: np.ndarray) -> np.ndarray:
        return np.clip(x, lo_c, hi_c)

    def fast_same(x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, lo_c, hi_c)

    return ref_same, fast_same


@_coded("htp.relu")
def _make_relu(p: Attrs, arrays: Arrays, device: torch.device) -> tuple[Callable[..., Any], Callable[..., Any]]:
    r_np = convert_spec_from_attrs(p["qnn"]).apply_np if "qnn" in p else Rescale.from_attrs(p["r"]).fn()
    tr = _on(device, arrays["rescaled"])
    lo, hi, qo = int(p["lo"]), int(p["hi"]), Codes.from_attrs(p["out"])

    def ref(x: np.ndarray) -> np.ndarray:
        return finish_np(np.minimum(np.maximum(r_np(x), lo), hi), qo)

    def fast(x: torch.Tensor) -> torch.Tensor:
        return finish_t(torch.clamp_max(torch.clamp_min(tr[x], lo), hi), qo)

    return ref, fast


# -- Prelu ---------------------------------------------------------------------------------------

@htp_kernel("Prelu")
def prelu(node: Node, ctx: HtpBuildContext) -> HtpStep:
    x_name, c_name = node.inputs[:2]
    qi, qo = act_params(ctx, x_name), act_params(ctx, node.outputs[0])
    out_shape = ctx.shape(node.outputs[0])
    if tuple(np.broadcast_shapes(ctx.shape(x_name), ctx.shape(c_name))) != tuple(out_shape):
        raise Unsupported("Prelu coeff broadcasts the input to a larger shape")
    if ctx.is_static(c_name) and ctx.graph.tensors[c_name].size == 1:
        return _leaky_relu(node, ctx, qi, qo)
    qc = operand_params(ctx, c_name)
    si, sc, so = float(qi.scale[0]), float(qc.scale[0]), float(qo.scale[0])
    if ctx.is_static(c_name) and len(qc.scale) == 1:
        codes = np.asarray(ctx.static_q(c_name), dtype=np.int64)
        alphas = (codes - int(qc.zero_point[0])) * float(np.float32(sc))
        tables = prelu_tables_for(ctx.arch.name, ctx.arithmetic, si, int(qi.zero_point[0]), alphas, so,
                                  int(qo.zero_point[0]), qi.bitwidth, qo.bitwidth, qc.bitwidth)
        if tables is not None:
            from openqnn.backends.htp.kernels.lut import channel_table_step  # lut.py imports this module

            return channel_table_step(node, ctx, x_name, tables, codes.shape, qo)
    mp, shp = quantize_multiplier(si / so)
    neg = RealMultiplier.of(si * sc / so, float(_qmax_abs(qi) * _qmax_abs(qc)), "Prelu")
    attrs = {"mp": mp, "shp": shp, "neg": neg.to_attrs(), "oi": int(qi.offset[0]), "oc": int(qc.offset[0]),
             "oo": int(qo.offset[0])}
    return _coded_step(node, ctx, "htp.prelu", [x_name, c_name], attrs)


@_coded("htp.prelu")
def _make_prelu(p: Attrs, arrays: Arrays, device: torch.device) -> tuple[Callable[..., Any], Callable[..., Any]]:
    mp, shp, neg = int(p["mp"]), int(p["shp"]), RealMultiplier.from_attrs(p["neg"])
    oi, oc, oo, qo = int(p["oi"]), int(p["oc"]), int(p["oo"]), Codes.from_attrs(p["out"])

    def ref(x: np.ndarray, c: np.ndarray) -> np.ndarray:
        a = x + oi
        v = np.where(a >= 0, mbqm_np(a, mp, shp), neg.np(a * (c + oc)))
        return finish_np(v - oo, qo)

    def fast(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        a = x + oi
        v = torch.where(a >= 0, mbqm_t(a, mp, shp), neg.t(a * (c + oc)))
        return finish_t(v - oo, qo)

    return ref, fast


def _leaky_relu(node: Node, ctx: HtpBuildContext, qi: QParams, qo: QParams) -> HtpStep:
    """A one-element static coeff: TFLite's LeakyRelu, alpha the float value (not its code)."""
    data = ctx.graph.tensors[node.inputs[1]].data
    if data is None:
        raise Unsupported("Prelu coeff without data")
    alpha = float(np.asarray(data, dtype=np.float64).reshape(-1)[0])
    si, so = float(qi.scale[0]), float(qo.scale[0])
    if not math.isfinite(alpha):
        raise Unsupported(f"LeakyRelu alpha {alpha}")
    # an encoded slope as QNN sees it: its code times its scale (a float slope, as TFLite's LeakyRelu has: as is)
    qa = operand_params(ctx, node.inputs[1]) if ctx.graph.tensors[node.inputs[1]].encoding is not None else None
    if qa is not None and len(qa.scale) == 1:
        alpha_q = float(np.float32(qa.scale[0])) * (int(np.asarray(ctx.static_q(node.inputs[1])).reshape(-1)[0])
                                                    - int(qa.zero_point[0]))
        zi, zo = int(qi.zero_point[0]), int(qo.zero_point[0])
        if qi.bitwidth == 8:
            table = leaky_relu_table_for(ctx.arch.name, ctx.arithmetic, si, zi, alpha_q, so, zo, qi.bitwidth,
                                         qo.bitwidth) if qa.bitwidth == 8 else None
        else:
            # beside a 16-bit input the QDQ export writes an 8-bit slope as 16-bit codes (scale / 256, codes times
            # 256: the same value), so QNN reads a 16-bit slope either way
            slope_bits = 16 if qa.bitwidth == 8 else qa.bitwidth
            table = leaky_relu16_table_for(ctx.arch.name, ctx.arithmetic, si, zi, alpha_q, so, zo, qi.bitwidth,
                                           qo.bitwidth, slope_bits)
        if table is not None:
            from openqnn.backends.htp.kernels.lut import table_step  # lut.py imports this module

            return table_step(node, ctx, node.inputs[0], table, qo)
    mp, shp = quantize_multiplier(si / so)
    mn, shn = quantize_multiplier(abs(alpha) * si / so)
    mn = -mn if alpha < 0 else mn
    attrs = {"mp": mp, "shp": shp, "mn": mn, "shn": shn, "oi": int(qi.offset[0]), "oo": int(qo.offset[0])}
    return _coded_step(node, ctx, "htp.leaky_relu", [node.inputs[0]], attrs)


@_coded("htp.leaky_relu")
def _make_leaky_relu(p: Attrs, arrays: Arrays, device: torch.device) -> tuple[Callable[..., Any], Callable[..., Any]]:
    mp, shp, mn, shn = int(p["mp"]), int(p["shp"]), int(p["mn"]), int(p["shn"])
    oi, oo, qo = int(p["oi"]), int(p["oo"]), Codes.from_attrs(p["out"])

    def ref(x: np.ndarray) -> np.ndarray:
        a = x + oi
        return finish_np(np.where(a >= 0, mbqm_np(a, mp, shp), mbqm_np(a, mn, shn)) - oo, qo)

    def fast(x: torch.Tensor) -> torch.Tensor:
        a = x + oi
        return finish_t(torch.where(a >= 0, mbqm_t(a, mp, shp), mbqm_t(a, mn, shn)) - oo, qo)

    return ref, fast
