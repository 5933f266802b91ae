"""The htp fast path's native helpers: the requantization epilogue in C, and int8 convolutions with it
fused (the C sources live in :mod:`openqnn.backends.native`, which builds one library for every backend;
this module types, checks and wraps htp's functions).

The htp fast path is PyTorch ops; its requantization is several memory-bound passes (int32 or
float32 accumulator -> float64 -> floor -> clamp -> uint8) and dominated the latency of small
convolutions. ``requant.c`` does the same arithmetic (see requant.py's ``Requant``: one floor of
an affine function whose every value is an exact dyadic fraction) in one vectorized pass.

A quick self-check against Python's arithmetic guards the first use. ``OPENQNN_MAX_ISA=avx2`` (or
``baseline``) builds the library for less than this CPU has, to test those paths. Without a compiler, or
with ``OPENQNN_HTP_NATIVE=0`` (htp only) or ``OPENQNN_NATIVE=0`` (every backend), the PyTorch form runs (the
same bits, slower). :func:`library` returns the loaded library or None.

``int8.c`` holds two int8 convolutions (:class:`Int8Gemm`, a 1x1 convolution, fully connected layer
or im2col convolution, and :class:`Int8Depthwise`): exact int32 accumulators of uint8 codes times
int8 weights, each block requantized by ``requant.c``'s epilogue while still in cache; built for
AVX-512 VNNI (vpdpbusd) or, without it, for AVX2 (vpmaddwd on operands widened to int16).
:func:`int8_available` says whether this build has them, :func:`int8_isa` which.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from openqnn.backends import native as shared
from openqnn.backends.native import c_compiler, cache_dir, sync_threads
from openqnn.backends.plan import borrow

log = logging.getLogger("openqnn.htp")

__all__ = ["Im2col", "Int8Depthwise", "Int8Gemm", "MaxPool2d", "NativeRequant", "c_compiler", "cache_dir", "int8_available",
           "int8_gemm_pack", "int8_isa", "library", "lookup", "lookup_ok", "lookup_or", "nchw3_to_nhwc", "qnn_int_form", "quantize", "sum_mid", "sync_threads"]

_P = ctypes.c_void_p
_L = ctypes.c_long
_ARGTYPES = [_P, _L, _L, _L, _P, _P, _P, _P, _P, _P, _P, _P, _P, ctypes.c_double, _P]


def _self_check(lib: ctypes.CDLL) -> bool:
    """One row through every input kind against Python's arithmetic (a miscompile must not pass)."""
    xs = [-5.0, -1.0, 0.0, 3.0, 1000.0, 70000.0, -70000.0, 12345.0]
    ch = len(xs)
    cst = torch.full((ch,), 0.25, dtype=torch.float64)
    mul = torch.full((ch,), 0.0078125, dtype=torch.float64)
    madd = torch.full((ch,), 7, dtype=torch.int32)
    want = [min(max(math.floor(0.25 + v * 0.0078125) + 7, 0), 255) for v in xs]
    for name, dtype in (("f32", torch.float32), ("f64", torch.float64), ("i32", torch.int32)):
        x = torch.tensor(xs, dtype=dtype)
        out = torch.empty(ch, dtype=torch.uint8)
        fn = getattr(lib, f"rq_{name}_u8_n_n")
        fn.argtypes, fn.restype = _ARGTYPES, None
        fn(x.data_ptr(), 1, ch, ch, cst.data_ptr(), mul.data_ptr(), None, None, None, madd.data_ptr(),
           None, None, None, 255.0, out.data_ptr())
        if out.tolist() != want:
            return False
    x = torch.arange(256, dtype=torch.uint8)
    table = torch.arange(65536, dtype=torch.int64).mul(7).remainder(251).to(torch.uint8)
    y = x.flip(0).contiguous()
    if not torch.equal(lookup(table, x, y, lib), table[x.long() * 256 + y.long()]):
        return False
    if not torch.equal(lookup(table[:256].contiguous(), y, None, lib), table[y.long()]):
        return False
    xf = torch.tensor([-3.0, -0.5, 0.5, 1.5, 2.5, 7.25, 300.0, 1e9], dtype=torch.float32)
    codes = torch.clamp(torch.round(xf.to(torch.float64) / 0.5) + 3, 0, 255).to(torch.uint8)
    return torch.equal(quantize(xf, 0.5, -3, 0, 255, torch.uint8, lib), codes)


