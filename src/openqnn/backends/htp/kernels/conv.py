"""htp integer kernels: Conv2d, DepthWiseConv2d, TransposeConv2d (see registry.py for the conventions).

The spec (``reference``, numpy int64), for every output channel ``c``::

    acc[c] = sum over taps (q_x - zx) * w[c]  +  bias[c]        (padding taps hold zx: they add 0)
    out[c] = clamp(zo + mbqm(acc[c], M[c], shift[c]), 0, 2^bw_out - 1)

with ``w = q_w + offset_w`` (the weight's signed integers), ``M[c], shift[c] =
quantize_multiplier(s_x * s_w[c] / s_out)`` (per-tensor or per-channel weights), ``mbqm`` the
int32-accumulator requantization (TFLite's double rounding; the exact sum saturates to int32 first)
for 8-bit activations, and ``mbqm64`` (one rounding, int64 accumulator) when the input activation
or the weights are 16-bit. ``bias`` is the 32-bit bias as is when its encoding is signed with the
accumulator's scale ``s_x * s_w[c]``; any other bias (float, 8-bit, another scale) is requantized to
that scale once at build time, rounding half away from zero, saturated to int32 (to +-2^47 with the
64-bit accumulator). TransposeConv2d scatters every input pixel times the kernel, then crops.

The fast path (PyTorch) computes the same bits:

- activations move to int8 (``q - 128``; 16-bit ones split into two int8 planes,
  ``q - 32768 = 256 * hi + lo + 128``), the zero-point corrections fold into one per-channel
  constant at build time, and the products run as int8 GEMMs with int32 results
  (``torch._int_mm``, per group) on an im2col of the input padded with the zero point;
  TransposeConv2d is the stride-1 convolution of the zero-point-stuffed input with the flipped
  kernel; asymmetric weights that do not fit int8 add a row-sum correction;
- depthwise convolutions and inputs of at most 4 channels (with at most 64 taps per output) run
  as a float convolution (oneDNN, weights reordered once) of ``q - zx`` (8-bit inputs on oneDNN:
  of ``q`` padded with ``zx``, ``zx * sum(w)`` folded into the bias): exact, every partial sum an
  integer below 2^24 (checked per channel at build time; float64 otherwise);
- the requantization is one floor of an affine function evaluated in float64 where every value is
  an exact dyadic fraction (checked with integers at build time), with an int64 fallback; see
  :class:`Requant`. Large intermediates live in per-thread scratch buffers (:func:`scratch`).

On other devices than the CPU, the GEMMs run in float64 (exact below 2^53) instead of int8.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from openqnn.backends.htp.fixedpoint import (
    INT32_MAX,
    INT32_MIN,
    mbqm64_np,
    mbqm64_t,
    mbqm_np,
    mbqm_t,
    quantize_multiplier,
)
from openqnn.backends.htp.kernels.registry import HtpBuildContext, HtpStep, QParams, Unsupported, htp_kernel
from openqnn.ir.graph import Node

__all__ = ["Requant", "conv2d", "transpose_conv2d"]

Term = tuple[np.ndarray | int, np.ndarray]  # (integer coefficient per channel, bound of |tensor| per channel)


# -- encodings and static operands ----------------------------------------------------------------

def act_qparams(ctx: HtpBuildContext, name: str, role: str) -> QParams:
    """The per-tensor unsigned 8/16-bit encoding of an activation, or Unsupported."""
    if ctx.is_static(name):
        raise Unsupported(f"{role} '{name}' is a static tensor, not an activation")
    q = ctx.need_enc(name)
    if q.signed or q.scale.size != 1:
        raise Unsupported(f"{role} '{name}' has a {'signed' if q.signed else 'per-channel'} encoding; "
                          "htp activations are per-tensor unsigned")
    if q.bitwidth not in (8, 16):
        raise Unsupported(f"{role} '{name}' is {q.bitwidth}-bit; htp activations are 8 or 16-bit")
    if not (np.isfinite(q.scale).all() and (q.scale > 0).all()):
        raise Unsupported(f"{role} '{name}' has a non-positive scale")
    return q


def check_weight_bits(ctx: HtpBuildContext, name: str, bitwidth: int) -> None:
    if bitwidth == 16 and not ctx.arch.weights_16bit:
        raise Unsupported(f"weight '{name}' is 16-bit; {ctx.arch.name} runs 16-bit weights from v73 on")
    if bitwidth == 4 and not ctx.arch.weights_4bit:
        raise Unsupported(f"weight '{name}' is 4-bit; {ctx.arch.name} runs 4-bit weights from v73 on")
    if bitwidth not in (4, 8, 16):
        raise Unsupported(f"weight '{name}' is {bitwidth}-bit; htp weights are 4, 8 or 16-bit")


def static_operand(ctx: HtpBuildContext, name: str, axis: int | None, what: str = "weight"
                   ) -> tuple[np.ndarray, np.ndarray, int]:
    """A static operand's signed integers ``q + offset`` (int64, the operand's shape), its scales
    (one, or one per index of ``axis``: per-channel encodings must lie along ``axis``) and bitwidth."""
    if not ctx.is_static(name):
        raise Unsupported(f"{what} '{name}' is not static")
    t = ctx.graph.tensors[name]
    if t.encoding is None:
        raise Unsupported(f"{what} '{name}' has no encoding (the model is not quantized there)")
    q = QParams.of(t.encoding)
    check_weight_bits(ctx, name, q.bitwidth)
    if not (np.isfinite(q.scale).all() and (q.scale >= 0).all()):
        raise Unsupported(f"{what} '{name}' has a negative or non-finite scale")
    shape = [1] * t.rank
    if q.scale.size > 1:
        if q.axis is None or axis is None or q.axis % t.rank != axis % t.rank:
            raise Unsupported(f"{what} '{name}' is quantized per channel along axis {q.axis}; "
                              f"htp supports per-channel scales only along its output axis {axis}")
        shape[axis] = q.scale.size
    wc = ctx.static_q(name) + q.offset.reshape(shape)
    return wc.astype(np.int64), q.scale.astype(np.float64), q.bitwidth


BIAS48 = 1 << 47


def bias_q(ctx: HtpBuildContext, name: str, acc_scale: np.ndarray, wide: bool = False) -> np.ndarray:
    """The bias as integers on the accumulator's scale (int64 array of the channels).

    A 32-bit signed bias encoded with the accumulator's scale is used as is; any other bias (float
    data without encoding, another bitwidth, another scale) is requantized once: round half away
    from zero of ``real / acc_scale``, saturated to int32 -- or, with the 64-bit accumulator
    (``wide``: 16-bit activations or weights, where ``s_x * s_w`` is tiny), to +-2^47."""
    channels = acc_scale.size
    if not name:
        return np.zeros(channels, dtype=np.int64)
    if not ctx.is_static(name):
        raise Unsupported(f"bias '{name}' is not static")
    t = ctx.graph.tensors[name]
    if t.data is None or t.size not in (1, channels):
        raise Unsupported(f"bias '{name}' has {t.size} values for {channels} channels")
    if t.encoding is not None:
        q = QParams.of(t.encoding)
        qv = ctx.static_q(name).reshape(-1)
        scale = np.broadcast_to(q.scale, (channels,)) if q.scale.size in (1, channels) else None
        offset = np.broadcast_to(q.offset, (channels,)) if q.offset.size in (1, channels) else None
        if scale is None or offset is None:
            raise Unsupported(f"bias '{name}' has an encoding of {q.scale.size} channels for {channels}")
        qv = np.broadcast_to(qv, (channels,)).astype(np.int64)
        if (q.bitwidth == 32 and not offset.any()
                and np.allclose(scale, acc_scale, rtol=1e-6, atol=0.0)):
            return np.clip(qv, INT32_MIN, INT32_MAX)
        real = (qv + offset) * scale
    elif t.dtype.is_float:
        real = np.broadcast_to(np.asarray(t.data, dtype=np.float64).reshape(-1), (channels,))
    else:
        raise Unsupported(f"bias '{name}' is integer data without an encoding")
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(acc_scale > 0, real / np.where(acc_scale > 0, acc_scale, 1.0), 0.0)
    v = np.sign(v) * np.floor(np.abs(v) + 0.5)
    lo, hi = (-BIAS48, BIAS48) if wide else (INT32_MIN, INT32_MAX)
    return np.clip(v, lo, hi).astype(np.int64)


def int8_split(wc: np.ndarray) -> tuple[list[tuple[int, np.ndarray]], np.ndarray]:
    """Integer weights ``wc`` (channels on the last axis) as int8 planes: ``wc = sum(coef * part) - b0``
    with ``b0`` one integer per channel (0 when ``wc`` fits int8, the usual symmetric case)."""
    if wc.size == 0 or (wc.min() >= -128 and wc.max() <= 127):
        return [(1, wc.astype(np.int8))], np.zeros(wc.shape[-1], dtype=np.int64)
    axes = tuple(range(wc.ndim - 1))
    lo, hi = wc.min(axis=axes), wc.max(axis=axes)
    if (hi - lo).max() <= 255:
        shift = lo + 128
        return [(1, (wc - shift).astype(np.int8))], -shift
    if (hi - lo).max() <= 65535:
        shift = lo + 32768
        t = wc - shift
        return [(256, (t >> 8).astype(np.int8)), (1, ((t & 255) - 128).astype(np.int8))], -(shift + 128)
    raise Unsupported("weights span more than 16 bits")


def act_a0(q: QParams) -> int:
    """``q_x - zx = sum(coef * part) - a0`` for the int8 planes of :func:`act_planes`."""
    zx = int(q.zero_point[0])
    return zx - 128 if q.bitwidth == 8 else zx - 32768 - 128


def act_coefs(bitwidth: int) -> list[int]:
    return [1] if bitwidth == 8 else [256, 1]


def act_planes(x: torch.Tensor, bitwidth: int) -> torch.Tensor:
    """Activations (uint8 / int32 storage) as int8 planes stacked on a new leading axis (1 or 2)."""
    if bitwidth == 8:
        return torch.bitwise_xor(x.view(torch.int8), -128).unsqueeze(0)
    return torch.stack([((x >> 8) - 128).to(torch.int8), ((x & 255) - 128).to(torch.int8)])


# -- scratch buffers -------------------------------------------------------------------------------

class _Scratch(threading.local):
    def __init__(self) -> None:
        self.bufs: dict[tuple[str, torch.dtype, torch.device, bool], torch.Tensor] = {}
        self.views: dict[tuple[str, tuple[int, ...], torch.dtype, torch.device, bool], torch.Tensor] = {}


_SCRATCH = _Scratch()
SCRATCH_MAX_BYTES = 1 << 27  # larger intermediates are allocated per call


def scratch(slot: str, shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A per-thread reusable buffer for a step's intermediate (its contents are garbage).

    Multi-megabyte temporaries allocated per call cost page faults on every call (the allocator
    returns them to the OS); steps of one thread run one after another, so each slot is reused.
    A step must not hand a scratch tensor to the next one (outputs are always fresh). Buffers made
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


def release_scratch() -> None:
    """Drop this thread's scratch buffers."""
    _SCRATCH.bufs.clear()
    _SCRATCH.views.clear()


