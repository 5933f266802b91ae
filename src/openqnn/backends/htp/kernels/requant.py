"""Requantization of integer accumulators, one multiplier per output channel (conv, linear).

:class:`Requant` maps exact accumulators to output integers::

    out[c] = clamp(zo + mbqm(acc[c], M[c], shift[c]), 0, 2^bw_out - 1)

``mbqm`` is the int32-accumulator requantization (TFLite's double rounding; the exact sum saturates
to int32 first) for 8-bit activations, ``mbqm64`` (one rounding, int64 accumulator) when an input
activation or the weights are 16-bit. ``reference`` is that spec in numpy int64; the fast form is
one floor of an affine function evaluated in float64 where every value is an exact dyadic fraction
(checked with integers at build time), with an int64 fallback. :func:`requant_for` builds one from
an op's encodings. (The per-tensor requantization of movement ops is common.py's ``Requant``.)
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from openqnn.backends.htp import native
from openqnn.backends.htp.fixedpoint import (
    INT32_MAX,
    INT32_MIN,
    mbqm64_np,
    mbqm64_t,
    mbqm_np,
    mbqm_t,
    quantize_multiplier,
)
from openqnn.backends.htp.kernels.registry import HtpBuildContext, QParams, Unsupported
from openqnn.backends.htp.kernels.scratch import scratch
from openqnn.backends.htp.native import NativeRequant
from openqnn.backends.htp.spec.qnn_conv16 import Conv16Spec, conv16_spec_for
from openqnn.backends.htp.spec.qnn_requant import QnnRequantSpec, TensorConsts, dw_strided16_pre, spec_for

__all__ = ["BLOCK", "SMALL", "QnnConv16Requant", "Requant", "RequantForm", "Term", "requant_for"]

Term = tuple[np.ndarray | int, np.ndarray]  # (integer coefficient per channel, bound of |tensor| per channel)


_NUMPY = {torch.float64: np.float64, torch.float32: np.float32, torch.int64: np.int64, torch.int32: np.int32}
_LIMIT = 1 << 53  # float64 holds every integer below this exactly
SMALL = 1 << 15  # below this many elements, per-op overhead outweighs per-element cost
BLOCK = 1 << 17  # requantize larger accumulators in blocks of about this many elements (cache)


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

    def __init__(self, real: np.ndarray, zo: int, out_bitwidth: int, wide: bool, device: torch.device,
                 multipliers: tuple[np.ndarray, np.ndarray] | None = None):
        """``real``: the scale ratio per channel, made fixed-point by quantize_multiplier, unless
        ``multipliers`` gives the (multiplier, shift) pairs (e.g. TFLite's mean, 1/count folded in)."""
        self.channels = real.size
        if multipliers is None:
            pairs = []
            for r in real.reshape(-1):
                try:
                    pairs.append(quantize_multiplier(float(r)))
                except ValueError as e:
                    raise Unsupported(f"requantization: {e}") from None
            multipliers = (np.array([m for m, _ in pairs]), np.array([s for _, s in pairs]))
        self.mult = np.asarray(multipliers[0], dtype=np.int64).reshape(-1)
        self.shift = np.asarray(multipliers[1], dtype=np.int64).reshape(-1)
        self.zo, self.qmax, self.wide = int(zo), (1 << out_bitwidth) - 1, wide
        self.bits = out_bitwidth
        self.out_dtype = torch.uint8 if out_bitwidth == 8 else torch.int32
        self.device = device
        if wide and (15 - self.shift < 1).any():
            raise Unsupported("requantization multiplier >= 2^14 is out of the 16-bit scheme's range")
        self.mode = ""  # the fast form chosen by the last fast() call (for tests and reports)
        self.native = False  # whether the last fast() call runs the C form (native/requant.c)
        self.native_form: NativeRequant | None = None  # that C form (fused kernels run its epilogue)
        # the chosen forms (RequantForm attrs) by accumulator (off, terms): decided in prepare, read when binding
        self.forms: dict[str, Any] = {}

    def accumulator_key(self, off: np.ndarray | int, terms: Sequence[Term]) -> str:
        """The key under which :meth:`fast` records (at prepare) the form it decides for the accumulator
        ``off + sum(coef * t)`` in :attr:`forms`: a plan that keeps it binds that form without hashing the
        accumulator again (:meth:`QnnRequant.stored_int_form`)."""
        return _Accumulator.of(off, terms, self.channels).key

    def to_attrs(self) -> dict[str, object]:
        """The requantization as plan attributes: the fixed-point pairs (``ms``: an int64 [2, channels]
        array, stored beside the plan's JSON), output zero point and bitwidth, and the accumulator
        scheme; :meth:`from_attrs` makes it again without quantize_multiplier."""
        return {"ms": np.stack([self.mult, self.shift]), "zo": self.zo, "bits": self.bits, "wide": bool(self.wide),
                "forms": self.forms}

    @staticmethod
    def from_attrs(attrs: Mapping[str, Any], device: torch.device) -> Requant:
        if attrs.get("arith") == "qnn":
            return QnnRequant.from_attrs(attrs, device)
        if attrs.get("arith") == "qnn16":
            return QnnConv16Requant.from_attrs(attrs, device)
        ms = np.asarray(attrs["ms"], dtype=np.int64)
        rq = Requant(np.zeros(ms.shape[1]), int(attrs["zo"]), int(attrs["bits"]), bool(attrs["wide"]), device,
                     (ms[0], ms[1]))
        forms = attrs.get("forms")
        if isinstance(forms, dict):
            # shared with the plan: the builder's own bind records the forms it decides into the plan
            rq.forms = forms
        return rq

    def reference(self, acc: np.ndarray) -> np.ndarray:
        z = (mbqm64_np if self.wide else mbqm_np)(acc, self.mult, self.shift)
        return np.clip(z + self.zo, 0, self.qmax)

    # -- fast --------------------------------------------------------------------------------
    def _t(self, values: Sequence[float] | Sequence[int] | np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        """Per-channel constants as a fresh tensor of ``dtype`` (numpy converts: a tensor's ``to`` costs more
        than the conversion itself for vectors this small, and binding makes hundreds)."""
        a = np.asarray(values)
        np_dtype = _NUMPY.get(dtype)
        if a.dtype == object or np_dtype is None:
            return torch.tensor(a.tolist(), dtype=dtype, device=self.device)
        t = torch.from_numpy(np.array(a, dtype=np_dtype))
        return t if self.device.type == "cpu" else t.to(self.device)

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

    def _affine(self) -> _Affine:
        """The spec as one floor of an affine function (direct formulas, no search)."""
        ch, mults, shifts = self.channels, self.mult.tolist(), self.shift.tolist()  # Python ints
        if self.wide:
            red = [0 if m == 0 else (0x7FFF if m >= 0x7FFF0000 else (m + (1 << 15)) >> 16) for m in mults]
            ts = [15 - s for s in shifts]
            return _Affine(red, ts, [1 << (t - 1) for t in ts], [False] * ch, [0] * ch, 0)
        left = [max(s, 0) for s in shifts]
        right = [max(-s, 0) for s in shifts]
        meff = [m << lft for m, lft in zip(mults, left)]
        # rdbpot's sign correction matters where a right shift rounds and a negative z can still
        # reach the output range (zo > 0)
        neg = [bool(right[i] and meff[i] and self.zo > 0) for i in range(ch)]
        thr = [-((1 << 30) // meff[i]) if meff[i] else 0 for i in range(ch)]
        return _Affine(meff, [31 + e for e in right], [(1 << 30) + ((1 << (e - 1)) << 31 if e else 0) for e in right],
                       neg, thr, 1 << 31)

    def _inputs(self, off: np.ndarray, terms: Sequence[Term]) -> tuple[list[int], list[list[int]], list[list[int]]]:
        ch = self.channels
        offs = [int(v) for v in np.broadcast_to(np.asarray(off, dtype=np.int64).reshape(-1), (ch,))]
        coefs = [[int(v) for v in np.broadcast_to(np.asarray(c, dtype=np.int64), (ch,))] for c, _ in terms]
        bounds = [[int(v) for v in np.broadcast_to(np.ceil(np.asarray(b, dtype=np.float64)), (ch,))]
                  for _, b in terms]
        return offs, coefs, bounds

    def form(self, off: np.ndarray, terms: Sequence[Term]) -> RequantForm:
        """The requantization form of ``acc = off + sum(coef_j * t_j)`` (prepare: searches and checks)."""
        return self._decide(*self._inputs(off, terms))

    def _decide(self, offs: list[int], coefs: list[list[int]], bounds: list[list[int]]) -> RequantForm:
        ch = self.channels
        span = [sum(abs(c[i]) * b[i] for c, b in zip(coefs, bounds)) for i in range(ch)]  # max |acc - off|
        spec = self._affine()
        single = len(coefs) == 1 and all(v == 1 for v in coefs[0])
        lo_acc = [offs[i] - span[i] for i in range(ch)]
        hi_acc = [offs[i] + span[i] for i in range(ch)]
        if not self.wide and max(max(abs(a), abs(b)) for a, b in zip(lo_acc, hi_acc)) > INT32_MAX:
            # the spec saturates the accumulator to int32 first: the same only where that saturates the output
            if not ((self.reference(np.full(ch, INT32_MAX)) == self.qmax).all()
                    and (self.reference(np.full(ch, INT32_MIN)) == 0).all()):
                return RequantForm("int64")
        fold = spec.center(lo_acc, hi_acc, offs, self.zo)
        if fold is not None:
            eps = _form_eps(spec, fold, coefs[0], bounds[0]) if len(coefs) == 1 else None
            return RequantForm.of("float64", fold, eps)
        if single and max(abs(o) + b for o, b in zip(offs, span)) < INT32_MAX:
            lo, hi = self._window(lo_acc, hi_acc)
            mid = [(a + b) // 2 for a, b in zip(lo, hi)]
            win = spec.center(lo, hi, mid, self.zo)
            if win is not None and all(abs(offs[i] - mid[i]) + span[i] < INT32_MAX for i in range(ch)):
                xbound = [max(abs(a - m), abs(b - m)) for a, b, m in zip(lo, hi, mid)]
                return RequantForm.of("window", win, _form_eps(spec, win, [1] * ch, xbound), lo, hi, mid)
        return RequantForm("int64")

    def fast(self, off: np.ndarray, terms: Sequence[Term], first_dtype: torch.dtype = torch.int32
             ) -> Callable[..., torch.Tensor]:
        """``run(*tensors)`` for ``acc = off + sum(coef_j * t_j)``; ``terms`` = (coef_j, bound_j) per tensor.

        The first tensor has the output's shape and may be modified in place (a fresh or scratch
        accumulator); the others broadcast against it. ``first_dtype`` is the first tensor's dtype.

        The form comes from :attr:`forms` where prepare decided it for this accumulator (a bound plan:
        no search, and the constants are made with array arithmetic); otherwise it is decided now and
        recorded there (prepare)."""
        acc = _Accumulator.of(off, terms, self.channels)
        stored = self.forms.get(acc.key)
        if stored is None:
            form = self._decide(*self._inputs(off, terms))
            self.forms[acc.key] = form.to_attrs()
        else:
            form = RequantForm.from_attrs(stored)
        return self.build(form, acc.offs, acc.coefs, first_dtype)

    def build(self, form: RequantForm, offs: np.ndarray, coefs: list[np.ndarray], first_dtype: torch.dtype
              ) -> Callable[..., torch.Tensor]:
        """The callable of a decided form (binding: constants to tensors, the C form where built)."""
        self.native, self.native_form = False, None
        if form.mode == "int64":
            return self._exact64(offs, coefs)
        consts = _Consts.of(self._spec(), form, coefs if form.mode == "float64" else None)
        if form.mode == "float64":
            self.mode = "float64"
            return self._run_fold(consts, first_dtype, form.eps)
        self.mode = "window"
        return self._run_window(consts, form, offs, first_dtype, form.eps)

    def _spec(self) -> tuple[np.ndarray, np.ndarray]:
        """The affine spec's multiplier and shift per channel (:meth:`_affine`'s, as arrays: binding)."""
        if self.wide:
            m = self.mult
            red = np.where(m == 0, 0, np.where(m >= 0x7FFF0000, 0x7FFF, (m + (1 << 15)) >> 16))
            return red.astype(np.int64), (15 - self.shift).astype(np.int64)
        left, right = np.maximum(self.shift, 0), np.maximum(-self.shift, 0)
        return self.mult << left, 31 + right

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

    def _finisher(self, k: _Consts) -> Callable[..., torch.Tensor]:
        """Centred float64 y (scratch) -> output storage: [floor, + (m + zo),] truncate, clamp, cast;
        into ``out`` when given (a block of a larger output).

        |y| beyond 2^30 is clamped first (int32 conversion); the output saturates there either way."""
        qmax, out_dtype, device, folded = self.qmax, self.out_dtype, self.device, k.folded
        madd_t = self._t(k.madd, torch.int32)
        big = k.ybound >= 2.0**30
        # folded 8-bit outputs with |y| < 2^15: truncate to int16 (cheaper conversions than int32)
        short = folded and out_dtype == torch.uint8 and k.ybound < 2.0**15 - 1

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

    def _dyn(self, k: _Consts) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """The sign correction's constants (k0, sc, nd) as tensors, None where no channel needs it."""
        if k.dyn is None:
            return None
        k0, sc, nd = k.dyn
        return self._t(k0, torch.float64), self._t(sc, torch.float64), self._t(nd, torch.float64)

    def _native(self, k: _Consts, c_t: torch.Tensor, r_t: torch.Tensor, in_dtype: torch.dtype,
                eps_form: float | None, window: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
                ) -> NativeRequant | None:
        """The C form of a one-term requantization (native/requant.c), where it is built and applies;
        ``eps_form``: prepare's bound of the float32 estimate's error (:func:`_form_eps`)."""
        lib = native.library() if self.device.type == "cpu" else None
        if lib is None or in_dtype not in (torch.float32, torch.float64, torch.int32):
            return None
        xthr = eps = None
        dyn = self._dyn(k)
        # (a float32 input holds integers below 2^24: the hand-vectorized kernels convert it exactly)
        if in_dtype in (torch.int32, torch.float32) and k.xthr_int32:
            xthr = self._t(k.xthr, torch.int32)
            eps = eps_form
        return NativeRequant(lib, in_dtype, self.out_dtype, self.qmax, c_t, r_t, self._t(k.madd, torch.int32),
                             k.folded, dyn, window, xthr, eps)

    def _consts(self, k: _Consts) -> tuple[torch.Tensor, list[torch.Tensor], Callable[..., torch.Tensor]]:
        c_t = self._t(k.const, torch.float64)
        r_ts = [self._t(r, torch.float64) for r in k.rates]
        finish = self._finisher(k)
        dyn = self._dyn(k)
        if dyn is None:
            return c_t, r_ts, finish
        # sign correction: t = N_thr - N = k0 - y * 2^S, clamped to [0, 1], times -2^-e
        k0_t, sc_t, nd_t = dyn
        device = self.device

        def correct_finish(y: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
            t = torch.addcmul(k0_t, y, sc_t, out=scratch("t", y.shape, torch.float64, device))
            y.addcmul_(t.clamp_(0.0, 1.0), nd_t)
            return finish(y, out)

        return c_t, r_ts, correct_finish

    def _run_fold(self, k: _Consts, first_dtype: torch.dtype, eps: float | None) -> Callable[..., torch.Tensor]:
        c_t, r_ts, finish = self._consts(k)
        r0, rest, device = r_ts[0], r_ts[1:], self.device
        native = self._native(k, c_t, r0, first_dtype, eps) if not rest else None
        if native is not None:
            self.native, self.native_form = True, native
            return self._native_run(native, self._blocked(self._torch_fold(c_t, r0, rest, finish, device)))
        return self._blocked(self._torch_fold(c_t, r0, rest, finish, device))

    def _torch_fold(self, c_t: torch.Tensor, r0: torch.Tensor, rest: list[torch.Tensor],
                    finish: Callable[..., torch.Tensor], device: torch.device) -> Callable[..., torch.Tensor]:
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

        return run

    @staticmethod
    def _native_run(native: NativeRequant, fallback: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        """The C form where it takes the input (and ``out``, where given: contiguous, of the input's shape and the
        output's dtype), else ``fallback``."""
        def run(t0: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
            if native.accepts(t0) and (out is None or (out.is_contiguous() and out.shape == t0.shape
                                                       and out.dtype == native.out_dtype)):
                return native.run(t0, out)
            return fallback(t0) if out is None else fallback(t0, out=out)

        return run

    def _run_window(self, k: _Consts, form: RequantForm, offs: np.ndarray, first_dtype: torch.dtype,
                    eps: float | None) -> Callable[..., torch.Tensor]:
        c_t, r_ts, finish = self._consts(k)
        r0, device = r_ts[0], self.device
        mid = np.asarray(form.mid, dtype=np.int64)
        shift_t = self._t(offs - mid, torch.int32)
        lo_t = self._t(np.asarray(form.lo, dtype=np.int64) - mid, torch.int32)
        hi_t = self._t(np.asarray(form.hi, dtype=np.int64) - mid, torch.int32)
        int_acc = first_dtype == torch.int32
        native = (self._native(k, c_t, r0, first_dtype, eps, (shift_t, lo_t, hi_t))
                  if first_dtype in (torch.int32, torch.float32) else None)

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

        if native is not None:
            self.native, self.native_form = True, native
            return self._native_run(native, self._blocked(run))
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


_U32 = 2.0**-24  # float32's unit roundoff


def _estimate_error(cst: np.ndarray, mul: np.ndarray, nd: np.ndarray, xbound: Sequence[int], ybound: float
                    ) -> float | None:
    """A bound of |y32 - y| for requant.c's float32 estimate (``rqf_*``), None where it does not
    apply: y = cst + x * mul (+ nd where corrected) exactly; y32 is fma(float(x), float32(mul),
    float32(cst)) (+ float32(nd)), with |x| <= xbound (exact in float32 below 2^24) and |y| <= ybound.
    The constants' rounding adds |x| * |mul - mul32| + |cst - cst32|, the FMA's rounding u * |its
    exact result|, the correction's add u * |its result| (u = 2^-24; nd is a power of two). Doubled
    for the float64 arithmetic of this bound; tiny values get an absolute margin (subnormals)."""
    x = np.asarray(xbound, dtype=np.float64)
    if x.size == 0 or x.max() >= 2.0**24:
        return None
    c, m, n = (np.asarray(t, dtype=np.float64) for t in (cst, mul, nd))
    dc = np.abs(c - c.astype(np.float32).astype(np.float64))
    dm = np.abs(m - m.astype(np.float32).astype(np.float64))
    e1 = (x * dm + dc) * (1 + _U32) + _U32 * (ybound + x * dm + dc)
    e = e1 + _U32 * (ybound + np.abs(n) + e1)
    eps = 2.0 * float(e.max()) + 2.0**-120
    # beyond this the bracket would often fail (float64 for those lanes: exact, slower)
    return eps if eps < 2.0**-6 and ybound < 2.0**30 else None


def _form_eps(spec: _Affine, plan: _Plan, coef: Sequence[int], xbound: Sequence[int]) -> float | None:
    """Prepare: the float32 estimate's error bound for requant.c (the constants ``_consts`` and
    ``_dyn`` make, in numpy), None where it does not apply (sign-correction threshold beyond int32)."""
    if not all(INT32_MIN <= v <= INT32_MAX for v in plan.xthr):
        return None
    ch = len(plan.const)
    cst = np.array([math.ldexp(float(plan.const[i]), -spec.s[i]) for i in range(ch)], dtype=np.float64)
    mul = np.array([math.ldexp(float(coef[i] * spec.mult[i]), -spec.s[i]) for i in range(ch)], dtype=np.float64)
    if any(plan.dyn):
        nd = np.array([-math.ldexp(1.0, 31 - spec.s[i]) if plan.dyn[i] else 0.0 for i in range(ch)], dtype=np.float64)
    else:
        nd = np.zeros(ch, dtype=np.float64)
    return _estimate_error(cst, mul, nd, xbound, plan.ybound)


@dataclass(frozen=True)
class _Accumulator:
    """An accumulator ``off + sum(coef_j * t_j)`` as per-channel arrays, and ``key``: its identity (the
    offsets, coefficients and ceiled bounds), under which prepare records the form it decided."""

    key: str
    offs: np.ndarray  # int64 (channels,)
    coefs: list[np.ndarray]  # int64 (channels,) per term

    @staticmethod
    def of(off: np.ndarray | int, terms: Sequence[Term], channels: int, keyed: bool = True) -> _Accumulator:
        """``keyed=False``: no key (a requantization that records no forms does not look one up)."""
        offs = _per_channel(np.asarray(off, dtype=np.int64).reshape(-1), channels)
        coefs = [_per_channel(np.asarray(c, dtype=np.int64), channels) for c, _ in terms]
        if not keyed:
            return _Accumulator("", offs, coefs)
        h = hashlib.blake2b(f"{channels}/{len(terms)}".encode("ascii"), digest_size=12)
        h.update(offs.data)
        for c, (_, b) in zip(coefs, terms):
            h.update(c.data)
            h.update(_per_channel(np.ceil(np.asarray(b, dtype=np.float64)), channels).data)
        return _Accumulator(h.hexdigest(), offs, coefs)


def _per_channel(a: np.ndarray, channels: int) -> np.ndarray:
    """``a`` (one value, or one per channel) as a contiguous array of ``channels`` values (np.broadcast_to's
    checks cost more than the rest of a bind step's requantization setup)."""
    if a.shape == (channels,):
        return np.ascontiguousarray(a)
    if a.size == 1:
        return np.full(channels, a.reshape(()), dtype=a.dtype)
    return np.ascontiguousarray(np.broadcast_to(a, (channels,)))


@dataclass(frozen=True)
class _Consts:
    """A float form's constants per channel, made with array arithmetic when binding: ``const`` and the
    ``rates`` (one per term) scaled by 2^-S, the output add ``madd``, the sign correction's (k0, sc, nd)
    where a channel needs it, and its thresholds ``xthr``."""

    const: np.ndarray
    rates: list[np.ndarray]
    madd: np.ndarray
    dyn: tuple[np.ndarray, np.ndarray, np.ndarray] | None
    xthr: np.ndarray
    xthr_int32: bool
    folded: bool
    ybound: float

    @staticmethod
    def of(spec: tuple[np.ndarray, np.ndarray], form: RequantForm, coefs: list[np.ndarray] | None) -> _Consts:
        meff, s = spec
        ch = s.size
        neg_s = -s
        # every value is an integer below 2^53 (checked in prepare), so float64 holds it exactly; a
        # product of two such is rounded once, as float() of the exact integer product would be
        const = np.ldexp(np.asarray(form.const, dtype=np.float64), neg_s)
        m64 = meff.astype(np.float64)
        cols = coefs if coefs is not None else [np.ones(ch, dtype=np.int64)]
        rates = [np.ldexp(c.astype(np.float64) * m64, neg_s) for c in cols]
        madd = np.clip(np.asarray(form.madd, dtype=np.int64), -(1 << 23), 1 << 23)
        dyn = None
        d = np.asarray(form.dyn, dtype=bool)
        if d.any():
            dyn = (np.where(d, np.asarray(form.k0, dtype=np.float64), 0.0), np.where(d, -np.ldexp(1.0, s), 0.0),
                   np.where(d, -np.ldexp(1.0, 31 - s), 0.0))
        # int64 holds every threshold (|x| < 2^53); the C kernels take them where int32 does
        xthr = np.asarray(form.xthr, dtype=np.int64) if len(form.xthr) else np.full(ch, INT32_MIN, dtype=np.int64)
        ok = bool(((xthr >= INT32_MIN) & (xthr <= INT32_MAX)).all())
        return _Consts(const, rates, madd, dyn, xthr, ok, form.folded, form.ybound)


@dataclass(frozen=True)
class RequantForm:
    """A decided requantization (prepare): ``mode`` int64, float64 (fold) or window; for the float
    forms the centred plan's constants, for window the clamp bounds and centres, and ``eps`` the
    bound of requant.c's float32 estimate (None: float64 only)."""

    mode: str  # per channel below: tuples (prepare) or int64 arrays (read from a plan)
    const: Sequence[int] | np.ndarray = ()
    madd: Sequence[int] | np.ndarray = ()
    folded: bool = False
    dyn: Sequence[bool] | np.ndarray = ()
    k0: Sequence[int] | np.ndarray = ()
    xthr: Sequence[int] | np.ndarray = ()
    ybound: float = 0.0
    lo: Sequence[int] | np.ndarray = ()
    hi: Sequence[int] | np.ndarray = ()
    mid: Sequence[int] | np.ndarray = ()
    eps: float | None = None

    @staticmethod
    def of(mode: str, plan: _Plan, eps: float | None, lo: Sequence[int] = (), hi: Sequence[int] = (),
           mid: Sequence[int] = ()) -> RequantForm:
        return RequantForm(mode, tuple(plan.const), tuple(plan.madd), bool(plan.folded), tuple(plan.dyn),
                           tuple(plan.k0), tuple(plan.xthr), float(plan.ybound), tuple(lo), tuple(hi), tuple(mid),
                           eps)

    def to_attrs(self) -> dict[str, Any]:
        """The form as plan attributes: its per-channel integers as one int64 array ``v`` (rows: const,
        madd, dyn, k0, xthr, then lo, hi, mid for a window), stored beside the plan's JSON."""
        if self.mode == "int64":
            return {"mode": "int64"}
        ch = len(self.const)
        rows = [self.const, self.madd, self.dyn if len(self.dyn) else (False,) * ch,
                self.k0 if len(self.k0) else (0,) * ch, self.xthr if len(self.xthr) else (INT32_MIN,) * ch]
        if self.mode == "window":
            rows += [self.lo, self.hi, self.mid]
        return {"mode": self.mode, "folded": self.folded, "ybound": self.ybound, "eps": self.eps,
                "v": np.array([[int(x) for x in r] for r in rows], dtype=np.int64)}

    @staticmethod
    def from_attrs(a: Mapping[str, Any]) -> RequantForm:
        if a["mode"] == "int64":
            return RequantForm("int64")
        eps = a.get("eps")
        v = np.asarray(a["v"], dtype=np.int64)
        window = a["mode"] == "window"
        return RequantForm(str(a["mode"]), v[0], v[1], bool(a["folded"]), v[2].astype(bool), v[3], v[4],
                           float(a["ybound"]), v[5] if window else (), v[6] if window else (), v[7] if window else (),
                           None if eps is None else float(eps))


def _to_f64(t: torch.Tensor, slot: str, device: torch.device) -> torch.Tensor:
    """t as float64 in a scratch buffer (mixed-dtype arithmetic would cast through a hidden temporary)."""
    if t.dtype == torch.float64 and slot == "y2":
        return t
    y = scratch(slot, t.shape, torch.float64, device)
    return y.copy_(t)


class _Plan:
    """A centred float64 evaluation: y = (x * mult + const) / 2^S, z = floor(y) + madd."""

    def __init__(self, const: list[int], madd: list[int], folded: bool, dyn: list[bool], k0: list[int],
                 ybound: float, xthr: list[int]):
        self.const, self.madd, self.folded, self.dyn, self.k0 = const, madd, folded, dyn, k0
        self.xthr = xthr  # per sign-corrected channel: the correction applies where x < xthr (x = a - centre)
        self.ybound = ybound  # max |y|


class _Affine:
    """``z = floor(N / 2^s)``, ``N = a * mult + base`` (minus ``negcorr`` where ``neg`` and ``a < thr``)."""

    def __init__(self, mult: list[int], s: list[int], base: list[int], neg: list[bool], thr: list[int], negcorr: int):
        self.mult, self.s, self.base, self.neg, self.thr, self.negcorr = mult, s, base, neg, thr, negcorr

    def center(self, lo: list[int], hi: list[int], center: list[int], zo: int) -> _Plan | None:
        """The plan for accumulators in [lo, hi], evaluated as ``x = a - center``; None if not exact."""
        const, madd, dyn, k0, extent, xthr = [], [], [], [], [], []
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
            xthr.append(self.thr[i] - c if d else INT32_MIN)
            extent.append(ext + abs(k) + self.negcorr)
        folded = all(extent[i] + abs(madd[i]) * (1 << self.s[i]) < _LIMIT for i in range(len(lo)))
        if folded:
            const = [const[i] + madd[i] * (1 << self.s[i]) for i in range(len(lo))]
            k0 = [k0[i] + madd[i] * (1 << self.s[i]) for i in range(len(lo))]
        ybound = max(math.ldexp(float(extent[i]), -self.s[i]) + (abs(madd[i]) if folded else 0) for i in range(len(lo)))
        return _Plan(const, madd, folded, dyn, k0, ybound, xthr)


def requant_for(ctx: HtpBuildContext, xq: QParams, oq: QParams, w_scale: np.ndarray, channels: int,
                w_bits: int, x2q: QParams | None = None, qnn_spec: bool = True, qnn_kernel: str = "conv") -> Requant:
    """The requantization of an op with input encoding ``xq`` (and ``x2q`` for a second activation),
    weight scales ``w_scale`` (one or per channel) and output encoding ``oq``: QNN's arithmetic for the arch
    where ``htp_config.arithmetic`` is "qnn" and it is established for the op (``qnn_spec``: convolutions,
    depthwise ones, TransposeConv2d and FullyConnected; ``qnn_kernel``: "dw_strided" for a strided depthwise
    convolution's own form) and its encodings (spec/qnn_requant.py), else TFLite's."""
    s_in = float(xq.scale[0]) * (float(x2q.scale[0]) if x2q is not None else 1.0)
    real = s_in * np.broadcast_to(w_scale, (channels,)).astype(np.float64) / float(oq.scale[0])
    wide = xq.bitwidth == 16 or w_bits == 16 or (x2q is not None and x2q.bitwidth == 16)
    if qnn_spec and ctx.arithmetic == "qnn":
        # QNN computes M from the float32 scales of the model it is given
        f32 = lambda v: np.asarray(v, dtype=np.float32).astype(np.float64)  # noqa: E731
        real32 = f32(xq.scale[0]) * f32(np.broadcast_to(w_scale, (channels,))) / f32(oq.scale[0])
        spec16 = (conv16_spec_for(ctx.arch.name, "qnn", real32, int(oq.zero_point[0]), xq.bitwidth, w_bits,
                                  oq.bitwidth) if x2q is None and qnn_kernel in QnnConv16Requant.KERNELS else None)
        if spec16 is not None:
            return QnnConv16Requant(real32, spec16, ctx.device)
        spec = spec_for(ctx.arch.name, "qnn", real32, int(oq.zero_point[0]), xq.bitwidth, w_bits, oq.bitwidth,
                        x2q is not None, qnn_kernel)
        if spec is not None and spec.kernel == "dw_strided" and oq.bitwidth == 16:
            # 16-bit codes: the zero point's share in float32 (spec/qnn_requant.py's dw_strided16_pre)
            spec = replace(spec, pre=dw_strided16_pre(float(xq.scale[0]), np.asarray(w_scale),
                                                                  float(oq.scale[0]), int(oq.zero_point[0]),
                                                                  channels))
        if spec is not None:
            return QnnRequant(real32, spec, wide, ctx.device)
    return Requant(real, int(oq.zero_point[0]), oq.bitwidth, wide, ctx.device)


class QnnRequant(Requant):
    """QNN's HTP requantization (spec/qnn_requant.py) behind :class:`Requant`'s interface: nothing to decide
    at prepare; a C form for one-term accumulators (requant.c's ``rqq_*``, which the fused int8 kernels run as
    their epilogue), an int64 PyTorch form otherwise."""

    def __init__(self, real: np.ndarray, spec: QnnRequantSpec, wide: bool, device: torch.device):
        self.real = np.asarray(real, dtype=np.float64).reshape(-1)
        zeros = np.zeros(self.real.size, dtype=np.int64)
        super().__init__(self.real, spec.zero_point, spec.qmax.bit_length(), wide, device, (zeros, zeros))
        self.spec = spec

    def to_attrs(self) -> dict[str, object]:
        """The multipliers, and the spec's integer constants as decided here (``consts``: an int64 [5, channels]
        array), so that binding a plan reads them instead of deriving them again."""
        return {"arith": "qnn", "arch": self.spec.arch, "real": self.real, "zo": self.zo, "bits": self.bits,
                "wide": bool(self.wide), "consts": self.spec.consts(), "forms": self.forms,
                "kernel": self.spec.kernel}

    @staticmethod
    def from_attrs(attrs: Mapping[str, Any], device: torch.device) -> QnnRequant:
        real = np.asarray(attrs["real"], dtype=np.float64)
        arch, zo, bits = str(attrs["arch"]), int(attrs["zo"]), int(attrs["bits"])
        consts = attrs.get("consts")
        kernel = str(attrs.get("kernel", "conv"))
        spec = (QnnRequantSpec.from_consts(arch, np.asarray(consts, dtype=np.int64), zo, bits, kernel)
                if consts is not None
                else QnnRequantSpec.of(arch, real, zo, bits, kernel))  # (a plan written before the constants were kept)
        rq = QnnRequant(real, spec, bool(attrs["wide"]), device)
        forms = attrs.get("forms")
        if isinstance(forms, dict):  # shared with the plan, as Requant's: prepare records its proofs there
            rq.forms = forms
        return rq

    @staticmethod
    def stored_int_form(attrs: Mapping[str, Any], key: Any, in_dtype: torch.dtype, device: torch.device
                        ) -> NativeRequant | None:
        """The C form that :meth:`fast` binds for the accumulator ``key`` (:meth:`~Requant.accumulator_key`) where
        prepare proved QNN's int32 form for it, from the plan's attributes alone (:meth:`to_attrs`): what binding a
        fused GEMM needs, without making the requantization or hashing the accumulator. None where the plan holds
        no such form (another arithmetic, a 16-bit output, no proof, no key, not the CPU): make it then."""
        if (attrs.get("arith") != "qnn" or int(attrs["bits"]) != 8 or not isinstance(key, str)
                or in_dtype not in (torch.int32, torch.float32) or device.type != "cpu"):
            return None
        forms = attrs.get("forms")
        stored = forms.get(key) if isinstance(forms, dict) else None
        ints = stored.get("int") if isinstance(stored, dict) else None
        lib = native.library()
        return None if ints is None or lib is None else QnnRequant._int_form(lib, in_dtype, ints)

    @staticmethod
    def _int_form(lib: Any, in_dtype: torch.dtype, ints: Any) -> NativeRequant:
        return NativeRequant.qnn_int(lib, in_dtype, 255, np.asarray(ints, dtype=np.int32))  # (8-bit output only)

    def reference(self, acc: np.ndarray) -> np.ndarray:
        return self.spec.apply_np(acc)

    def fast(self, off: np.ndarray, terms: Sequence[Term], first_dtype: torch.dtype = torch.int32
             ) -> Callable[..., torch.Tensor]:
        acc_spec = _Accumulator.of(off, terms, self.channels, keyed=len(terms) == 1)
        device, spec = self.device, self.spec
        self.native, self.native_form, self.mode = False, None, "qnn"
        made: list[tuple[TensorConsts, torch.Tensor, list[int | torch.Tensor]]] = []

        def tensors_of() -> tuple[TensorConsts, torch.Tensor, list[int | torch.Tensor]]:
            """The PyTorch form's constants, made on its first run (where the C form runs, never)."""
            if not made:
                coefs: list[int | torch.Tensor] = [
                    int(c[0]) if (c == c[0]).all() else torch.from_numpy(np.array(c, dtype=np.int64)).to(device)
                    for c in acc_spec.coefs]
                made.append((TensorConsts.of(spec, device),
                             torch.from_numpy(np.array(acc_spec.offs, dtype=np.int64)).to(device), coefs))
            return made[0]

        def run(t0: torch.Tensor, *tensors: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
            consts, off_t, coefs = tensors_of()
            acc = off_t + t0.to(torch.int64) * coefs[0]
            for c, t in zip(coefs[1:], tensors):
                acc += t.to(torch.int64) * c
            codes = spec.apply_t(acc, consts)
            if out is not None:
                return out.copy_(codes)
            return codes.to(self.out_dtype)

        form = self._qnn_native(acc_spec, first_dtype) if len(terms) == 1 else None
        if form is None:
            return run
        self.native, self.native_form = True, form
        return self._native_run(form, run)

    def _qnn_native(self, acc: _Accumulator, in_dtype: torch.dtype) -> NativeRequant | None:
        """The spec in C (requant.c's ``rqq_*``) for ``acc = off + c * x``: ``y1 = floor(cst + x * mul)`` is
        ``(acc + pre) >> s`` and ``floor(k0 + y1 * sc)`` the spec's rounded product, with cst = (off + pre) * 2^-s,
        mul = c * 2^-s, sc = m * 2^(s-k), k0 = (centre * m + half) * 2^-k. Both sums are integers below 2^53
        times powers of two for any int32 x (checked here), so float64 computes them exactly."""
        lib = native.library() if self.device.type == "cpu" else None
        if lib is None or in_dtype not in (torch.int32, torch.float32, torch.float64):
            return None
        # the int32 form (requant.c's rqi_*) where native.qnn_int_form proves it, which prepare does once and
        # records in :attr:`forms` (the plan): binding reads the proven constants
        int_form = in_dtype in (torch.int32, torch.float32) and self.out_dtype == torch.uint8
        stored = self.forms.get(acc.key) if int_form else None
        if stored is not None and stored["int"] is not None:
            return QnnRequant._int_form(lib, in_dtype, stored["int"])
        spec = self.spec
        base = acc.offs + spec.pre
        coef = acc.coefs[0]
        top = np.abs(base) + np.abs(coef) * (1 << 31)  # |acc + pre| for any int32 x
        if float(top.max(initial=0)) >= 2.0**52 or float((((top >> spec.shift) + 1) * spec.mult).max(initial=0)) >= 2.0**52:
            return None
        # the four float64 rows in one pass (this runs at every bind): cst, mul, k0, sc
        ints, exps = np.empty((4, self.channels), dtype=np.int64), np.empty((4, self.channels), dtype=np.int64)
        ints[0], ints[1], ints[3] = base, coef, spec.mult
        ints[2] = spec.centre * spec.mult + np.where(spec.k > 0, np.int64(1) << np.maximum(spec.k - 1, 0), 0)
        exps[0] = exps[1] = -spec.shift
        exps[2], exps[3] = -spec.k, spec.shift - spec.k
        cst, mul, k0, sc = np.ldexp(ints.astype(np.float64), exps)
        madd = np.full(self.channels, spec.post, dtype=np.int32)
        proven = None
        if int_form and stored is None:
            proven = native.qnn_int_form(cst, mul, k0, sc, madd, self.qmax)
            self.forms[acc.key] = {"int": proven}
        if proven is not None:
            return NativeRequant.qnn_int(lib, in_dtype, self.qmax, proven)
        return NativeRequant(lib, in_dtype, self.out_dtype, self.qmax, cst, mul, madd, False,
                             (k0, sc, np.zeros(self.channels)), None, qnn=True)



class QnnConv16Requant(Requant):
    """QNN's W8A16 requantization (spec/qnn_conv16.py's :class:`Conv16Spec`, v68 and v73): its accumulator is
    made from the input's high and low bytes' sums apart (the low one floored to units of 256), so it is not a
    function of one accumulator: the kernels give it the two plane sums (:meth:`planes_np`, :meth:`planes_fast`)
    with the weights' column sums and the bias, and :meth:`reference` / :meth:`fast` of one accumulator are not
    defined."""

    # the kernels it is established for; not a strided depthwise convolution ("dw_strided": the rule gives 24-53%
    # of the fidelity cases' codes there; its 8-bit form, QnnRequant's, 99.57-100%)
    KERNELS = ("conv",)

    def __init__(self, real: np.ndarray, spec: Conv16Spec, device: torch.device):
        self.real = np.asarray(real, dtype=np.float64).reshape(-1)
        zeros = np.zeros(self.real.size, dtype=np.int64)
        super().__init__(self.real, spec.zero_point, 16, True, device, (zeros, zeros))
        self.spec16 = spec
        self.mode = "qnn16"

    def to_attrs(self) -> dict[str, object]:
        """The multipliers ``M``, the output zero point and the spec's integer constants as decided here
        (``consts``: an int64 [2, channels] array, multiplier and shift), which binding reads."""
        return {"arith": "qnn16", "arch": self.spec16.arch, "real": self.real, "zo": self.zo, "bits": 16,
                "wide": True, "consts": np.stack([self.spec16.mult, self.spec16.shift]).astype(np.int64)}

    @staticmethod
    def from_attrs(attrs: Mapping[str, Any], device: torch.device) -> QnnConv16Requant:
        real = np.asarray(attrs["real"], dtype=np.float64)
        mult, shift = np.asarray(attrs["consts"], dtype=np.int64)
        return QnnConv16Requant(real, Conv16Spec(mult, shift, int(attrs["zo"]), str(attrs["arch"])), device)

    def reference(self, acc: np.ndarray) -> np.ndarray:
        raise TypeError("QnnConv16Requant takes the bytes' plane sums: use planes_np")

    def fast(self, off: np.ndarray, terms: Sequence[Term], first_dtype: torch.dtype = torch.int32
             ) -> Callable[..., torch.Tensor]:
        raise TypeError("QnnConv16Requant takes the bytes' plane sums: use planes_fast")

    def planes_np(self, th: np.ndarray, tl: np.ndarray, w_sum: np.ndarray, bias: np.ndarray, zx: int,
                  dh: np.ndarray, dl: np.ndarray) -> np.ndarray:
        """Codes of the plane sums ``th``, ``tl`` (channels last) whose bytes' sums are ``th + dh``, ``tl + dl``
        (``w_sum``: the weights' sum over each output's taps; ``bias``: :meth:`Conv16Spec.bias`;
        :meth:`Conv16Spec.offsets`: the constants may be per channel or broadcast against the sums)."""
        return self.spec16.apply_np(th, tl, *self.spec16.offsets(w_sum, bias, zx, dh, dl))

    def planes_fast(self, w_sum: np.ndarray, bias: np.ndarray, zx: int, dh: np.ndarray, dl: np.ndarray
                    ) -> Callable[..., torch.Tensor]:
        """:meth:`planes_np` in PyTorch: ``run(th, tl)`` (integers of any dtype) -> int32 codes."""
        hoff, loff = self.spec16.offsets(w_sum, bias, zx, dh, dl)
        consts = [torch.from_numpy(np.array(v, dtype=np.int64)).to(self.device)
                  for v in (hoff, loff, self.spec16.mult, self.spec16.shift)]
        spec = self.spec16

        def run(th: torch.Tensor, tl: torch.Tensor) -> torch.Tensor:
            return spec.apply_t(th, tl, *consts)

        return run