@contextlib.contextmanager
def threads_to_the_pool() -> Iterator[None]:
    """While htp's fast path runs on the CPU: the C pool gets PyTorch's intra-op thread count
    (:func:`sync_threads`) and, where the native int8 kernels are built, PyTorch runs its own few ops (copies,
    reshapes) on one thread. Its OpenMP workers spin-wait after every parallel region, and on a machine with
    few cores they then take the cores the C kernels' threads need (ResNet-18 htp on 2 cores of the
    development VM: 11.3 ms with 2 threads each, 7.5 ms this way; 1 thread: 11.6 ms). The bits do not depend
    on either count; the count is put back afterwards."""
    n = torch.get_num_threads()
    sync_threads(n)
    if n <= 1 or library() is None or not int8_available():
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _setup(lib: ctypes.CDLL) -> bool:
    lib.lut1_u8.argtypes, lib.lut1_u8.restype = [_P, _L, _P, _P], None
    lib.lut2_u8.argtypes, lib.lut2_u8.restype = [_P, _P, _L, _P, _P], None
    lib.sum_mid_u8.argtypes, lib.sum_mid_u8.restype = [_P, _L, _L, _L, _P], None
    lib.maxpool2d_u8.argtypes, lib.maxpool2d_u8.restype = [_P, _P, ctypes.c_uint8, _P], None
    lib.openqnn_int8_isa.argtypes, lib.openqnn_int8_isa.restype = [], ctypes.c_int
    return _self_check(lib)


_FUNCTIONS = shared.Functions("htp", "OPENQNN_HTP_NATIVE", _setup)


def library() -> ctypes.CDLL | None:
    """The native library (:func:`openqnn.backends.native.library`) with htp's functions typed and
    checked, once; None when it is not built, ``OPENQNN_HTP_NATIVE=0``, or the check fails (the PyTorch
    forms run then: the same bits)."""
    return _FUNCTIONS.get()


Const = torch.Tensor | np.ndarray
_TORCH_DTYPES = {np.dtype(np.float64): torch.float64, np.dtype(np.float32): torch.float32,
                 np.dtype(np.int32): torch.int32}
_IN = {torch.float32: "f32", torch.float64: "f64", torch.int32: "i32"}
_OUT = {torch.uint8: "u8", torch.int32: "i32"}


class RqPlan(ctypes.Structure):
    """int8.c's ``rq_plan``: an epilogue function and its constants."""

    _fields_ = [("fn", _P), ("cst", _P), ("mul", _P), ("k0", _P), ("sc", _P), ("nd", _P), ("madd", _P),
                ("shift", _P), ("lo", _P), ("hi", _P), ("qmax", ctypes.c_double), ("ch", _L), ("k", _L),
                ("out_size", _L), ("mode", _L)]