# -- requantization -------------------------------------------------------------------------------

_LIMIT = 1 << 53  # float64 holds every integer below this exactly
SMALL = 1 << 15  # below this many elements, per-op overhead outweighs per-element cost
BLOCK = 1 << 17  # requantize larger accumulators in blocks of about this many elements (cache)


def _fits(*nums: int) -> bool:
    return max(abs(v) for v in nums) < _LIMIT


class Requant:
    """Accumulators -> output integers, one multiplier per channel (channels on the last axis).

    ``reference`` is the spec on exact int64 accumulators. ``fast`` builds the PyTorch form for an
    accumulator given as a weighted sum of tensors (``acc = off + sum(coef_j * t_j)``, each ``t_j``
    holding integers, int or float typed) from per-channel bounds of ``|t_j|``.

    Both schemes are one floor of an affine function of the accumulator:

    - 8-bit activations (mbqm, double rounding): srdhm is ``floor((a*M + 2^30) / 2^31)`` and the two
      floors merge (``floor(floor(u) / n) = floor(u / n)``) into ``z = floor(N / 2^S)`` with
      ``N = a*Me + 2^30 + 2^(e-1) * 2^31``, ``Me = M << left``, ``S = 31 + e`` (e the right shift);
      where srdhm is negative (``a < thr = -floor(2^30 / Me)``) rounding half away from zero takes
      ``2^31`` more off N.
    - 16-bit (mbqm64, one rounding): ``z = floor((a*R + 2^(ts-1)) / 2^ts)``.

    The fast form evaluates ``N / 2^S`` in float64, centred: ``N - m * 2^S`` with an integer ``m``
    per channel, added back after the floor. Every value is then an exact dyadic fraction as long
    as the accumulator's span times the multiplier stays below 2^53 (checked with integers at build
    time). The sign correction subtracts ``2^-e * clamp(N_thr - N, 0, 1)``: ``N_thr - N`` is a
    multiple of ``Me >= 2^30``, so the clamp gives exactly 0 or 1; channels whose accumulator range
    lies on one side of ``thr`` take it as a constant. When the span is too wide, the accumulator is
    clamped first to the window outside which the output saturates anyway (binary-searched on the
    spec); failing that, int64 (fixedpoint.mbqm_t / mbqm64_t).
    """

    def __init__(self, real: np.ndarray, zo: int, out_bitwidth: int, wide: bool, device: torch.device):
        self.channels = real.size
        pairs = []
        for r in real.reshape(-1):
            try:
                pairs.append(quantize_multiplier(float(r)))
            except ValueError as e:
                raise Unsupported(f"requantization: {e}") from None
        self.mult = np.array([m for m, _ in pairs], dtype=np.int64)
        self.shift = np.array([s for _, s in pairs], dtype=np.int64)
        self.zo, self.qmax, self.wide = int(zo), (1 << out_bitwidth) - 1, wide
        self.out_dtype = torch.uint8 if out_bitwidth == 8 else torch.int32
        self.device = device
        if wide and (15 - self.shift < 1).any():
            raise Unsupported("requantization multiplier >= 2^14 is out of the 16-bit scheme's range")
        self.mode = ""  # the fast form chosen by the last fast() call (for tests and reports)

    def reference(self, acc: np.ndarray) -> np.ndarray:
        z = (mbqm64_np if self.wide else mbqm_np)(acc, self.mult, self.shift)
        return np.clip(z + self.zo, 0, self.qmax)

    # -- fast --------------------------------------------------------------------------------
    def _t(self, values: Sequence[float] | Sequence[int] | np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        return torch.tensor(np.asarray(values), dtype=dtype, device=self.device)

    def _exact64(self, off: np.ndarray, coefs: Sequence[np.ndarray | int]) -> Callable[..., torch.Tensor]:
        off_t = self._t(off, torch.int64)
        coef_t = [self._t(np.broadcast_to(c, (self.channels,)), torch.int64) for c in coefs]
        m_t, s_t = self._t(self.mult, torch.int64), self._t(self.shift, torch.int64)
        fn = mbqm64_t if self.wide else mbqm_t
        zo, qmax, out_dtype = self.zo, self.qmax, self.out_dtype

        def run(*ts: torch.Tensor) -> torch.Tensor:
            acc = off_t
            for t, c in zip(ts, coef_t):
                acc = acc + t.to(torch.int64) * c
            return (fn(acc, m_t, s_t) + zo).clamp_(0, qmax).to(out_dtype)

        self.mode = "int64"
        return run

    def fast(self, off: np.ndarray, terms: Sequence[Term], first_dtype: torch.dtype = torch.int32
             ) -> Callable[..., torch.Tensor]:
        """``run(*tensors)`` for ``acc = off + sum(coef_j * t_j)``; ``terms`` = (coef_j, bound_j) per tensor.

        The first tensor has the output's shape and may be modified in place (a fresh or scratch
        accumulator); the others broadcast against it. ``first_dtype`` is the first tensor's dtype."""
        ch = self.channels
        offs = [int(v) for v in np.broadcast_to(np.asarray(off, dtype=np.int64).reshape(-1), (ch,))]
        coefs = [[int(v) for v in np.broadcast_to(np.asarray(c, dtype=np.int64), (ch,))] for c, _ in terms]
        bounds = [[int(v) for v in np.broadcast_to(np.ceil(np.asarray(b, dtype=np.float64)), (ch,))]
                  for _, b in terms]
        span = [sum(abs(c[i]) * b[i] for c, b in zip(coefs, bounds)) for i in range(ch)]  # max |acc - off|
        if self.wide:
            red = [0 if m == 0 else (0x7FFF if m >= 0x7FFF0000 else (int(m) + (1 << 15)) >> 16) for m in self.mult]
            ts = [15 - int(s) for s in self.shift]
            spec = _Affine(red, ts, [1 << (t - 1) for t in ts], [False] * ch, [0] * ch, 0)
        else:
            left = [max(int(s), 0) for s in self.shift]
            right = [max(-int(s), 0) for s in self.shift]
            meff = [int(m) << lft for m, lft in zip(self.mult, left)]
            # rdbpot's sign correction matters where a right shift rounds and a negative z can still
            # reach the output range (zo > 0)
            neg = [bool(right[i] and meff[i] and self.zo > 0) for i in range(ch)]
            thr = [-((1 << 30) // meff[i]) if meff[i] else 0 for i in range(ch)]
            spec = _Affine(meff, [31 + e for e in right], [(1 << 30) + ((1 << (e - 1)) << 31 if e else 0) for e in right],
                           neg, thr, 1 << 31)
        single = len(terms) == 1 and all(v == 1 for v in coefs[0])
        lo_acc = [offs[i] - span[i] for i in range(ch)]
        hi_acc = [offs[i] + span[i] for i in range(ch)]
        if not self.wide and max(max(abs(a), abs(b)) for a, b in zip(lo_acc, hi_acc)) > INT32_MAX:
            # the spec saturates the accumulator to int32 first: the same only where that saturates the output
            if not ((self.reference(np.full(ch, INT32_MAX)) == self.qmax).all()
                    and (self.reference(np.full(ch, INT32_MIN)) == 0).all()):
                return self._exact64(np.asarray(offs), [np.asarray(c) for c in coefs])
        fold = spec.center(lo_acc, hi_acc, offs, self.zo)
        if fold is not None:
            self.mode = "float64"
            return self._run_fold(spec, fold, coefs)
        if single and max(abs(o) + b for o, b in zip(offs, span)) < INT32_MAX:
            lo, hi = self._window(lo_acc, hi_acc)
            mid = [(a + b) // 2 for a, b in zip(lo, hi)]
            win = spec.center(lo, hi, mid, self.zo)
            if win is not None and all(abs(offs[i] - mid[i]) + span[i] < INT32_MAX for i in range(ch)):
                self.mode = "window"
                return self._run_window(spec, win, offs, lo, hi, mid, first_dtype)
        return self._exact64(np.asarray(offs), [np.asarray(c) for c in coefs])

    def _window(self, lo_acc: list[int], hi_acc: list[int]) -> tuple[list[int], list[int]]:
        """Per channel: the accumulator range narrowed to [lo, hi] with out(a) = out(lo) for a <= lo and
        out(a) = out(hi) for a >= hi (binary search on the monotone spec)."""
        lo_a, hi_a = np.array(lo_acc, dtype=np.int64), np.array(hi_acc, dtype=np.int64)
        out_lo, out_hi = self.reference(lo_a), self.reference(hi_a)
        # lo: the largest a with out(a) == out(lo_acc); hi: the smallest a with out(a) == out(hi_acc)
        a, b = lo_a.copy(), hi_a.copy()  # invariant: out(a) == out_lo, and b is past it or the end
        for _ in range(64):
            m = (a + b + 1) // 2
            same = self.reference(m) == out_lo
            a = np.where(same, m, a)
            b = np.where(same, b, m - 1)
        lo = a
        a, b = lo_a.copy(), hi_a.copy()  # invariant: out(b) == out_hi
        for _ in range(64):
            m = (a + b) // 2
            same = self.reference(m) == out_hi
            b = np.where(same, m, b)
            a = np.where(same, a, m + 1)
        hi = np.maximum(b, lo)
        return [int(v) for v in lo], [int(v) for v in hi]

    def _finisher(self, plan: _Plan) -> Callable[..., torch.Tensor]:
        """Centred float64 y (scratch) -> output storage: [floor, + (m + zo),] truncate, clamp, cast;
        into ``out`` when given (a block of a larger output).

        |y| beyond 2^30 is clamped first (int32 conversion); the output saturates there either way."""
        qmax, out_dtype, device, folded = self.qmax, self.out_dtype, self.device, plan.folded
        madd_t = self._t([max(-(1 << 23), min(1 << 23, v)) for v in plan.madd], torch.int32)
        big = plan.ybound >= 2.0**30
        # folded 8-bit outputs with |y| < 2^15: truncate to int16 (cheaper conversions than int32)
        short = folded and out_dtype == torch.uint8 and plan.ybound < 2.0**15 - 1

        def finish(y: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
            if folded and y.numel() < SMALL:  # fewer, slower-per-element ops
                y.clamp_(0.0, float(qmax))
                return y.to(out_dtype) if out is None else out.copy_(y)
            if short:  # truncation is the floor for y >= 0; y < 0 clamps to 0 either way
                q16 = scratch("q16", y.shape, torch.int16, device)
                q16.copy_(y).clamp_(0, qmax)
                return q16.to(out_dtype) if out is None else out.copy_(q16)
            if big:
                y.clamp_(-(2.0**30), 2.0**30)
            if not folded:
                y.floor_()
            if out_dtype == torch.int32:
                q = torch.empty(y.shape, dtype=torch.int32, device=device) if out is None else out
            else:
                q = scratch("q", y.shape, torch.int32, device)
            q.copy_(y)
            if not folded:
                q.add_(madd_t)
            q.clamp_(0, qmax)
            if out_dtype == torch.int32:
                return q
            return q.to(out_dtype) if out is None else out.copy_(q)

        return finish

    def _consts(self, spec: _Affine, plan: _Plan, coefs: list[list[int]] | None
                ) -> tuple[torch.Tensor, list[torch.Tensor], Callable[..., torch.Tensor]]:
        ch = self.channels
        c_t = self._t([math.ldexp(float(plan.const[i]), -spec.s[i]) for i in range(ch)], torch.float64)
        cols = coefs if coefs is not None else [[1] * ch]
        r_ts = [self._t([math.ldexp(float(c[i] * spec.mult[i]), -spec.s[i]) for i in range(ch)], torch.float64)
                for c in cols]
        finish = self._finisher(plan)
        if not any(plan.dyn):
            return c_t, r_ts, finish
        # sign correction: t = N_thr - N = k0 - y * 2^S, clamped to [0, 1], times -2^-e
        k0_t = self._t([float(plan.k0[i]) if plan.dyn[i] else 0.0 for i in range(ch)], torch.float64)
        sc_t = self._t([-math.ldexp(1.0, spec.s[i]) if plan.dyn[i] else 0.0 for i in range(ch)], torch.float64)
        nd_t = self._t([-math.ldexp(1.0, 31 - spec.s[i]) if plan.dyn[i] else 0.0 for i in range(ch)], torch.float64)
        device = self.device

        def correct_finish(y: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
            t = torch.addcmul(k0_t, y, sc_t, out=scratch("t", y.shape, torch.float64, device))
            y.addcmul_(t.clamp_(0.0, 1.0), nd_t)
            return finish(y, out)

        return c_t, r_ts, correct_finish

    def _run_fold(self, spec: _Affine, plan: _Plan, coefs: list[list[int]]) -> Callable[..., torch.Tensor]:
        c_t, r_ts, finish = self._consts(spec, plan, coefs)
        r0, rest, device = r_ts[0], r_ts[1:], self.device

        def run(t0: torch.Tensor, *tensors: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
            if t0.numel() < SMALL:
                y = torch.addcmul(c_t, t0, r0)
            elif t0.dtype == torch.float64:  # a fresh float64 accumulator: in place
                y = torch.addcmul(c_t, t0, r0, out=t0)
            else:
                y = _to_f64(t0, "y", device)
                torch.addcmul(c_t, y, r0, out=y)
            for t, r in zip(tensors, rest):
                y.addcmul_(_to_f64(t, "y2", device) if t.numel() == y.numel() else t, r)
            return finish(y, out)

        return self._blocked(run)

    def _run_window(self, spec: _Affine, plan: _Plan, offs: list[int], lo: list[int], hi: list[int], mid: list[int],
                    first_dtype: torch.dtype) -> Callable[..., torch.Tensor]:
        c_t, r_ts, finish = self._consts(spec, plan, None)
        r0, device = r_ts[0], self.device
        shift_t = self._t([o - m for o, m in zip(offs, mid)], torch.int32)
        lo_t = self._t([a - m for a, m in zip(lo, mid)], torch.int32)
        hi_t = self._t([b - m for b, m in zip(hi, mid)], torch.int32)
        int_acc = first_dtype == torch.int32

        def run(acc: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
            if int_acc:
                a = acc.add_(shift_t)
            else:
                a = scratch("a32", acc.shape, torch.int32, device)
                a.copy_(acc)
                a.add_(shift_t)
            a.clamp_(lo_t, hi_t)
            y = _to_f64(a, "y", device)
            return finish(torch.addcmul(c_t, y, r0, out=y), out)

        return self._blocked(run)

    def _blocked(self, run: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        """``run`` over blocks of rows (channels last) for large accumulators: the float64 and int32
        intermediates of a block stay in cache, which several passes over the whole would not."""
        out_dtype = self.out_dtype

        def blocked(t0: torch.Tensor, *tensors: torch.Tensor) -> torch.Tensor:
            c = t0.shape[-1]
            if t0.numel() <= BLOCK * 3 // 2 or t0.dim() < 2 or c == 0:
                return run(t0, *tensors)
            rows = t0.numel() // c
            parts = []  # per tensor: sliced by rows, or broadcast whole
            for t in tensors:
                if t.dim() >= 2 and t.numel() // t.shape[-1] == rows:
                    parts.append((t.reshape(rows, t.shape[-1]), True))
                elif t.dim() <= 1 or t.numel() == t.shape[-1]:
                    parts.append((t, False))
                else:
                    return run(t0, *tensors)
            a = t0.reshape(rows, c)
            out = torch.empty((rows, c), dtype=out_dtype, device=t0.device)
            step = max(1, BLOCK // c)
            for i in range(0, rows, step):
                run(a[i:i + step], *[t[i:i + step] if sliced else t for t, sliced in parts], out=out[i:i + step])
            return out.view(t0.shape)

        return blocked


def _to_f64(t: torch.Tensor, slot: str, device: torch.device) -> torch.Tensor:
    """t as float64 in a scratch buffer (mixed-dtype arithmetic would cast through a hidden temporary)."""
    if t.dtype == torch.float64 and slot == "y2":
        return t
    y = scratch(slot, t.shape, torch.float64, device)
    return y.copy_(t)


class _Plan:
    """A centred float64 evaluation: y = (x * mult + const) / 2^S, z = floor(y) + madd."""

    def __init__(self, const: list[int], madd: list[int], folded: bool, dyn: list[bool], k0: list[int],
                 ybound: float):
        self.const, self.madd, self.folded, self.dyn, self.k0 = const, madd, folded, dyn, k0
        self.ybound = ybound  # max |y|


class _Affine:
    """``z = floor(N / 2^s)``, ``N = a * mult + base`` (minus ``negcorr`` where ``neg`` and ``a < thr``)."""

    def __init__(self, mult: list[int], s: list[int], base: list[int], neg: list[bool], thr: list[int], negcorr: int):
        self.mult, self.s, self.base, self.neg, self.thr, self.negcorr = mult, s, base, neg, thr, negcorr

    def center(self, lo: list[int], hi: list[int], center: list[int], zo: int) -> _Plan | None:
        """The plan for accumulators in [lo, hi], evaluated as ``x = a - center``; None if not exact."""
        const, madd, dyn, k0, extent = [], [], [], [], []
        for i in range(len(lo)):
            me, s, c = self.mult[i], self.s[i], center[i]
            d = self.neg[i] and lo[i] < self.thr[i] <= hi[i]
            always = self.neg[i] and hi[i] < self.thr[i]
            n_c = c * me + self.base[i] - (self.negcorr if always else 0)  # N at the centre
            m = (n_c + (1 << (s - 1))) >> s  # nearest multiple of 2^s
            k = n_c - m * (1 << s)
            ext = max(abs(lo[i] - c), abs(hi[i] - c)) * me
            if ext + abs(k) + self.negcorr >= _LIMIT:
                return None
            const.append(k)
            madd.append(m + zo)
            dyn.append(d)
            k0.append((self.thr[i] - c) * me + k if d else 0)
            extent.append(ext + abs(k) + self.negcorr)
        folded = all(extent[i] + abs(madd[i]) * (1 << self.s[i]) < _LIMIT for i in range(len(lo)))
        if folded:
            const = [const[i] + madd[i] * (1 << self.s[i]) for i in range(len(lo))]
            k0 = [k0[i] + madd[i] * (1 << self.s[i]) for i in range(len(lo))]
        ybound = max(math.ldexp(float(extent[i]), -self.s[i]) + (abs(madd[i]) if folded else 0) for i in range(len(lo)))
        return _Plan(const, madd, folded, dyn, k0, ybound)


def requant_for(ctx: HtpBuildContext, xq: QParams, oq: QParams, w_scale: np.ndarray, channels: int,
                w_bits: int, x2q: QParams | None = None) -> Requant:
    """The requantization of an op with input encoding ``xq`` (and ``x2q`` for a second activation),
    weight scales ``w_scale`` (one or per channel) and output encoding ``oq``."""
    s_in = float(xq.scale[0]) * (float(x2q.scale[0]) if x2q is not None else 1.0)
    real = s_in * np.broadcast_to(w_scale, (channels,)).astype(np.float64) / float(oq.scale[0])
    wide = xq.bitwidth == 16 or w_bits == 16 or (x2q is not None and x2q.bitwidth == 16)
    return Requant(real, int(oq.zero_point[0]), oq.bitwidth, wide, ctx.device)


# -- GEMM -----------------------------------------------------------------------------------------

_INT_MM_CPU: bool | None = None


def _int_mm_cpu() -> bool:
    """Whether this PyTorch runs torch._int_mm on the CPU (int8 x int8 -> int32)."""
    global _INT_MM_CPU
    if _INT_MM_CPU is None:
        try:
            a = torch.ones(3, 5, dtype=torch.int8)
            _INT_MM_CPU = bool(torch._int_mm(a, a.t().contiguous()).eq(5).all())
        except (RuntimeError, AttributeError, NotImplementedError):
            _INT_MM_CPU = False
    return _INT_MM_CPU


def gemm_mode(ctx: HtpBuildContext) -> str:
    """``int8``: torch._int_mm (CPU); ``float64``: exact float64 products (other devices)."""
    return "int8" if ctx.device.type == "cpu" and _int_mm_cpu() else "float64"


def make_mm(mode: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """mm(a [m, k] int8, bt [n, k] int8 or float64 in float64 mode) -> a @ bt.T (int32 / float64, exact)."""
    if mode == "int8":
        def mm(a: torch.Tensor, bt: torch.Tensor) -> torch.Tensor:
            return torch._int_mm(a, bt.t())
    else:
        def mm(a: torch.Tensor, bt: torch.Tensor) -> torch.Tensor:
            return a.to(torch.float64) @ bt.t()
    return mm


def weight_matrix(part: np.ndarray, mode: str, device: torch.device) -> torch.Tensor:
    """[k, n] integer weights -> the second GEMM operand stored transposed ([n, k], contiguous)."""
    dtype = torch.int8 if mode == "int8" else torch.float64
    return torch.tensor(np.ascontiguousarray(part.T), dtype=dtype, device=device)


def col_bound(part: np.ndarray) -> np.ndarray:
    """Bound of |int8 activations @ part| per column (activations within [-128, 127])."""
    return 128.0 * np.abs(part.astype(np.float64)).reshape(-1, part.shape[-1]).sum(axis=0)


# -- convolutions: geometry and the spec -------------------------------------------------------------

class _Geo:
    def __init__(self, node: Node, ctx: HtpBuildContext):
        x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
        self.n, self.h, self.w, self.c = ctx.shape(x)
        self.kh, self.kw = ctx.shape(w)[:2]
        self.sh, self.sw = (int(v) for v in node.attrs["stride"])
        self.dh, self.dw = (int(v) for v in node.attrs["dilation"])
        (self.pt, self.pb), (self.pl, self.pr) = ((int(a), int(b)) for a, b in node.attrs["pad_amount"])
        self.oh, self.ow, self.cout = ctx.shape(y)[1:]
        if min(self.pt, self.pb, self.pl, self.pr) < 0:
            raise Unsupported("negative padding")


def conv_acc_np(xc: np.ndarray, wc: np.ndarray, g: _Geo, groups: int) -> np.ndarray:
    """Spec: sum over taps of xc (zero point removed, padding 0) times wc [kh, kw, cin/g, cout] (int64)."""
    xp = np.pad(xc, ((0, 0), (g.pt, g.pb), (g.pl, g.pr), (0, 0)))
    cin_g, cout = wc.shape[2], wc.shape[3]
    cout_g = cout // groups
    acc = np.zeros((g.n, g.oh, g.ow, groups, cout_g), dtype=np.int64)
    for i in range(g.kh):
        for j in range(g.kw):
            patch = xp[:, i * g.dh:i * g.dh + (g.oh - 1) * g.sh + 1:g.sh, j * g.dw:j * g.dw + (g.ow - 1) * g.sw + 1:g.sw]
            patch = patch.reshape(g.n, g.oh, g.ow, groups, cin_g)
            wt = wc[i, j].reshape(cin_g, groups, cout_g).transpose(1, 0, 2)
            acc += np.einsum("nhwgc,gcd->nhwgd", patch, wt)
    return acc.reshape(g.n, g.oh, g.ow, cout)


def tconv_acc_np(xc: np.ndarray, wc: np.ndarray, g: _Geo, groups: int) -> np.ndarray:
    """Spec of the transposed convolution: every input pixel scatters x * w [kh, kw, cin, cout/g]
    to ``i * stride + k * dilation``; the full result is cropped by the pads (output_padding rows
    beyond it receive nothing)."""
    cin, cout_g = wc.shape[2], wc.shape[3]
    cin_g = cin // groups
    full_h = (g.h - 1) * g.sh + g.dh * (g.kh - 1) + 1
    full_w = (g.w - 1) * g.sw + g.dw * (g.kw - 1) + 1
    buf = np.zeros((g.n, max(full_h, g.pt + g.oh), max(full_w, g.pl + g.ow), groups, cout_g), dtype=np.int64)
    xg = xc.reshape(g.n, g.h, g.w, groups, cin_g)
    for i in range(g.kh):
        for j in range(g.kw):
            contrib = np.einsum("nhwgc,gcd->nhwgd", xg, wc[i, j].reshape(groups, cin_g, cout_g))
            buf[:, i * g.dh:i * g.dh + (g.h - 1) * g.sh + 1:g.sh, j * g.dw:j * g.dw + (g.w - 1) * g.sw + 1:g.sw] += contrib
    return buf[:, g.pt:g.pt + g.oh, g.pl:g.pl + g.ow].reshape(g.n, g.oh, g.ow, groups * cout_g)


# -- convolutions: the fast path ------------------------------------------------------------------

class _ConvCore:
    """Int8 GEMM convolution of an already padded int8 input [planes * n, hp, wp, c] (stride, dilation,
    groups) with static weights [kh, kw, cin/g, cout]; ``run(p)`` returns the requantized output."""

    def __init__(self, wc: np.ndarray, xq: QParams, rq: Requant, bias: np.ndarray, n: int, hp: int, wp: int,
                 oh: int, ow: int, stride: tuple[int, int], dilation: tuple[int, int], groups: int, mode: str,
                 device: torch.device):
        kh, kw, cin_g, cout = wc.shape
        cout_g = cout // groups
        self.geo = (n, oh, ow, kh, kw, stride, dilation, groups, cin_g)
        k = kh * kw * cin_g
        # per group: [k, cout_g] weights as int8 planes; b0 per output channel
        mats = [wc[..., gi * cout_g:(gi + 1) * cout_g].reshape(k, cout_g) for gi in range(groups)]
        parts_b, b0 = int8_split(np.concatenate(mats, axis=1) if groups > 1 else mats[0])
        a0 = act_a0(xq)
        coefs_a = act_coefs(xq.bitwidth)
        self.planes = len(coefs_a)
        self.m = n * oh * ow
        # static: off = bias - a0 * sum_r d_r colsum(B_r) + K * a0 * b0
        colsum = sum(d * part.astype(np.int64).sum(axis=0) for d, part in parts_b)
        off = bias - a0 * colsum + k * a0 * b0
        self.b_t = [[weight_matrix(part[:, gi * cout_g:(gi + 1) * cout_g], mode, device) for gi in range(groups)]
                    for _, part in parts_b]
        if mode == "int8" and max(float(col_bound(part).max()) for _, part in parts_b) >= INT32_MAX:
            raise Unsupported(f"a reduction over {k} products may overflow the int32 GEMM accumulator")
        self.mm = make_mm(mode)
        self.use_row = bool(b0.any())
        terms: list[Term] = []
        self.term_index: list[tuple[int, int]] = []  # (A plane, B part) per GEMM term
        for pa, ca in enumerate(coefs_a):
            for rb, (db, part) in enumerate(parts_b):
                terms.append((ca * db, col_bound(part)))
                self.term_index.append((pa, rb))
        row_bound = 128.0 * k
        if self.use_row:
            terms += [(-ca * b0, np.full(cout, row_bound)) for ca in coefs_a]
        self.narrow = not rq.wide
        # 16-bit activations, one weight plane: 256 * hi + lo combined in int32 when it cannot overflow
        self.combine = (not self.narrow and self.planes == 2 and len(parts_b) == 1 and not self.use_row
                        and mode == "int8" and float(257.0 * col_bound(parts_b[0][1]).max()) < INT32_MAX)
        if self.combine:
            self.requant = rq.fast(off, [(1, 257.0 * col_bound(parts_b[0][1]))], torch.int32)
        elif self.narrow:  # one int accumulator: the row correction joins it in place
            assert len(terms) == 1 or (len(terms) == 2 and self.use_row)
            bound = np.zeros(cout)
            for c, b in terms:
                bound = bound + np.abs(np.asarray(c, dtype=np.float64)) * b
            ok32 = float(np.max(bound)) < INT32_MAX
            self.negb0 = torch.tensor(-b0, dtype=torch.int32 if mode == "int8" else torch.float64, device=device)
            if self.use_row and not ok32:
                raise Unsupported("accumulator may overflow int32 before requantization")
            first = torch.int32 if mode == "int8" else torch.float64
            self.requant = rq.fast(off, [(1, bound)], first)
        else:
            self.requant = rq.fast(off, terms, torch.int32 if mode == "int8" else torch.float64)
        self.cout_g, self.mode = cout_g, mode
        self.pointwise = kh == kw == 1 and stride == (1, 1) and hp == oh and wp == ow and groups == 1

    def cols(self, p: torch.Tensor) -> torch.Tensor:
        """[planes * m, k] (groups == 1) or [groups, planes * m, k/g] im2col rows of p (scratch)."""
        _, oh, ow, kh, kw, (sh, sw), (dh, dw), groups, cin_g = self.geo
        nb = p.shape[0]
        if self.pointwise:
            return p.reshape(nb * oh * ow, cin_g)
        s_n, s_h, s_w, s_c = p.stride()
        if groups == 1:
            v = p.as_strided((nb, oh, ow, kh, kw, cin_g), (s_n, s_h * sh, s_w * sw, s_h * dh, s_w * dw, s_c),
                             p.storage_offset())
            out = scratch("cols", (nb * oh * ow, kh * kw * cin_g), p.dtype, p.device)
            out.view(v.shape).copy_(v)
            return out
        v = p.as_strided((nb, oh, ow, kh, kw, groups, cin_g),
                         (s_n, s_h * sh, s_w * sw, s_h * dh, s_w * dw, s_c * cin_g, s_c), p.storage_offset())
        out = scratch("cols", (groups, nb * oh * ow, kh * kw * cin_g), p.dtype, p.device)
        out.view(groups, nb, oh, ow, kh, kw, cin_g).copy_(v.permute(5, 0, 1, 2, 3, 4, 6))
        return out

    def products(self, a: torch.Tensor) -> list[torch.Tensor]:
        """One accumulator [rows, cout] per weight plane."""
        rows, cout = a.shape[-2], self.cout_g * len(self.b_t[0])
        int8 = self.mode == "int8"
        prods = []
        for rb, mats in enumerate(self.b_t):
            if a.dim() == 2:
                if int8:
                    acc = scratch(f"acc{rb}", (rows, cout), torch.int32, a.device)
                    prods.append(torch._int_mm(a, mats[0].t(), out=acc))
                else:
                    prods.append(self.mm(a, mats[0]))
                continue
            groups = len(mats)
            if int8:
                gacc = scratch("gacc", (groups, rows, self.cout_g), torch.int32, a.device)
                for gi, bt in enumerate(mats):
                    torch._int_mm(a[gi], bt.t(), out=gacc[gi])
                acc = scratch(f"acc{rb}", (rows, cout), torch.int32, a.device)
                acc.view(rows, groups, self.cout_g).copy_(gacc.permute(1, 0, 2))
                prods.append(acc)
            else:
                prods.append(torch.cat([self.mm(a[gi], bt) for gi, bt in enumerate(mats)], dim=1))
        return prods

    def run(self, p: torch.Tensor) -> torch.Tensor:
        n, oh, ow = self.geo[:3]
        a = self.cols(p)
        m = self.m
        prods = self.products(a)
        if self.use_row:  # row sums of the im2col rows, per output channel (its group's rows)
            rows = a.sum(dim=-1, dtype=torch.int32 if a.dtype == torch.int8 else torch.float64)
            rows = rows.t().repeat_interleave(self.cout_g, dim=1) if a.dim() == 3 else rows.unsqueeze(1)
            if self.mode != "int8":
                rows = rows.to(torch.float64)
        if self.combine:
            hi = prods[0][:m]
            out = self.requant(torch.add(prods[0][m:], hi, alpha=256, out=hi))
        elif self.narrow:
            acc = prods[0]
            if self.use_row:
                acc.addcmul_(rows, self.negb0)
            out = self.requant(acc)
        else:
            ts = [prods[rb][pa * m:(pa + 1) * m] for pa, rb in self.term_index]
            if self.use_row:
                ts += [rows[pa * m:(pa + 1) * m] for pa in range(self.planes)]
            out = self.requant(*ts)
        return out.reshape(n, oh, ow, -1)


def _pad_planes_fn(xq: QParams, n: int, h: int, w: int, c: int, hp: int, wp: int,
                   rows: tuple[int, int, int, int], cols: tuple[int, int, int, int], device: torch.device
                   ) -> Callable[[torch.Tensor], torch.Tensor]:
    """x (storage) -> int8 planes [planes * n, hp, wp, c] of x placed at rows r0::rs (input rows
    i0:i1) and columns likewise, everything else the zero point (padding / zero stuffing)."""
    i0, i1, r0, rs = rows
    j0, j1, c0, cs = cols
    r1, c1 = r0 + (i1 - i0 - 1) * rs + 1, c0 + (j1 - j0 - 1) * cs + 1
    zx = int(xq.zero_point[0])
    whole = (hp, wp) == (h, w) and rows == (0, h, 0, 1) and cols == (0, w, 0, 1)
    empty = i1 <= i0 or j1 <= j0
    if xq.bitwidth == 8:
        fill = zx - 128

        def planes8(x: torch.Tensor) -> torch.Tensor:
            if whole:
                return torch.bitwise_xor(x.view(torch.int8), -128)
            p = scratch("pad", (n, hp, wp, c), torch.int8, device).fill_(fill)
            if not empty:
                torch.bitwise_xor(x.view(torch.int8)[:, i0:i1, j0:j1], -128, out=p[:, r0:r1:rs, c0:c1:cs])
            return p

        return planes8
    fills = ((zx >> 8) - 128, (zx & 255) - 128)

    def planes16(x: torch.Tensor) -> torch.Tensor:
        if whole:
            return act_planes(x, 16).reshape(2 * n, hp, wp, c)
        p = scratch("pad", (2, n, hp, wp, c), torch.int8, device)
        p[0].fill_(fills[0])
        p[1].fill_(fills[1])
        if not empty:
            v = x[:, i0:i1, j0:j1]
            p[0, :, r0:r1:rs, c0:c1:cs].copy_((v >> 8) - 128)
            p[1, :, r0:r1:rs, c0:c1:cs].copy_((v & 255) - 128)
        return p.view(2 * n, hp, wp, c)

    return planes16


def _fp32_conv_is_ieee() -> bool:
    """Whether oneDNN runs float32 convolutions in float32 (not bf16/tf32 by a user's precision setting)."""
    mk = torch.backends.mkldnn
    for obj in (mk, getattr(mk, "conv", None)):
        if obj is not None and getattr(obj, "fp32_precision", "none") not in ("none", "ieee"):
            return False
    return True


def _mkldnn_ok(device: torch.device) -> bool:
    return (device.type == "cpu" and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
            and hasattr(torch.ops.mkldnn, "_reorder_convolution_weight") and _fp32_conv_is_ieee())


def _float32_exact(wc: np.ndarray) -> bool:
    """Whether every partial sum of (q - zx) * w (|q - zx| <= 255) stays below 2^24."""
    return float(255.0 * np.abs(wc.astype(np.float64)).reshape(-1, wc.shape[-1]).sum(axis=0).max()) < float(1 << 24)


def _float_conv(ctx: HtpBuildContext, g: _Geo, xq: QParams, wc: np.ndarray, rq: Requant, bias: np.ndarray,
                groups: int, mode: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """A float convolution of ``q - zx`` (so the convolution's own zero padding is the zero point),
    exact since all partial sums are integers below 2^24 (float32, oneDNN with weights reordered
    once) or 2^53 (float64). Used for depthwise convolutions and tiny input depths, where im2col
    GEMMs do poorly. 16-bit inputs run as two 8-bit planes (``q - zx = 256 * (hi - zhi) + (lo -
    zlo)``) in one call."""
    cout = wc.shape[-1]
    zx = int(xq.zero_point[0])
    absw = np.abs(wc.astype(np.float64)).reshape(-1, cout).sum(axis=0)
    mkl = mode == "int8" and _float32_exact(wc) and _mkldnn_ok(ctx.device)
    dtype = torch.float32 if mkl else torch.float64
    weight = torch.tensor(np.ascontiguousarray(wc.transpose(3, 2, 0, 1)), dtype=dtype, device=ctx.device)
    planes = 1 if xq.bitwidth == 8 else 2
    coefs = [1] if planes == 1 else [256, 1]
    # 8-bit input on oneDNN: convolve x itself, padded with zx (no subtraction pass): every tap of
    # x - zx is then the same minus zx, so conv(x) = conv(x - zx) + zx * sum(w), folded into the bias
    raw = mkl and planes == 1
    if raw:
        run_rq = rq.fast(bias - zx * wc.astype(np.int64).reshape(-1, cout).sum(axis=0), [(1, 255.0 * absw)], dtype)
    else:
        run_rq = rq.fast(bias, [(c, 255.0 * absw) for c in coefs], dtype)
    n, c = g.n, g.c
    symmetric = g.pt == g.pb and g.pl == g.pr and not raw
    hp, wp = (g.h, g.w) if symmetric else (g.h + g.pt + g.pb, g.w + g.pl + g.pr)
    top, left = (0, 0) if symmetric else (g.pt, g.pl)
    bottom, right = top + g.h, left + g.w
    pad = [g.pt, g.pl] if symmetric else [0, 0]
    stride, dilation = [g.sh, g.sw], [g.dh, g.dw]
    zeros = [zx] if planes == 1 else [zx >> 8, zx & 255]
    if mkl:
        packed = torch.ops.mkldnn._reorder_convolution_weight(weight, pad, stride, dilation, groups,
                                                                [planes * n, c, hp, wp])
        mk = torch.ops.mkldnn._convolution_pointwise.default

        def conv(p: torch.Tensor) -> torch.Tensor:
            return mk(p.permute(0, 3, 1, 2), packed, None, pad, stride, dilation, groups, "none", [], "")
    else:  # float64 multiply-accumulate per tap (exact whatever the device; depthwise only)
        assert wc.shape[2] == 1 and groups == c
        mult = cout // c
        taps = [(i, j, weight[:, 0, i, j].clone()) for i in range(wc.shape[0]) for j in range(wc.shape[1])]
        oh, ow = g.oh, g.ow

        def conv(p: torch.Tensor) -> torch.Tensor:
            if pad != [0, 0]:
                p = F.pad(p, (0, 0, pad[1], pad[1], pad[0], pad[0]))
            if mult > 1:
                p = p.repeat_interleave(mult, dim=-1)
            acc = None
            for i, j, wt in taps:
                v = p[:, i * g.dh:i * g.dh + (oh - 1) * g.sh + 1:g.sh, j * g.dw:j * g.dw + (ow - 1) * g.sw + 1:g.sw]
                acc = v * wt if acc is None else acc.addcmul_(v, wt)
            assert acc is not None
            return acc.permute(0, 3, 1, 2)

    borders = [(rows, cols) for rows, cols in (((0, top), (0, wp)), ((bottom, hp), (0, wp)),
                                               ((top, bottom), (0, left)), ((top, bottom), (right, wp)))
               if rows[1] > rows[0] and cols[1] > cols[0]]

    def run_raw(x: torch.Tensor) -> torch.Tensor:
        p = scratch("dwpad", (n, hp, wp, c), dtype, x.device)
        for (r0, r1), (c0, c1) in borders:  # the padding: the zero point
            p[:, r0:r1, c0:c1].fill_(zx)
        p[:, top:bottom, left:right].copy_(x)
        return run_rq(conv(p).permute(0, 2, 3, 1))

    def run(x: torch.Tensor) -> torch.Tensor:
        p = scratch("dwpad", (planes * n, hp, wp, c), dtype, x.device)
        for i, z in enumerate(zeros):
            pi = p[i * n:(i + 1) * n] if planes > 1 else p
            if not symmetric:  # the border only
                pi[:, :top].zero_()
                pi[:, bottom:].zero_()
                pi[:, top:bottom, :left].zero_()
                pi[:, top:bottom, right:].zero_()
                pi = pi[:, top:bottom, left:right]
            pi.copy_(x if planes == 1 else (x >> 8 if i == 0 else x & 255)).sub_(z)
        acc = conv(p).permute(0, 2, 3, 1)
        if planes == 1:
            return run_rq(acc)
        return run_rq(acc[:n], acc[n:])

    return run_raw if raw else run


def _requant_np(rq: Requant, acc: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return rq.reference(acc + bias)


def _x_np(x: np.ndarray, xq: QParams) -> np.ndarray:
    return np.asarray(x, dtype=np.int64) - int(xq.zero_point[0])


def _conv_common(node: Node, ctx: HtpBuildContext) -> tuple[QParams, QParams, np.ndarray, np.ndarray, int]:
    xq = act_qparams(ctx, node.inputs[0], "input")
    oq = act_qparams(ctx, node.outputs[0], "output")
    wc, w_scale, w_bits = static_operand(ctx, node.inputs[1], 3)
    return xq, oq, wc, w_scale, w_bits


@htp_kernel("Conv2d", "DepthWiseConv2d")
def conv2d(node: Node, ctx: HtpBuildContext) -> HtpStep:
    return build_conv2d(node, ctx)


def build_conv2d(node: Node, ctx: HtpBuildContext, mode: str | None = None) -> HtpStep:
    """Conv2d / DepthWiseConv2d with static weights; ``mode`` forces the GEMM kind (tests)."""
    mode = mode or gemm_mode(ctx)
    g = _Geo(node, ctx)
    depthwise = node.op_type == "DepthWiseConv2d"
    groups = g.c if depthwise else int(node.attrs["group"])
    xq, oq, wc, w_scale, w_bits = _conv_common(node, ctx)
    rq = requant_for(ctx, xq, oq, w_scale, g.cout, w_bits)
    if depthwise:
        if wc.shape[2] != 1:
            raise Unsupported("DepthWiseConv2d filter must be [kh, kw, 1, cout]")
    b_name = node.inputs[2] if len(node.inputs) > 2 else ""
    acc_scale = float(xq.scale[0]) * np.broadcast_to(w_scale, (g.cout,)).astype(np.float64)
    bias = bias_q(ctx, b_name, acc_scale, rq.wide)

    def reference(x: np.ndarray) -> np.ndarray:
        return _requant_np(rq, conv_acc_np(_x_np(x, xq), wc, g, groups), bias)

    cin_g = wc.shape[2]
    # tiny input depths: a float convolution beats the int8 GEMM while the im2col rows stay short
    # (3x3x3: 0.32 vs 0.53 ms); with long ones (7x7x3) the GEMM wins (1.0 vs 1.27 ms)
    tiny = g.c <= 4 and g.kh * g.kw * g.c <= 64
    if (cin_g == 1 and groups == g.c) or (tiny and mode == "int8" and _float32_exact(wc) and _mkldnn_ok(ctx.device)):
        fast = _float_conv(ctx, g, xq, wc, rq, bias, groups, mode)
    else:
        hp, wp = g.h + g.pt + g.pb, g.w + g.pl + g.pr
        core = _ConvCore(wc, xq, rq, bias, g.n, hp, wp, g.oh, g.ow, (g.sh, g.sw), (g.dh, g.dw), groups, mode,
                         ctx.device)
        prep = _pad_planes_fn(xq, g.n, g.h, g.w, g.c, hp, wp, (0, g.h, g.pt, 1), (0, g.w, g.pl, 1), ctx.device)
        core_run = core.run

        def fast(x: torch.Tensor) -> torch.Tensor:
            return core_run(prep(x))

    return HtpStep(reference, fast, [node.inputs[0]], list(node.outputs), node.name, node.op_type)


@htp_kernel("TransposeConv2d")
def transpose_conv2d(node: Node, ctx: HtpBuildContext) -> HtpStep:
    return build_transpose_conv2d(node, ctx)


def build_transpose_conv2d(node: Node, ctx: HtpBuildContext, mode: str | None = None) -> HtpStep:
    """TransposeConv2d with static weights [kh, kw, cin, cout/g]. Fast path: the input stuffed with
    ``stride - 1`` zero-point rows/columns between pixels and padded (or cropped) so that a stride-1
    convolution with the spatially flipped kernel gives the cropped output directly."""
    mode = mode or gemm_mode(ctx)
    g = _Geo(node, ctx)
    groups = int(node.attrs["group"])
    xq, oq, wc, w_scale, w_bits = _conv_common(node, ctx)
    kh, kw, cin, cout_g = wc.shape
    cin_g = cin // groups
    # per-channel scales along axis 3 index cout/g: output channel g * cout_g + co has scale[co]
    w_scale_out = np.tile(np.broadcast_to(w_scale, (cout_g,)), groups)
    rq = requant_for(ctx, xq, oq, w_scale_out, g.cout, w_bits)
    b_name = node.inputs[2] if len(node.inputs) > 2 else ""
    bias = bias_q(ctx, b_name, float(xq.scale[0]) * w_scale_out, rq.wide)

    def reference(x: np.ndarray) -> np.ndarray:
        return _requant_np(rq, tconv_acc_np(_x_np(x, xq), wc, g, groups), bias)

    # conv weights [kh, kw, cin/g, cout]: W2[i, j, ci, gi * cout_g + co] = w[kh-1-i, kw-1-j, gi * cin_g + ci, co]
    wf = wc[::-1, ::-1].reshape(kh, kw, groups, cin_g, cout_g).transpose(0, 1, 3, 2, 4).reshape(kh, kw, cin_g, -1)
    hp, wp = g.oh + g.dh * (kh - 1), g.ow + g.dw * (kw - 1)

    def placement(size: int, stride: int, top: int, span: int) -> tuple[int, int, int, int]:
        """Input indices i0:i1 whose stuffed position i * stride + top falls in [0, span)."""
        i0 = 0 if top >= 0 else (-top + stride - 1) // stride
        i1 = min(size, (span - 1 - top) // stride + 1) if span - 1 - top >= 0 else 0
        return i0, max(i0, i1), i0 * stride + top, stride

    rows = placement(g.h, g.sh, g.dh * (kh - 1) - g.pt, hp)
    cols = placement(g.w, g.sw, g.dw * (kw - 1) - g.pl, wp)
    core = _ConvCore(np.ascontiguousarray(wf), xq, rq, bias, g.n, hp, wp, g.oh, g.ow, (1, 1), (g.dh, g.dw), groups,
                     mode, ctx.device)
    prep = _pad_planes_fn(xq, g.n, g.h, g.w, g.c, hp, wp, rows, cols, ctx.device)
    core_run = core.run

    def fast(x: torch.Tensor) -> torch.Tensor:
        return core_run(prep(x))

    return HtpStep(reference, fast, [node.inputs[0]], list(node.outputs), node.name, node.op_type)
