"""The cpu backend's native float32 kernels (``float.c`` of :mod:`openqnn.backends.native`).

Two kernels, channels last, each with its epilogue (a residual add, a clamp) fused:

- :class:`Gemm`: rows times weights packed once, plus the bias: FullyConnected, unpadded 1x1
  convolutions, and the stacked query / key / value projections;
- :class:`Depthwise`: a depthwise convolution of any window, stride, dilation and zero padding; the 3x3
  window keeps its nine weight vectors in registers.

Both are AVX-512 or AVX2 + FMA builds where the CPU has them (``OPENQNN_MAX_ISA`` caps it) and portable C
vector code elsewhere; they split their output over :mod:`openqnn.backends.native`'s thread pool, and
every output is one sum in a fixed order, so the thread count changes nothing. At batch 1 they beat
oneDNN's NHWC kernels behind PyTorch on the shapes of MobileNetV2 and small encoders (the depthwise
convolution 1.5-3x, the GEMM 10-30% on rows of 64); the plan falls back to oneDNN where they are not
built, fail their self-check, or ``OPENQNN_CPU_NATIVE=0``.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from openqnn.backends import native as shared

__all__ = ["Attention", "Conv", "Depthwise", "Gemm", "LayerNorm", "Panels", "PointwiseDepthwise", "RowSum", "float_isa",
           "library", "pack", "panel_width"]

_P, _L, _F = ctypes.c_void_p, ctypes.c_long, ctypes.c_float
_F32 = torch.float32
_BIG = 3.0e38  # a clamp's open end (the kernels take finite bounds)
_ISAS = {0: "portable", 1: "avx2-fma", 2: "avx512"}


class _Geo(ctypes.Structure):
    _fields_ = [(f, _L) for f in ("n", "h", "w", "c", "kh", "kw", "sh", "sw", "dh", "dw", "pt", "pl", "oh", "ow")]


class _GemmPlan(ctypes.Structure):
    _fields_ = [("bp", _P), ("bias", _P), ("K", _L), ("N", _L), ("lo", _F), ("hi", _F), ("clamp", ctypes.c_int),
                ("act", ctypes.c_int)]


class _DwPlan(ctypes.Structure):
    _fields_ = [("g", ctypes.POINTER(_Geo)), ("w", _P), ("bias", _P), ("lo", _F), ("hi", _F), ("clamp", ctypes.c_int)]


class _PwDwPlan(ctypes.Structure):
    _fields_ = [("cin", _L), ("bp", _P), ("pw_bias", _P), ("pw_lo", _F), ("pw_hi", _F), ("pw_clamp", ctypes.c_int),
                ("g", ctypes.POINTER(_Geo)), ("dww", _P), ("dwb", _P), ("lo", _F), ("hi", _F), ("clamp", ctypes.c_int),
                ("pbp", _P), ("pbias", _P), ("pn", _L), ("plo", _F), ("phi", _F), ("pclamp", ctypes.c_int)]


class _Attn(ctypes.Structure):
    _fields_ = [*((f, _L) for f in ("B", "H", "Sq", "Sk", "D", "Dv")), *((f, _P) for f in ("q", "k", "v", "mask", "out")),
                *((f, _L * 4) for f in ("qs", "ks", "vs", "ms", "os")), ("scale", _F), ("zero_empty", ctypes.c_int),
                ("failed", ctypes.c_int)]


def _setup(lib: ctypes.CDLL) -> bool:
    lib.sgemm_pack_size.argtypes, lib.sgemm_pack_size.restype = [_L, _L], _L
    lib.sgemm_pack.argtypes, lib.sgemm_pack.restype = [_P, _L, _L, _P], None
    lib.sgemm_f32.argtypes = [_P, _L, _L, _L, _P, _L, _P, _P, _L, _P, _L, _F, _F, ctypes.c_int, ctypes.c_int]
    lib.sgemm_f32.restype = None
    lib.dw_f32.argtypes = [_P, ctypes.POINTER(_Geo), _P, _P, _P, _P, _F, _F, ctypes.c_int]
    lib.dw_f32.restype = None
    lib.conv_f32.argtypes = [_P, ctypes.POINTER(_Geo), _P, _L, _P, _P, _P, _F, _F, ctypes.c_int]
    lib.conv_f32.restype = ctypes.c_int
    lib.pwdw_f32.argtypes = [_P, _L, _P, _P, _F, _F, ctypes.c_int, ctypes.POINTER(_Geo), _P, _P, _P, _P, _F, _F,
                             ctypes.c_int, _P, _P, _L, _F, _F, ctypes.c_int]
    lib.pwdw_f32.restype = ctypes.c_int
    lib.attn_f32.argtypes, lib.attn_f32.restype = [ctypes.POINTER(_Attn)], ctypes.c_int
    lib.sgemm_run.argtypes, lib.sgemm_run.restype = [ctypes.POINTER(_GemmPlan), _P, _L, _P, _P], None
    lib.dw_run.argtypes, lib.dw_run.restype = [ctypes.POINTER(_DwPlan), _P, _P, _P], None
    lib.pwdw_run.argtypes, lib.pwdw_run.restype = [ctypes.POINTER(_PwDwPlan), _P, _P, _P], ctypes.c_int
    lib.ln_f32.argtypes, lib.ln_f32.restype = [_P, _L, _L, _P, _P, _F, _P], None
    lib.sum_rows_f32.argtypes, lib.sum_rows_f32.restype = [_P, _L, _L, _L, ctypes.c_int, _P], None
    lib.openqnn_float_isa.argtypes, lib.openqnn_float_isa.restype = [], ctypes.c_int
    return _self_check()


_FUNCTIONS = shared.Functions("cpu", "OPENQNN_CPU_NATIVE", _setup)


def library() -> ctypes.CDLL | None:
    """The native library with float.c's functions typed and checked, once; None where it is not built,
    ``OPENQNN_CPU_NATIVE=0``, or the check fails (oneDNN's kernels run then)."""
    return _FUNCTIONS.get()


def float_isa() -> str | None:
    """The instruction set the float32 kernels are built for (``avx512``, ``avx2-fma``, ``portable``), or
    None where they are not available."""
    lib = library()
    return None if lib is None else _ISAS.get(int(lib.openqnn_float_isa()), "portable")


def _io(x: torch.Tensor, add: torch.Tensor | None, out_shape: Sequence[int]
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """A kernel's contiguous input, its fresh output and its contiguous residual operand (None for none; the
    caller holds it until the kernel has run: a contiguous copy has no other owner)."""
    return (x.contiguous(), torch.empty(*out_shape, dtype=_F32) if out_shape else torch.empty((), dtype=_F32),
            None if add is None else add.contiguous())


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _writable(other: torch.Tensor, numel: int) -> bool:
    """Whether a kernel can write its output (``numel`` floats) over the residual operand ``other``."""
    return other.dtype == _F32 and other.numel() == numel and other.is_contiguous() and other.device.type == "cpu"


def _as(out: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    return out if out.shape == shape else out.view(shape)


def _bounds(clamp: tuple[float, float] | None) -> tuple[float, float, int]:
    if clamp is None:
        return 0.0, 0.0, 0
    lo, hi = clamp
    return max(lo, -_BIG), min(hi, _BIG), 1


_ACTS = {"": 0, "gelu": 1, "gelu_tanh": 2}


def panel_width() -> int:
    """The columns per panel of :func:`pack`'s layout on this machine (the kernels' vector width twice: 32 with
    AVX-512, 16 with AVX2, 8 portable); 0 where the kernels are not available."""
    lib = library()
    return 0 if lib is None else int(lib.sgemm_pack_size(1, 1))


Panels = tuple[torch.Tensor, torch.Tensor]  # pack()'s weights and padded bias


def pack(w_kn: torch.Tensor, b: torch.Tensor | None) -> Panels:
    """Weights ``w_kn`` [k, n] packed for float.c's GEMM (panels of :func:`panel_width` columns, each k rows), and the
    bias padded to the panels' width (zeros where None): the layout this machine's kernels read, made once at
    prepare (a cpu context binary keeps it)."""
    lib = library()
    assert lib is not None and w_kn.dim() == 2
    k, n = w_kn.shape
    wkn = w_kn.detach().to(torch.float32).contiguous()
    size = lib.sgemm_pack_size(k, n)
    packed = torch.empty(size, dtype=torch.float32)
    lib.sgemm_pack(wkn.data_ptr(), k, n, packed.data_ptr())
    bias = torch.zeros(max(size // k if k else n, n), dtype=torch.float32)
    if b is not None:
        bias[:n] = b.detach().to(torch.float32)
    return packed, bias


def _check_panels(lib: ctypes.CDLL, panels: Panels, k: int, n: int) -> Panels:
    packed, bias = panels
    assert packed.dtype == bias.dtype == _F32 and packed.numel() == lib.sgemm_pack_size(k, n) and bias.numel() >= n
    return panels


class Gemm:
    """``y = clamp(act(x @ w.T + b) + add, lo, hi)``: ``w`` [n, k] float32 (FullyConnected's layout), ``b`` [n] or
    None, ``clamp`` (lo, hi) or None, ``act`` "" or a GELU ("gelu": erf, "gelu_tanh"); x is rows of k floats."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor | None, clamp: tuple[float, float] | None = None,
                 act: str = ""):
        assert w.dim() == 2
        self._setup(pack(w.t(), b), w.shape[1], w.shape[0], clamp, act)

    @classmethod
    def of_panels(cls, panels: Panels, k: int, n: int, clamp: tuple[float, float] | None = None,
                  act: str = "") -> Gemm:
        """The GEMM of weights [k, n] :func:`pack` laid out already (``panels``)."""
        self = cls.__new__(cls)
        self._setup(panels, k, n, clamp, act)
        return self

    def _setup(self, panels: Panels, k: int, n: int, clamp: tuple[float, float] | None, act: str) -> None:
        lib = library()
        assert lib is not None
        self.n, self.k = n, k
        self.packed, self.bias = _check_panels(lib, panels, k, n)
        self.lo, self.hi, self.clamp = _bounds(clamp)
        self.act = _ACTS[act]
        self.plan = _GemmPlan(self.packed.data_ptr(), self.bias.data_ptr(), self.k, self.n, self.lo, self.hi,
                              self.clamp, self.act)
        self.ref = ctypes.byref(self.plan)
        self.fn = lib.sgemm_run

    def run(self, x: torch.Tensor, out_shape: Sequence[int], add: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` [..., k] float32 on the CPU -> [..., n] as ``out_shape``; ``add`` of that shape or None."""
        x, out, other = _io(x, add, out_shape)
        m = x.numel() // self.k if self.k else 0
        if m:
            self.fn(self.ref, x.data_ptr(), m, out.data_ptr(), _ptr(other))
        return out

    def step(self, out_shape: Sequence[int], add: bool = False) -> Callable[..., torch.Tensor]:
        """``run`` for one ``out_shape`` (and a residual operand or none) as a single closure: what a plan's step
        calls, one Python frame and no argument tuples per call."""
        fn, ref, k, shape, empty, f32 = self.fn, self.ref, self.k, tuple(out_shape), torch.empty, _F32
        if not shape or not k or 0 in shape:
            return (lambda x, other: self.run(x, out_shape, other)) if add else (lambda x: self.run(x, out_shape))

        # (each closure holds this Gemm: its struct points into this object's packed weights and bias)
        if add:
            def run_add(x: torch.Tensor, other: torch.Tensor, _owner: Gemm = self) -> torch.Tensor:
                x, other = x.contiguous(), other.contiguous()
                out = empty(*shape, dtype=f32)
                fn(ref, x.data_ptr(), x.numel() // k, out.data_ptr(), other.data_ptr())
                return out

            return run_add

        def run(x: torch.Tensor, _owner: Gemm = self) -> torch.Tensor:
            x = x.contiguous()
            out = empty(*shape, dtype=f32)
            fn(ref, x.data_ptr(), x.numel() // k, out.data_ptr(), None)
            return out

        return run

    def step_over(self, out_shape: Sequence[int]) -> Callable[..., torch.Tensor] | None:
        """The closure of ``step(out_shape, add=True)`` that writes its output over the residual operand (the
        executor's ``over``: it passes one nothing else holds); None where ``step`` has no fast form."""
        shape = tuple(out_shape)
        if not shape or not self.k or 0 in shape:
            return None
        fn, ref, k, numel, fresh = self.fn, self.ref, self.k, math.prod(shape), self.step(shape, add=True)

        def run_over(x: torch.Tensor, other: torch.Tensor, _owner: Gemm = self) -> torch.Tensor:
            if not _writable(other, numel):
                return fresh(x, other)
            x = x.contiguous()
            fn(ref, x.data_ptr(), x.numel() // k, other.data_ptr(), other.data_ptr())
            return _as(other, shape)

        return run_over


class _ImageKernel:
    """What the convolutions share: ``run`` into a fresh output (a residual ``add`` summed in) and ``run_over``, the
    same written over ``add``; a subclass sets ``out_shape`` and ``_call(x, out, other)`` (the C call)."""

    out_shape: tuple[int, ...]

    def run(self, x: torch.Tensor, add: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` [n, h, w, c] float32 on the CPU -> ``out_shape``; ``add`` of the output's shape or None."""
        x, out, other = _io(x, add, self.out_shape)
        return self._call(x, out, other) if out.numel() else out

    def run_over(self, x: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
        """``run(x, add)`` written over ``add`` (which nothing else may hold)."""
        if not _writable(add, math.prod(self.out_shape)):
            return self.run(x, add)
        return _as(self._call(x.contiguous(), add, add) if add.numel() else add, self.out_shape)

    def _call(self, x: torch.Tensor, out: torch.Tensor, other: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError


class Conv(_ImageKernel):
    """A convolution of one group, channels last, as an implicit GEMM (output pixels the rows, the taps the sum's
    axis, read where they lie in the zero-padded input) on weights packed once: ``w`` [cout, kh, kw, cin] float32, ``b`` [cout] or None,
    ``geo`` = (n, h, w, cin, kh, kw, sh, sw, dh, dw, pad top, pad left, oh, ow); taps outside add nothing."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor | None, geo: Sequence[int],
                 clamp: tuple[float, float] | None = None):
        assert w.dim() == 4 and tuple(w.shape[1:]) == (geo[4], geo[5], geo[3])
        self._setup(pack(w.reshape(w.shape[0], -1).t(), b), w.shape[0], geo, clamp)

    @classmethod
    def of_panels(cls, panels: Panels, cout: int, geo: Sequence[int], clamp: tuple[float, float] | None = None) -> Conv:
        """The convolution of :func:`pack`'s panels of the weights as [kh * kw * cin, cout] rows (the IR's layout)."""
        self = cls.__new__(cls)
        self._setup(panels, cout, geo, clamp)
        return self

    def _setup(self, panels: Panels, cout: int, geo: Sequence[int], clamp: tuple[float, float] | None) -> None:
        lib = library()
        assert lib is not None and len(geo) == 14
        self.geo = _Geo(*geo)
        self.n = cout
        self.packed, self.bias = _check_panels(lib, panels, self.geo.kh * self.geo.kw * self.geo.c, cout)
        self.out_shape = (self.geo.n, self.geo.oh, self.geo.ow, self.n)
        self.lo, self.hi, self.clamp = _bounds(clamp)
        self.fn = lib.conv_f32
        self.geo_ref = ctypes.byref(self.geo)

    def _call(self, x: torch.Tensor, out: torch.Tensor, other: torch.Tensor | None) -> torch.Tensor:
        if self.fn(x.data_ptr(), self.geo_ref, self.packed.data_ptr(), self.n, self.bias.data_ptr(), out.data_ptr(),
                   _ptr(other), self.lo, self.hi, self.clamp) != 0:
            raise MemoryError("cpu convolution: out of memory for its padded input")
        return out


class PointwiseDepthwise(_ImageKernel):
    """A 1x1 convolution and the depthwise convolution it alone feeds, fused (MobileNets' expansion): the
    expanded rows are made as the depthwise's windows reach them and never written out whole. ``pw`` [ce, cin]
    float32 with ``pw_b`` and ``pw_clamp``; ``dw`` [kh, kw, ce] with ``dw_b`` and ``clamp``; ``geo`` the
    depthwise's (n, h, w, ce, kh, kw, sh, sw, 1, 1, pad top, pad left, oh, ow). With ``project``, the 1x1
    convolution of the depthwise's output too (an inverted residual block's projection; its GEMM reads the
    depthwise's rows a chunk at a time, in cache): a :class:`Gemm` of ce inputs; a residual ``add`` then belongs
    to it."""

    def __init__(self, pw: torch.Tensor, pw_b: torch.Tensor | None, pw_clamp: tuple[float, float] | None,
                 dw: torch.Tensor, dw_b: torch.Tensor | None, geo: Sequence[int],
                 clamp: tuple[float, float] | None = None, project: Gemm | None = None):
        assert pw.dim() == 2
        self._setup(Gemm(pw, pw_b, pw_clamp), dw, dw_b, geo, clamp, project)

    @classmethod
    def of_panels(cls, pw: Panels, cin: int, pw_clamp: tuple[float, float] | None, dw: torch.Tensor,
                  dw_b: torch.Tensor | None, geo: Sequence[int], clamp: tuple[float, float] | None = None,
                  project: Gemm | None = None) -> PointwiseDepthwise:
        """The fused pair with the 1x1 weights [cin, ce] as :func:`pack`'s panels (``pw``, its bias in them)."""
        self = cls.__new__(cls)
        self._setup(Gemm.of_panels(pw, cin, geo[3], pw_clamp), dw, dw_b, geo, clamp, project)
        return self

    def _setup(self, expand: Gemm, dw: torch.Tensor, dw_b: torch.Tensor | None, geo: Sequence[int],
               clamp: tuple[float, float] | None, project: Gemm | None) -> None:
        lib = library()
        assert lib is not None and dw.dim() == 3 and len(geo) == 14
        self.expand, self.project = expand, project  # (their packings and padded biases)
        self.dw = Depthwise(dw, dw_b, geo, clamp)
        assert self.dw.geo.dh == self.dw.geo.dw == 1 and self.expand.n == self.dw.geo.c
        assert project is None or project.k == self.dw.geo.c
        e, d, p = self.expand, self.dw, project
        after = (p.packed.data_ptr(), p.bias.data_ptr(), p.n, p.lo, p.hi, p.clamp) if p else (None, None, 0, 0.0, 0.0, 0)
        self.plan = _PwDwPlan(e.k, e.packed.data_ptr(), e.bias.data_ptr(), e.lo, e.hi, e.clamp, ctypes.pointer(d.geo),
                              d.w.data_ptr(), d.bias.data_ptr(), d.lo, d.hi, d.clamp, *after)
        self.ref = ctypes.byref(self.plan)
        self.fn = lib.pwdw_run
        self.out_shape = (*self.dw.out_shape[:3], p.n) if p else self.dw.out_shape

    def _call(self, x: torch.Tensor, out: torch.Tensor, other: torch.Tensor | None) -> torch.Tensor:
        if self.fn(self.ref, x.data_ptr(), out.data_ptr(), _ptr(other)) != 0:
            raise MemoryError("cpu pointwise + depthwise convolution: out of memory for its rows")
        return out


class Depthwise(_ImageKernel):
    """A depthwise convolution, channels last: ``w`` [kh, kw, c] float32, ``b`` [c] or None, ``geo`` = (n, h,
    w, c, kh, kw, sh, sw, dh, dw, pad top, pad left, oh, ow); taps outside the input add nothing."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor | None, geo: Sequence[int],
                 clamp: tuple[float, float] | None = None):
        lib = library()
        assert lib is not None and w.dim() == 3 and len(geo) == 14
        self.geo = _Geo(*geo)
        assert (self.geo.kh, self.geo.kw, self.geo.c) == tuple(w.shape)
        self.w = w.detach().to(torch.float32).contiguous()
        self.bias = torch.zeros(self.geo.c, dtype=torch.float32) if b is None else b.detach().to(torch.float32).contiguous()
        self.out_shape = (self.geo.n, self.geo.oh, self.geo.ow, self.geo.c)
        self.lo, self.hi, self.clamp = _bounds(clamp)
        self.plan = _DwPlan(ctypes.pointer(self.geo), self.w.data_ptr(), self.bias.data_ptr(), self.lo, self.hi,
                            self.clamp)
        self.ref = ctypes.byref(self.plan)
        self.fn = lib.dw_run

    def _call(self, x: torch.Tensor, out: torch.Tensor, other: torch.Tensor | None) -> torch.Tensor:
        self.fn(self.ref, x.data_ptr(), out.data_ptr(), _ptr(other))
        return out


class LayerNorm:
    """LayerNorm over the last ``n`` elements of each row: ``(x - mean) / sqrt(var + eps) * g + b``, ``g`` and ``b``
    [n] float32 or None."""

    def __init__(self, n: int, g: torch.Tensor | None, b: torch.Tensor | None, eps: float):
        lib = library()
        assert lib is not None and n > 0
        self.n, self.eps = n, eps
        self.g = None if g is None else g.detach().to(torch.float32).reshape(n).contiguous()
        self.b = None if b is None else b.detach().to(torch.float32).reshape(n).contiguous()
        self.gp = None if self.g is None else self.g.data_ptr()
        self.bp = None if self.b is None else self.b.data_ptr()
        self.fn = lib.ln_f32

    def run(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` float32 on the CPU, its trailing elements in rows of ``n`` -> the same shape, into ``out`` if given
        (contiguous, of x's shape; ``x`` itself normalizes in place: each row is read whole before it is written)."""
        x = x.contiguous()
        if out is None or not out.is_contiguous():
            out = torch.empty_like(x)
        if x.numel():
            self.fn(x.data_ptr(), x.numel() // self.n, self.n, self.gp, self.bp, self.eps, out.data_ptr())
        return out


class RowSum:
    """The sum (or mean) over the middle axis of float32 ``[outer, rows, inner]``, in the rows' order: a global
    average pool over an image's pixels (channels last), an encoder's mean over its tokens."""

    def __init__(self, outer: int, rows: int, inner: int, mean: bool, out_shape: Sequence[int]):
        lib = library()
        assert lib is not None and rows > 0
        self.outer, self.rows, self.inner, self.mean = outer, rows, inner, int(mean)
        self.out_shape = tuple(out_shape)
        self.fn = lib.sum_rows_f32

    def run(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        out = torch.empty(self.out_shape, dtype=_F32)
        self.fn(x.data_ptr(), self.outer, self.rows, self.inner, self.mean, out.data_ptr())
        return out


Strides = tuple[int, int, int, int]


class Attention:
    """``softmax(q k^T scale + mask) v`` per (batch, head) of ``dims`` = (B, H, Sq, Sk, D, Dv): Q, K, V and the
    output are read and written where they lie, element (b, h, row, col) of each at ``b s0 + h s1 + row s2 +
    col s3`` floats from its tensor's start (``q_strides``, ...; the output's last stride 1), so heads split out of
    a projection's rows, and merged back into them, need no copy. The mask, when given, is broadcast to
    [B, H, Sq, Sk] by its strides at each run. A row whose scores are all -inf gives NaN, as Softmax does, or zeros
    with ``zero_empty`` (PyTorch's scaled_dot_product_attention as exported)."""

    def __init__(self, dims: Sequence[int], scale: float, q_strides: Strides, k_strides: Strides,
                 v_strides: Strides, out_strides: Strides, out_shape: Sequence[int], zero_empty: bool = False):
        lib = library()
        assert lib is not None and len(dims) == 6 and out_strides[3] == 1 and min(dims) > 0
        self.args = _Attn(*dims, None, None, None, None, None, (_L * 4)(*q_strides), (_L * 4)(*k_strides),
                          (_L * 4)(*v_strides), (_L * 4)(), (_L * 4)(*out_strides), scale, int(zero_empty), 0)
        self.out_shape = tuple(out_shape)
        self.mask_shape = tuple(dims[:4])
        self.ref = ctypes.byref(self.args)
        self.fn = lib.attn_f32
        self._layouts: dict[tuple[Strides, Strides, Strides], tuple[_Attn, Any]] = {}

    def run(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
            strides: tuple[Strides, Strides, Strides] | None = None) -> torch.Tensor:
        """``q``, ``k``, ``v``: float32 CPU tensors the strides index (the constructor's, or ``strides`` for this
        call: operands that are views of a wider tensor); ``mask`` broadcasting to [B, H, Sq, Sk] or None. Returns
        the output, a fresh contiguous tensor of ``out_shape``."""
        a, ref = self.args, self.ref  # (ref: ctypes' byref object)
        if strides is not None:
            a, ref = self._layouts.get(strides) or self._layout(strides)
        out = torch.empty(*self.out_shape, dtype=_F32)
        a.q, a.k, a.v, a.out = q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr()
        if mask is None:
            a.mask = None
        else:
            m = mask.reshape((1,) * (4 - mask.dim()) + tuple(mask.shape)).expand(self.mask_shape)
            a.mask = m.data_ptr()
            a.ms[0], a.ms[1], a.ms[2], a.ms[3] = m.stride()
        if self.fn(ref) != 0:
            raise MemoryError("cpu attention: out of memory for its buffers")
        return out

    def _layout(self, strides: tuple[Strides, Strides, Strides]) -> tuple[_Attn, Any]:
        a = _Attn.from_buffer_copy(self.args)
        for field, st in zip((a.qs, a.ks, a.vs), strides):
            field[0], field[1], field[2], field[3] = st
        self._layouts[strides] = (a, ctypes.byref(a))
        return self._layouts[strides]


def _close(got: torch.Tensor, want: torch.Tensor) -> bool:
    return bool(torch.allclose(got.double(), want, rtol=1e-4, atol=1e-4 * max(1.0, float(want.abs().max()))))


def _self_check() -> bool:
    """Both kernels on odd shapes (tails of tiles, panels and channel vectors), epilogues included, against
    float64 PyTorch (a miscompile must not pass)."""
    g = torch.Generator().manual_seed(0)
    for m, k, n, clamp, act in ((13, 37, 70, (0.0, math.inf), ""), (29, 5, 9, (-0.5, 0.5), "gelu"),
                                (1, 64, 33, None, "gelu_tanh")):
        x, w = torch.randn(m, k, generator=g), torch.randn(n, k, generator=g)
        b, add = torch.randn(n, generator=g), torch.randn(m, n, generator=g)
        want = torch.nn.functional.linear(x.double(), w.double(), b.double())
        if act:
            want = torch.nn.functional.gelu(want, approximate="tanh" if act == "gelu_tanh" else "none")
        want = want + add.double()
        if clamp is not None:
            want = want.clamp(*clamp)
        if not _close(Gemm(w, b, clamp, act).run(x, (m, n), add), want):
            return False
    for (h, c, kh, s, d, p) in ((7, 21, 3, 2, 1, 1), (9, 16, 3, 1, 1, 1), (6, 5, 5, 1, 2, 3)):
        x, w, b = torch.randn(2, h, h, c, generator=g), torch.randn(kh, kh, c, generator=g), torch.randn(c, generator=g)
        want = torch.nn.functional.conv2d(x.permute(0, 3, 1, 2).double(), w.permute(2, 0, 1).unsqueeze(1).double(),
                                          b.double(), s, p, d, c).permute(0, 2, 3, 1).clamp(0.0, 6.0)
        oh = want.shape[1]
        dw = Depthwise(w, b, (2, h, h, c, kh, kh, s, s, d, d, p, p, oh, oh), (0.0, 6.0))
        if not _close(dw.run(x), want):
            return False
        wc = torch.randn(7, kh, kh, c, generator=g)
        want = torch.nn.functional.conv2d(x.permute(0, 3, 1, 2).double(), wc.permute(0, 3, 1, 2).double(), None, s, p,
                                          d).permute(0, 2, 3, 1)
        if not _close(Conv(wc, None, (2, h, h, c, kh, kh, s, s, d, d, p, p, oh, oh)).run(x), want):
            return False
        if d == 1:
            pw, pb = torch.randn(c, 3, generator=g), torch.randn(c, generator=g)
            x3 = torch.randn(2, h, h, 3, generator=g)
            mid = (torch.nn.functional.linear(x3.double(), pw.double(), pb.double())).clamp(0.0, 6.0)
            want = torch.nn.functional.conv2d(mid.permute(0, 3, 1, 2), w.permute(2, 0, 1).unsqueeze(1).double(), b.double(),
                                              s, p, 1, c).permute(0, 2, 3, 1)
            fused = PointwiseDepthwise(pw, pb, (0.0, 6.0), w, b, (2, h, h, c, kh, kh, s, s, 1, 1, p, p, oh, oh))
            if not _close(fused.run(x3), want):
                return False
    for rows, n in ((5, 37), (33, 128)):
        x, gm, bt = torch.randn(rows, n, generator=g) * 3 + 1, torch.randn(n, generator=g), torch.randn(n, generator=g)
        want = torch.nn.functional.layer_norm(x.double(), (n,), gm.double(), bt.double(), 1e-5)
        if not _close(LayerNorm(n, gm, bt, 1e-5).run(x), want) or not _close(
                LayerNorm(n, None, None, 1e-3).run(x), torch.nn.functional.layer_norm(x.double(), (n,), eps=1e-3)):
            return False
    x = torch.randn(3, 7, 37, generator=g)
    if not (_close(RowSum(3, 7, 37, True, (3, 37)).run(x), x.double().mean(1))
            and _close(RowSum(3, 7, 37, False, (3, 37)).run(x), x.double().sum(1))):
        return False
    return _attention_checks(g)


def _attention_checks(g: torch.Generator) -> bool:
    """Heads split out of [B, S, H D] rows (K read transposed), a broadcast mask and a full one, rows and columns
    off the vector width, against float64 PyTorch."""
    for b, h, sq, sk, d, dv, full in ((2, 3, 7, 37, 5, 19, False), (1, 2, 9, 16, 64, 32, True)):
        x = torch.randn(3, b, max(sq, sk), h * max(d, dv), generator=g)
        q = x[0, :, :sq, :h * d].contiguous()
        k, v = x[1, :, :sk, :h * d].contiguous(), x[2, :, :sk, :h * dv].contiguous()
        mask = torch.randn((b, h, sq, sk) if full else (b, 1, 1, sk), generator=g)
        q4, k4, v4 = (t.view(b, t.shape[1], h, -1).transpose(1, 2) for t in (q, k, v))
        want = torch.softmax(q4.double() @ k4.double().transpose(-1, -2) * 0.3 + mask.double(), -1) @ v4.double()
        kt = k4.transpose(-1, -2)  # (b, h, d, sk): K^T's strides, read back as (b, h, sk, d)
        ks = (kt.stride(0), kt.stride(1), kt.stride(3), kt.stride(2))
        qs, vs = q4.stride(), v4.stride()
        att = Attention((b, h, sq, sk, d, dv), 0.3, (qs[0], qs[1], qs[2], qs[3]), ks, (vs[0], vs[1], vs[2], vs[3]),
                        (sq * h * dv, dv, h * dv, 1), (b, sq, h * dv))
        if not _close(att.run(q, k, v, mask).view(b, sq, h, dv).transpose(1, 2), want):
            return False
    return True