class NativeRequant:
    """One requantization's constants for the C kernel (see requant.c); ``run(x, out)`` on rows of
    ``x`` (channels last, rows contiguous, stride ``x.stride(-2)``) into ``out`` (contiguous)."""

    def __init__(self, lib: ctypes.CDLL, in_dtype: torch.dtype, out_dtype: torch.dtype, qmax: int,
                 cst: Const, mul: Const, madd: Const, folded: bool, dyn: tuple[Const, Const, Const] | None,
                 window: tuple[Const, Const, Const] | None, xthr: Const | None = None, eps: float | None = None,
                 qnn: bool = False):
        """``xthr``: where given (int32 per channel), int32 (or float32 holding integers below 2^24)
        -> uint8 runs a hand-vectorized kernel (AVX-512) whose sign correction compares the input
        with it: ``rqf_*`` where ``eps`` bounds the error of its float32 estimate (requant.c), else
        ``rqv_*`` (float64). ``qnn``: QNN's HTP requantization (``rqq_*``: ``floor(k0 + floor(cst + x *
        mul) * sc) + madd``, with ``dyn`` = (k0, sc, unused); its int32 form: :meth:`qnn_int`). The constants are
        per-channel CPU tensors or numpy arrays (float64, or int32 for ``madd``, ``xthr`` and the window)."""
        vector = (in_dtype in (torch.int32, torch.float32) and out_dtype == torch.uint8 and qmax == 255
                  and (dyn is None or xthr is not None) and bool(lib.openqnn_rqv_available())) and not qnn
        kind = ("f" if eps is not None else "v") if vector else ""
        name = f"rq{kind}_{_IN[in_dtype]}_{_OUT[out_dtype]}_{'d' if dyn else 'n'}_{'f' if folded else 'n'}"
        if qnn:  # QNN's two-floor form (requant.c's rqq_*): its second affine step rides in dyn's (k0, sc)
            assert dyn is not None and window is None and not folded
            name = f"rqq_{_IN[in_dtype]}_{_OUT[out_dtype]}"
        if window is not None:
            assert in_dtype in (torch.int32, torch.float32)
            name += "_w"
        if vector and dyn is not None:
            assert xthr is not None
            dyn = (xthr, dyn[1], dyn[2])  # the threshold goes in k0's place (requant.c)
        fn = _typed(lib, name)
        self.fn, self.in_dtype, self.out_dtype = fn, in_dtype, out_dtype
        # the float32 estimate without a window: the GEMM may requantize in registers (int8.c)
        self.mode = (1 | (2 if dyn is not None else 0) | (4 if folded else 0)) if kind == "f" and window is None else 0
        ch = cst.numel() if isinstance(cst, torch.Tensor) else cst.size
        # the kernel vectorizes along a row: consecutive rows of few channels are taken k at a time
        # as one row of k * ch (a multiple of 64 elements) with the constants repeated k times
        k = _tiling(ch)
        self.channels, self.k = ch, k
        srcs = [t.numpy() if isinstance(t, torch.Tensor) else t
                for t in (cst, mul, madd, *(dyn or ()), *(window or ()))]
        # tiled k times, the constants of one dtype as the rows of one block in PyTorch's 64-byte aligned memory,
        # which the vector loads run best from (every row, k * ch: a multiple of 64, stays aligned); filled through
        # a numpy view, as this runs at every bind
        rows: list[torch.Tensor] = []
        self.keep: list[torch.Tensor] = []  # the pointers below stay valid while these live
        by_dtype: dict[np.dtype, list[int]] = {}
        for i, a in enumerate(srcs):
            by_dtype.setdefault(a.dtype, []).append(i)
        slots: dict[int, torch.Tensor] = {}
        for dt, idx in by_dtype.items():
            block = torch.empty((len(idx), k * ch), dtype=_TORCH_DTYPES[dt])
            view = block.numpy().reshape(len(idx), k, ch)
            for r, i in enumerate(idx):
                view[r] = srcs[i]
                slots[i] = block[r]
            self.keep.append(block)
        rows = [slots[i] for i in range(len(srcs))]
        tiled = iter(rows)
        cst_t, mul_t, madd_t = next(tiled), next(tiled), next(tiled)
        k0, sc, nd = (next(tiled), next(tiled), next(tiled)) if dyn is not None else (None, None, None)
        shift, lo, hi = (next(tiled), next(tiled), next(tiled)) if window is not None else (None, None, None)
        qarg = float(qmax)
        if kind == "f":  # float32 copies per 16 channels of the tiled row: [16 cst][16 mul][16 nd]
            assert eps is not None
            blocks = (ch * k + 15) // 16
            aux_np = np.zeros((3, blocks * 16), dtype=np.float32)
            for row, t in zip(aux_np, (cst_t, mul_t, nd)):
                if t is not None:
                    row[:ch * k] = t.numpy()
            aux = torch.from_numpy(np.ascontiguousarray(aux_np.reshape(3, blocks, 16).transpose(1, 0, 2))).clone()
            self.keep.append(aux)
            sc, qarg = aux, eps  # the kernel reads aux in sc's slot and eps in qmax's
        ptr = lambda t: None if t is None else t.data_ptr()  # noqa: E731
        self.consts = (ptr(cst_t), ptr(mul_t), ptr(k0), ptr(sc), ptr(nd), ptr(madd_t), ptr(shift), ptr(lo), ptr(hi),
                       qarg)

    @classmethod
    def qnn_int(cls, lib: ctypes.CDLL, in_dtype: torch.dtype, qmax: int, ints: np.ndarray) -> NativeRequant:
        """QNN's requantization in int32 (requant.c's ``rqi_*``) from :func:`qnn_int_form`'s proven rows: the
        constructor's ``ints`` case, with the rows tiled into one block in one numpy assignment (this runs for
        every requantizing step when a context is opened)."""
        if in_dtype not in (torch.int32, torch.float32):
            raise ValueError(f"the int32 QNN requantization takes int32 or float32 input, not {in_dtype}")
        self = cls.__new__(cls)
        ch = ints.shape[1]
        k = _tiling(ch)
        block = torch.empty((7, k * ch), dtype=torch.int32)  # rows: lo, hi, base, s, m, c, d (k times each)
        block.numpy().reshape(7, k, ch)[:] = ints[:, None, :]
        at, row = block.data_ptr(), 4 * k * ch
        lo, hi, base, s, m, c, d = (at + i * row for i in range(7))
        self.fn, self.in_dtype, self.out_dtype = _typed(lib, f"rqi_{_IN[in_dtype]}_u8"), in_dtype, torch.uint8
        self.mode = 8 if in_dtype == torch.int32 and qmax == 255 else 0  # 8: int8.c's kernels requantize in registers
        self.channels, self.k, self.keep = ch, k, [block]
        # in the slots of rq_plan (cst, mul, k0, sc, nd, madd, shift, lo, hi) where requant.c's rqi_* reads them
        self.consts = (lo, lo, base, c, d, m, s, lo, hi, float(qmax))
        return self

    def plan(self) -> RqPlan:
        """This requantization as int8.c's ``rq_plan`` (the fused kernels call its epilogue)."""
        cst, mul, k0, sc, nd, madd, shift, lo, hi, qmax = self.consts
        return RqPlan(ctypes.cast(self.fn, _P).value, cst, mul, k0, sc, nd, madd, shift, lo, hi, qmax,
                      self.channels, self.k, self.out_dtype.itemsize, self.mode)

    def accepts(self, x: torch.Tensor) -> bool:
        """Whether ``x`` is a CPU tensor of this input type with contiguous rows of the channels."""
        if x.dtype != self.in_dtype or x.device.type != "cpu" or x.dim() < 1 or x.shape[-1] != self.channels:
            return False
        return x.is_contiguous() or (x.dim() == 2 and x.stride(1) == 1)

    def run(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Requantize ``x`` (accepted by :meth:`accepts`) into ``out`` (contiguous, x's shape) or a new tensor."""
        ch, k = self.channels, self.k
        x2 = x.reshape(-1, ch)
        rows = x2.shape[0]
        if out is None:
            out = torch.empty(x.shape, dtype=self.out_dtype)
        stride = x2.stride(0) if rows > 1 else ch
        size = out.element_size()
        if stride == ch and k > 1:  # rows back to back: k rows at a time, then the rest
            big = rows // k
            if big:
                self.fn(x2.data_ptr(), big, ch * k, ch * k, *self.consts, out.data_ptr())
            if rows - big * k:
                self.fn(x2.data_ptr() + big * k * ch * x2.element_size(), rows - big * k, ch, ch, *self.consts,
                        out.data_ptr() + big * k * ch * size)
        elif rows:
            self.fn(x2.data_ptr(), rows, ch, stride, *self.consts, out.data_ptr())
        return out


_I32_MIN, _I32_MAX = -(1 << 31), (1 << 31) - 1


def _tiling(ch: int) -> int:
    """How many rows of ``ch`` channels the requantization takes as one row (a multiple of 64 elements, 256
    or more): the constants are repeated that many times."""
    k = 64 // math.gcd(ch, 64) if ch else 1
    while k * ch < 256 and ch:
        k *= 2
    return k


def _pow2_exponent(v: np.ndarray) -> np.ndarray:
    """Per element of a float64 array: the least D >= 0 with v * 2^D an integer."""
    mant, e = np.frexp(v)
    n = np.ldexp(mant, 53).astype(np.int64)  # the 53-bit significand (0 for v = 0)
    low = n & -n  # its lowest set bit
    tz = np.where(n == 0, 53, np.log2(np.where(low == 0, 1, low).astype(np.float64)).astype(np.int64))
    return np.where(n == 0, 0, np.maximum(53 - tz - e, 0))


def qnn_int_form(cst: Const, mul: Const, k0: Const, sc: Const, madd: Const, qmax: int) -> np.ndarray | None:
    """requant.c's ``rqi_*`` constants for ``rqq_*``'s (``clamp(floor(k0 + floor(cst + x * mul) * sc) + madd,
    0, qmax)``), as the int32 rows (lo, hi, base, s, m, c, d) of one array, or None where the int32 form is not proven to give
    the same bits for every int32 ``x``: ``mul = 2^-s`` and ``cst = base * 2^-s`` (a coefficient of 1),
    ``sc = m * 2^-d``, ``k0 + madd = c * 2^-d``, all integers; and with ``x`` clamped to the window [lo, hi]
    beyond which the output is 0 or qmax (the form is monotone in x), every intermediate within int32."""
    f64 = lambda t: np.asarray(t.numpy() if isinstance(t, torch.Tensor) else t, dtype=np.float64)  # noqa: E731
    cst_, mul_, k0_, sc_ = f64(cst), f64(mul), f64(k0), f64(sc)
    post = np.asarray(madd.numpy() if isinstance(madd, torch.Tensor) else madd, dtype=np.int64)
    if cst_.size == 0 or not (np.isfinite(cst_).all() and np.isfinite(k0_).all()) or (sc_ <= 0).any():
        return None
    mant, e = np.frexp(mul_)
    s = 1 - e
    if (mant != 0.5).any() or s.min() < 0 or s.max() > 30:  # mul a power of two at most 1
        return None
    base_f = np.ldexp(cst_, s)
    d = np.maximum(_pow2_exponent(sc_), _pow2_exponent(k0_))
    if np.abs(base_f).max() >= 2.0**52 or (base_f != np.floor(base_f)).any() or d.max() > 30:
        return None
    m_f, c_f = np.ldexp(sc_, d), np.ldexp(k0_, d)
    if m_f.max() >= 2.0**31 or np.abs(c_f).max() >= 2.0**52:
        return None
    base, m = base_f.astype(np.int64), m_f.astype(np.int64)
    c = c_f.astype(np.int64) + (post << d)
    one = np.int64(1)
    # y1 at or below y_lo: output 0; at or above y_hi: qmax (floor divisions of int64)
    y_lo = ((one << d) - 1 - c) // m
    y_hi = -((c - int(qmax) * (one << d)) // m)
    if np.abs(y_lo).max() >= 2**31 or np.abs(y_hi).max() >= 2**31:
        return None
    x_lo = np.maximum((y_lo << s) - base, _I32_MIN)
    x_hi = np.minimum((y_hi << s) - base, _I32_MAX)
    if (x_lo > x_hi).any():
        return None
    ends = [(x_lo + base) >> s, (x_hi + base) >> s]
    every = np.stack([x_lo + base, x_hi + base, c, *(y * m for y in ends), *(y * m + c for y in ends)])
    if every.min() < _I32_MIN or every.max() > _I32_MAX:
        return None
    wrapped = ((base + (1 << 31)) % (1 << 32) - (1 << 31))  # base modulo 2^32 (the sums wrap back into range)
    return np.stack([x_lo, x_hi, wrapped, s, m, c, d]).astype(np.int32)


def _typed(lib: ctypes.CDLL, name: str) -> Any:
    """``lib``'s requantization ``name`` with its argument types set (once per function)."""
    fn = getattr(lib, name)
    if fn.restype is not None:
        fn.argtypes, fn.restype = _ARGTYPES, None
    return fn


def lookup(table: torch.Tensor, x: torch.Tensor, y: torch.Tensor | None = None,
           lib: ctypes.CDLL | None = None) -> torch.Tensor:
    """``table[x]`` (256 entries) or ``table[x * 256 + y]`` (65536 entries) for contiguous uint8 CPU
    tensors of one shape, in C; the caller checks the types (see :func:`lookup_ok`)."""
    lib = lib or _FUNCTIONS.lib
    assert lib is not None
    out = torch.empty(x.shape, dtype=torch.uint8)
    if y is None:
        lib.lut1_u8(x.data_ptr(), x.numel(), table.data_ptr(), out.data_ptr())
    else:
        lib.lut2_u8(x.data_ptr(), y.data_ptr(), x.numel(), table.data_ptr(), out.data_ptr())
    return out


def sum_mid(x: torch.Tensor, a: int, p: int, c: int, out: torch.Tensor) -> torch.Tensor:
    """Sums over the middle axis of a contiguous uint8 CPU tensor viewed as [a, p, c], into ``out``
    (int32, a * c elements; the caller checks that p * 255 fits int32), in C."""
    lib = _FUNCTIONS.lib
    assert lib is not None and x.dtype == torch.uint8 and x.is_contiguous() and x.numel() == a * p * c
    assert out.dtype == torch.int32 and out.is_contiguous() and out.numel() == a * c
    lib.sum_mid_u8(x.data_ptr(), a, p, c, out.data_ptr())
    return out


class MaxPool2d:
    """Max pooling of contiguous uint8 CPU codes, channels last, in C: ``geo`` = (n, h, w, c, kh, kw,
    sh, sw, dh, dw, pad top, pad left, oh, ow); taps outside the input are never chosen, a window
    entirely outside gives ``low``."""

    def __init__(self, geo: Sequence[int], low: int):
        lib = _FUNCTIONS.lib
        assert lib is not None and len(geo) == 14
        self.geo = (ctypes.c_long * 14)(*geo)
        self.in_shape = torch.Size(geo[:4])
        self.low = low
        self.fn = lib.maxpool2d_u8

    def accepts(self, x: torch.Tensor) -> bool:
        return _u8_codes(x) and x.shape == self.in_shape

    def run(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``x`` (accepted by :meth:`accepts`) into ``out`` (contiguous uint8, [n, oh, ow, c])."""
        self.fn(x.data_ptr(), self.geo, self.low, out.data_ptr())
        return out


def _u8_codes(x: torch.Tensor) -> bool:
    """Whether ``x`` is a contiguous uint8 CPU tensor, as the C helpers read codes (a few attribute
    reads: this runs once per step and run)."""
    return x.dtype is torch.uint8 and x.is_cpu and x.is_contiguous()


def _codes_ok(xs: Sequence[torch.Tensor]) -> bool:
    """Whether these are contiguous uint8 CPU tensors of one shape."""
    return all(_u8_codes(x) and x.shape == xs[0].shape for x in xs)


def lookup_ok(table: torch.Tensor, *xs: torch.Tensor) -> bool:
    """Whether :func:`lookup` takes these operands: uint8 CPU tensors of one shape, contiguous."""
    return table.dtype == torch.uint8 and table.is_contiguous() and table.device.type == "cpu" and _codes_ok(xs)


def quantize(x: torch.Tensor, scale: float, offset: int, qmin: int, qmax: int, dtype: torch.dtype,
             lib: ctypes.CDLL | None = None) -> torch.Tensor:
    """``clamp(round_half_even(x / scale) - offset, qmin, qmax)`` of a contiguous float32 CPU tensor,
    as ``dtype`` (uint8 or int32), in C: the same as the executable's quantize_t in float64."""
    lib = lib or _FUNCTIONS.lib
    assert lib is not None and x.dtype == torch.float32 and x.is_contiguous()
    out = torch.empty(x.shape, dtype=dtype)
    fn = lib.quantize_f32_u8 if dtype == torch.uint8 else lib.quantize_f32_i32
    d = ctypes.c_double
    fn(_P(x.data_ptr()), _L(x.numel()), d(scale), d(offset), d(qmin), d(qmax), _P(out.data_ptr()))
    return out


def lookup_or(table: torch.Tensor, fallback: Callable[..., torch.Tensor], out_shape: Sequence[int],
              output: Callable[[], torch.Tensor] | None = None) -> Callable[..., torch.Tensor]:
    """A step's table lookup: the C one for contiguous uint8 CPU operands of the output's size (one
    operand for a 256-entry uint8 table, two of one shape for 65536 entries), ``fallback`` (the
    PyTorch gather) for anything else or where the library is not built. ``output()``: the tensor
    to write (the step's reused output buffer), a new one where not given. The two arities are two
    small closures: this runs once per element-wise step and run, so it is kept short."""
    operands = {256: 1, 65536: 2}.get(table.numel())
    if library() is None or operands is None or table.dtype != torch.uint8 or table.device.type != "cpu":
        return fallback
    shape = torch.Size(out_shape)
    lib = library()
    assert lib is not None
    numel = math.prod(shape)
    tbl = table.contiguous()
    ptr = tbl.data_ptr()
    new = output or (lambda: torch.empty(shape, dtype=torch.uint8))

    def ok(x: torch.Tensor) -> bool:
        return _u8_codes(x) and x.numel() == numel

    if operands == 1:
        lut1 = lib.lut1_u8

        def run1(*xs: torch.Tensor) -> torch.Tensor:
            if len(xs) == 1 and ok(xs[0]):
                out = new()
                lut1(xs[0].data_ptr(), numel, ptr, out.data_ptr())
                return out
            return fallback(*xs)

        return run1
    lut2 = lib.lut2_u8

    def run2(*xs: torch.Tensor) -> torch.Tensor:
        if len(xs) == 2 and ok(xs[0]) and ok(xs[1]) and xs[0].shape == xs[1].shape:
            out = new()
            lut2(xs[0].data_ptr(), xs[1].data_ptr(), numel, ptr, out.data_ptr())
            return out
        return fallback(*xs)

    return run2


# -- int8 convolutions with the requantization fused (int8.c) ----------------------------------------

_INT8: bool | None = None
IDENTITY_OFFSET = 1 << 29


def int8_available() -> bool:
    """Whether the library is built with int8.c's kernels (AVX-512 VNNI or AVX2) and they pass a self-check."""
    global _INT8
    lib = library()
    if lib is None:
        return False
    if _INT8 is None:
        _INT8 = bool(lib.openqnn_int8_available() and _int8_self_check(lib))
    return _INT8


_INT8_ISAS = {1: "avx2", 2: "avx512-vnni", 3: "avx-vnni", 4: "neon-dotprod"}


def int8_isa() -> str | None:
    """The instruction set int8.c's kernels are built for here: ``"avx512-vnni"`` (vpdpbusd, in-register
    requantization), ``"avx-vnni"`` (AVX2 with 256-bit vpdpbusd in the GEMM, the epilogue pass), ``"avx2"``
    (vpmaddwd on int16-widened operands, the epilogue pass), ``"neon-dotprod"`` (aarch64: sdot on codes made
    signed, the epilogue pass), or None
    (:func:`int8_available` is false). The bits are the same; the speed and the weights' packing differ."""
    lib = library()
    if lib is None or not int8_available():
        return None
    return _INT8_ISAS.get(int(lib.openqnn_int8_isa()))


def _identity_rq(lib: ctypes.CDLL, ch: int) -> NativeRequant:
    """A requantization returning acc + IDENTITY_OFFSET as int32 (exact for |acc| < 2^29)."""
    zeros, ones = torch.zeros(ch, dtype=torch.float64), torch.ones(ch, dtype=torch.float64)
    return NativeRequant(lib, torch.int32, torch.int32, 2 * IDENTITY_OFFSET - 1, zeros, ones,
                         torch.full((ch,), IDENTITY_OFFSET, dtype=torch.int32), False, None, None)


def _int8_self_check(lib: ctypes.CDLL) -> bool:
    """Both kernels on extreme codes (every pair of products overflows int16) against int64 sums."""
    g = torch.Generator().manual_seed(0)
    for m, k, n in ((7, 37, 19), (13, 64, 70)):
        a = torch.randint(0, 256, (m, k), dtype=torch.int64, generator=g)
        a[0] = 255
        w = torch.randint(-128, 128, (k, n), dtype=torch.int64, generator=g)
        w[:, 0] = -128
        init = torch.randint(-1000, 1000, (n,), dtype=torch.int32, generator=g)
        gemm = Int8Gemm(lib, w.to(torch.int8), init, _identity_rq(lib, n))
        got = gemm.run(a.to(torch.uint8), torch.empty((m, n), dtype=torch.int32))
        if not torch.equal(got.to(torch.int64) - IDENTITY_OFFSET, a @ w + init.to(torch.int64)):
            return False
    n_, h, w_, c, kh, kw = 1, 5, 6, 70, 3, 3
    x = torch.randint(0, 256, (n_, h, w_, c), dtype=torch.int64, generator=g)
    x[0, 1] = 255
    wt = torch.randint(-128, 128, (kh, kw, c), dtype=torch.int64, generator=g)
    zx = 7
    geo = (n_, h, w_, c, kh, kw, 2, 1, 1, 1, 1, 0, 3, 4, zx)
    init = torch.zeros(c, dtype=torch.int32)
    dw = Int8Depthwise(lib, wt.to(torch.int8), init, _identity_rq(lib, c), geo)
    got = dw.run(x.to(torch.uint8), torch.empty((n_, 3, 4, c), dtype=torch.int32)).to(torch.int64) - IDENTITY_OFFSET
    xp = torch.nn.functional.pad(x.permute(0, 3, 1, 2).to(torch.float64), (0, 0, 1, 1), value=float(zx))
    want = torch.nn.functional.conv2d(xp, wt.permute(2, 0, 1).unsqueeze(1).to(torch.float64), stride=(2, 1), groups=c)
    return torch.equal(got, want.permute(0, 2, 3, 1).to(torch.int64))


class _Geo(ctypes.Structure):
    _fields_ = [(f, _L) for f in ("n", "h", "w", "c", "kh", "kw", "sh", "sw", "dh", "dw", "pt", "pl", "oh", "ow")] + [
        ("zx", ctypes.c_int32)]


class Int8Gemm:
    """``out = requant(init + a @ w)``: ``a`` [m, k] uint8 codes (rows contiguous), ``w`` [k, n] int8
    weights, ``init`` [n] int32 (the accumulator's offset; its final value must fit int32), ``rq`` a
    requantization of int32 accumulators (its epilogue runs on each block of rows in cache)."""

    def __init__(self, lib: ctypes.CDLL, w: torch.Tensor | np.ndarray, init: torch.Tensor, rq: NativeRequant,
                 packed: np.ndarray | None = None):
        """``w``: a tensor, or a numpy array (a plan's, read-only: only read here, while packing). ``packed``: ``w``
        as :func:`int8_gemm_pack` packed it on a machine of this one's int8 kernels (a plan's): taken as it is."""
        assert w.dtype in (torch.int8, np.int8) and w.ndim == 2 and rq.in_dtype == torch.int32
        self.k, self.n = int(w.shape[0]), int(w.shape[1])
        assert rq.channels == self.n and init.numel() == self.n
        if packed is not None:
            if packed.dtype != np.int8 or packed.shape != (lib.gemm_pack_size(_L(self.k), _L(self.n)),):
                raise ValueError(f"packed int8 weights of {packed.shape} {packed.dtype} for a [{self.k}, {self.n}] GEMM")
            self.packed = borrow(packed)
        else:
            self.packed = _gemm_pack(lib, w if isinstance(w, np.ndarray) else w.contiguous().numpy())
        self.init = init.to(torch.int32).contiguous()
        self.rq, self.plan = rq, rq.plan()
        self.out_dtype = rq.out_dtype
        self.fn = lib.gemm_u8s8
        if self.fn.argtypes is None:  # (once: ctypes keeps one function object per name)
            self.fn.argtypes, self.fn.restype = [_P, _L, _L, _L, _P, _L, _P, ctypes.POINTER(RqPlan), _P], ctypes.c_int
        self.args = (self.packed.data_ptr(), self.n, self.init.data_ptr(), ctypes.byref(self.plan))

    def run(self, a: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``a`` [..., k] (contiguous uint8 CPU codes) -> [..., n] outputs (into ``out`` when given)."""
        m = a.numel() // self.k if self.k else 0
        if out is None:
            out = torch.empty((*a.shape[:-1], self.n), dtype=self.out_dtype)
        packed, n, init, plan = self.args
        if m and self.fn(a.data_ptr(), m, self.k, self.k, packed, n, init, plan, out.data_ptr()) != 0:
            raise MemoryError("htp int8 GEMM: out of memory")
        return out


def int8_gemm_pack(w: np.ndarray) -> np.ndarray:
    """Int8 weights ``w`` [k, n] packed as this machine's int8.c GEMM reads them (:func:`int8_isa` names the
    packing): what :class:`Int8Gemm` takes as ``packed``."""
    lib = library()
    assert lib is not None
    return _gemm_pack(lib, w).numpy()


def _gemm_pack(lib: ctypes.CDLL, w: np.ndarray) -> torch.Tensor:
    """``w`` [k, n] (int8) packed by int8.c's ``gemm_pack`` into a new tensor (64-byte aligned, as the kernels read it)."""
    assert w.ndim == 2
    k, n = w.shape
    wc = np.ascontiguousarray(w, dtype=np.int8)
    out = torch.empty(lib.gemm_pack_size(_L(k), _L(n)), dtype=torch.int8)
    lib.gemm_pack(_P(wc.ctypes.data), _L(k), _L(n), _P(out.data_ptr()))
    return out


class Int8Depthwise:
    """A depthwise convolution (one weight per channel and tap, channels last) requantized in C:
    ``w`` [kh, kw, c] int8, ``init`` [c] int32, ``geo`` = (n, h, w, c, kh, kw, sh, sw, dh, dw, pad top,
    pad left, oh, ow, zx); taps outside the input read the zero point ``zx``."""

    def __init__(self, lib: ctypes.CDLL, w: torch.Tensor, init: torch.Tensor, rq: NativeRequant,
                 geo: Sequence[int]):
        assert w.dtype == torch.int8 and w.dim() == 3 and rq.in_dtype == torch.int32
        kh, kw, c = w.shape
        self.geo = _Geo(*geo)
        assert (self.geo.kh, self.geo.kw, self.geo.c) == (kh, kw, c) and rq.channels == c == init.numel()
        wc = w.contiguous()
        self.packed = torch.empty(lib.dw_pack_size(_L(kh), _L(kw), _L(c)), dtype=torch.int8)
        lib.dw_pack(_P(wc.data_ptr()), _L(kh), _L(kw), _L(c), _P(self.packed.data_ptr()))
        self.init = init.to(torch.int32).contiguous()
        self.rq, self.plan = rq, rq.plan()
        self.out_shape = (self.geo.n, self.geo.oh, self.geo.ow, c)
        self.out_dtype = rq.out_dtype
        self.fn = lib.dwconv_u8s8
        if self.fn.argtypes is None:  # (once: ctypes keeps one function object per name)
            self.fn.argtypes, self.fn.restype = [_P, ctypes.POINTER(_Geo), _P, _P, ctypes.POINTER(RqPlan), _P], ctypes.c_int
        self.args = (ctypes.byref(self.geo), self.packed.data_ptr(), self.init.data_ptr(), ctypes.byref(self.plan))

    def run(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (contiguous uint8 CPU codes of the geometry's input shape) -> outputs (into ``out``)."""
        if out is None:
            out = torch.empty(self.out_shape, dtype=self.out_dtype)
        geo, packed, init, plan = self.args
        if out.numel() and self.fn(x.data_ptr(), geo, packed, init, plan, out.data_ptr()) != 0:
            raise MemoryError("htp int8 depthwise convolution: out of memory")
        return out


class Im2col:
    """The im2col rows of contiguous uint8 CPU codes, channels last, in C (int8.c): ``geo`` = (n, h, w, c, kh,
    kw, sh, sw, dh, dw, pad top, pad left, oh, ow); ``run(x, out)`` writes ``out`` [n * oh * ow, kh * kw * c]
    (contiguous uint8), taps outside the input holding the zero point ``zx``."""

    def __init__(self, geo: Sequence[int], zx: int):
        lib = library()
        assert lib is not None and len(geo) == 14
        self.geo = (ctypes.c_long * 14)(*geo)
        self.in_shape = torch.Size(geo[:4])
        self.zx = zx
        self.fn = lib.im2col_u8
        self.fn.argtypes, self.fn.restype = [_P, _P, ctypes.c_int, _P], None

    def accepts(self, x: torch.Tensor) -> bool:
        return _u8_codes(x) and x.shape == self.in_shape

    def run(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        self.fn(x.data_ptr(), self.geo, self.zx, out.data_ptr())
        return out


def nchw3_to_nhwc(x: torch.Tensor) -> torch.Tensor:
    """A contiguous uint8 [n, 3, h, w] CPU tensor as [n, h, w, 3] (int8.c; needs :func:`int8_available`)."""
    lib = library()
    assert lib is not None and x.dtype == torch.uint8 and x.is_contiguous() and x.dim() == 4 and x.shape[1] == 3
    n, _, h, w = x.shape
    out = torch.empty((n, h, w, 3), dtype=torch.uint8)
    lib.nchw3_to_nhwc_u8(_P(x.data_ptr()), _L(n), _L(h * w), _P(out.data_ptr()))
    return out
