"""Shared integer-GEMM machinery of the htp convolution and linear kernels.

- encodings and static operands: activation encodings (:func:`act_qparams`), static weights as signed
  integers (:func:`static_operand`), the bias on the accumulator's scale (:func:`bias_q`);
- int8 planes: activations move to int8 (``q - 128``; 16-bit ones split into two int8 planes,
  ``q - 32768 = 256 * hi + lo + 128``), weights that do not fit int8 split likewise
  (:func:`int8_split`); the zero-point corrections fold into one per-channel constant at build time;
- the GEMM: int8 products with int32 results (``torch._int_mm``) on the CPU, exact float64 products
  (below 2^53) on other devices (:func:`gemm_mode`);
- :class:`ConvCore`: the int8 GEMM convolution (per group, on an im2col of an already padded input)
  followed by requant.py's requantization; FullyConnected and MatMul run it as a 1x1 convolution.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from openqnn.backends.htp import native
from openqnn.backends.htp.fixedpoint import INT32_MAX, INT32_MIN
from openqnn.backends.htp.kernels.common import act_q
from openqnn.backends.htp.kernels.registry import (
    BACKGROUND_BYTES,
    HtpBuildContext,
    QParams,
    Unsupported,
    deferred,
    plan_tensor,
)
from openqnn.backends.htp.kernels.requant import QnnConv16Requant, QnnRequant, Requant, Term
from openqnn.backends.htp.kernels.scratch import output_slot, scratch, step_output
from openqnn.backends.htp.native import NativeRequant
from openqnn.backends.htp.spec.qnn_requant import qnn_bias

__all__ = [
    "ConvCore",
    "FusedSetup",
    "act_a0",
    "act_coefs",
    "act_planes",
    "act_qparams",
    "bias_q",
    "check_weight_bits",
    "col_bound",
    "fast_int8",
    "fused_gemm",
    "gemm_mode",
    "int8_kinds",
    "int8_split",
    "machine_mode",
    "make_mm",
    "op_bias",
    "qconv_bound",
    "qparams_attrs",
    "qparams_of",
    "reference16",
    "split_arrays",
    "split_of",
    "static_operand",
    "weight_matrix",
]


# -- encodings and static operands ----------------------------------------------------------------

def act_qparams(ctx: HtpBuildContext, name: str, role: str) -> QParams:
    """The per-tensor unsigned 8/16-bit encoding of a run-time operand (``role``: "input", "output", ...), or
    Unsupported (:func:`~openqnn.backends.htp.kernels.common.act_q`'s check)."""
    if ctx.is_static(name):
        raise Unsupported(f"{role} '{name}' is a static tensor, not an activation")
    try:
        q = act_q(ctx, name)
    except Unsupported as e:
        raise Unsupported(f"{role} {e}") from None
    if q is None:
        raise Unsupported(f"{role} '{name}' is not quantized")
    return q


def qparams_attrs(q: QParams) -> dict[str, object]:
    """A per-tensor activation encoding as plan attributes (:func:`qparams_of`)."""
    return {"bits": q.bitwidth, "scale": float(q.scale[0]), "offset": int(q.offset[0])}


def qparams_of(attrs: Mapping[str, Any]) -> QParams:
    return QParams(int(attrs["bits"]), np.array([float(attrs["scale"])]), np.array([int(attrs["offset"])], np.int64),
                   None, False)


def split_arrays(split: tuple[list[tuple[int, np.ndarray]], np.ndarray], prefix: str = "wpart"
                 ) -> tuple[list[int], dict[str, np.ndarray]]:
    """:func:`int8_split`'s planes as plan data: the coefficients and arrays ``{prefix}{i}``, ``{prefix}_b0``, and
    each plane's :func:`col_bound` as ``{prefix}_bound{i}`` (proven at prepare; binding reads it)."""
    parts, b0 = split
    arrays = {f"{prefix}{i}": part for i, (_, part) in enumerate(parts)}
    arrays.update({f"{prefix}_bound{i}": col_bound(part) for i, (_, part) in enumerate(parts)})
    arrays[f"{prefix}_b0"] = np.asarray(b0, dtype=np.int64)
    return [int(c) for c, _ in parts], arrays


def narrowest(a: np.ndarray) -> np.ndarray:
    """Integers ``a`` in the narrowest of int8 / int16 / int32 / int64 that holds every value (plan storage:
    weights are stored once, as small as they are; binders widen them where a kernel needs it)."""
    a = np.asarray(a)
    lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
    for dt in (np.int8, np.int16, np.int32):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return a.astype(dt)
    return a.astype(np.int64)


def lazy_int64(a: np.ndarray) -> Callable[[], np.ndarray]:
    """``a`` widened to int64 on first call (the numpy reference path), not at bind."""
    cache: list[np.ndarray] = []

    def get() -> np.ndarray:
        if not cache:
            cache.append(np.asarray(a, dtype=np.int64))
        return cache[0]

    return get


def drop_derivable_plane(arrays: dict[str, np.ndarray], coefs: list[int], w: np.ndarray) -> None:
    """Leave out ``wpart0`` where it is ``w`` itself as int8 (one plane, no shift): binders rebuild it
    with :func:`with_derived_plane` (a reshape)."""
    if coefs == [1] and w.dtype == np.int8 and not np.asarray(arrays["wpart_b0"]).any():
        del arrays["wpart0"]


def with_derived_plane(arrays: Mapping[str, np.ndarray], kn: Callable[[], np.ndarray]) -> Mapping[str, np.ndarray]:
    """``arrays`` with ``wpart0`` put back (``kn()``: the int8 weights as the [k, n] plane) where it was left out."""
    if "wpart0" in arrays:
        return arrays
    return {**arrays, "wpart0": kn()}


def split_of(coefs: list[int], arrays: Mapping[str, np.ndarray], prefix: str = "wpart"
             ) -> tuple[list[tuple[int, np.ndarray]], np.ndarray]:
    return ([(int(c), np.asarray(arrays[f"{prefix}{i}"], dtype=np.int8)) for i, c in enumerate(coefs)],
            np.asarray(arrays[f"{prefix}_b0"], dtype=np.int64))


def split_bounds(coefs: list[int], arrays: Mapping[str, np.ndarray], prefix: str = "wpart") -> list[np.ndarray]:
    """The planes' :func:`col_bound`, as :func:`split_arrays` stored them."""
    return [np.asarray(arrays[f"{prefix}_bound{i}"], dtype=np.float64) for i in range(len(coefs))]


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


def op_bias(ctx: HtpBuildContext, name: str, x_scale: float, w_scale: np.ndarray, channels: int,
            rq: Requant) -> np.ndarray:
    """A convolution's or FullyConnected's bias as the accumulators take it: :func:`bias_q` on the scale
    ``x_scale * w_scale`` (one weight scale, or one per channel), then, under QNN's requantization (``rq`` a
    :class:`QnnRequant`), QNN's own conversion of it (:func:`~openqnn.backends.htp.spec.qnn_requant.qnn_bias`:
    v73 truncates it after float32 arithmetic, per-tensor from the encoded integers and their scale; v68 rounds
    it together with the output zero point's share, which its requantization otherwise adds); under QNN's W8A16
    one (a :class:`QnnConv16Requant`), :meth:`~openqnn.backends.htp.spec.qnn_conv16.Conv16Spec.bias`."""
    w = np.asarray(w_scale, dtype=np.float64).reshape(-1)
    bias = bias_q(ctx, name, x_scale * np.broadcast_to(w, (channels,)), rq.wide)
    if not isinstance(rq, (QnnRequant, QnnConv16Requant)) or (not name and isinstance(rq, QnnRequant)):
        return bias
    bias_scale = None
    if name:
        t = ctx.graph.tensors[name]
        if w.size == 1 and t.encoding is not None:
            q = QParams.of(t.encoding)
            if q.bitwidth == 32 and q.scale.size == 1 and not np.asarray(q.offset).any():
                # per-tensor, QNN dequantizes the encoded integers with their own scale
                bias = np.broadcast_to(ctx.static_q(name).reshape(-1), (channels,)).astype(np.int64)
                bias_scale = float(q.scale[0])
    if isinstance(rq, QnnConv16Requant):
        # W8A16 (spec/qnn_conv16.py): the arch's conversion of the int32 bias, on v68 with the output zero point's
        # share (beyond int32 where M is small: the rule keeps it in 64 bits), so also without a bias
        return rq.spec16.bias(np.clip(bias, INT32_MIN, INT32_MAX), x_scale, w, bias_scale, rq.real)
    return np.clip(qnn_bias(rq.spec.arch, bias, x_scale, w, bias_scale, rq.spec, rq.real), INT32_MIN, INT32_MAX)


def reference16(rq: QnnConv16Requant, x: np.ndarray, xq: QParams, acc: Callable[[np.ndarray], np.ndarray],
                w_sum: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The spec of an op under QNN's W8A16 requantization: ``acc`` (the op's sum of products with the weights,
    zero padding) of the input codes' high and low bytes less the zero point's bytes, requantized together
    (spec/qnn_conv16.py); ``w_sum``: the weights' sum over each output's taps (per channel, or broadcast
    against the sums), whose taps outside the input hold the zero point."""
    q, zx = np.asarray(x, dtype=np.int64), int(xq.zero_point[0])
    zh, zl = zx >> 8, zx & 255
    return rq.planes_np(acc((q >> 8) - zh), acc((q & 255) - zl), w_sum, bias, zx, zh * w_sum, zl * w_sum)


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


# -- GEMM -----------------------------------------------------------------------------------------

_INT_MM_CPU: bool | None = None


def _int_mm_cpu() -> bool:
    """Whether this PyTorch runs torch._int_mm on the CPU (int8 x int8 -> int32), exactly."""
    global _INT_MM_CPU
    if _INT_MM_CPU is None:
        try:
            # extreme codes: pairs of products overflow int16 (where an int8 kernel without VNNI may saturate)
            a = torch.full((5, 64), -128, dtype=torch.int8)
            a[1] = 127
            a[2, ::2] = 127
            b = torch.full((64, 3), -128, dtype=torch.int8)
            b[:, 1] = 127
            b[::3, 2] = 127
            want = a.to(torch.int64) @ b.to(torch.int64)
            _INT_MM_CPU = bool(torch.equal(torch._int_mm(a, b).to(torch.int64), want))
        except (RuntimeError, AttributeError, NotImplementedError):
            _INT_MM_CPU = False
    return _INT_MM_CPU


_F32_EXACT = float(2**24)  # float32 holds every integer below this: sums of products below it are exact
F32_CHUNK = 1024  # int8 x int8 products per exact float32 partial sum (1024 * 128 * 128 = 2^24)
_INT8_FASTER: bool | None = None


def int8_mm_faster() -> bool:
    """Whether torch._int_mm beats an exact float32 GEMM of the same int8 operands on this CPU, measured once
    (it has fast kernels with VNNI; without, it is many times slower than float32, which stays exact while
    every partial sum is below 2^24)."""
    global _INT8_FASTER
    if _INT8_FASTER is None:
        import time

        if not _int_mm_cpu():
            _INT8_FASTER = False
            return False
        g = torch.Generator().manual_seed(0)
        a = torch.randint(-128, 128, (784, 576), dtype=torch.int8, generator=g)
        b = torch.randint(-128, 128, (64, 576), dtype=torch.int8, generator=g)
        af, bf = a.to(torch.float32), b.to(torch.float32)

        def best(fn: Callable[[], object]) -> float:
            fn()
            times = []
            for _ in range(5):
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
            return min(times)

        _INT8_FASTER = best(lambda: torch._int_mm(a, b.t())) < best(lambda: torch.mm(af, bf.t()))
    return _INT8_FASTER


def fast_int8(device: torch.device) -> bool:
    """Whether PyTorch's int8 products are fast on ``device`` (a CPU with AVX-512 VNNI, where the native
    kernels are built for it, or a measured-fast torch._int_mm); where not, exact float32 kernels run
    instead of torch._int_mm (native/int8.c's AVX2 kernels being fast says nothing of torch._int_mm)."""
    if device.type != "cpu":
        return False
    from openqnn.backends.htp import native

    return native.int8_isa() == "avx512-vnni" or int8_mm_faster()


def gemm_mode(ctx: HtpBuildContext) -> str:
    """``int8``: torch._int_mm (CPU); ``float64``: exact float64 products (other devices)."""
    return "int8" if ctx.device.type == "cpu" and _int_mm_cpu() else "float64"


def int8_kinds(mode: str | None, ctx: HtpBuildContext) -> bool:
    """Whether a plan lists the int8 kernels (native/int8.c's, oneDNN's int8 convolution) among its kinds:
    where a test forces ``mode``, only in ``int8`` mode; else wherever it runs on the CPU. (:func:`gemm_mode`
    asks whether torch._int_mm is exact on the preparing machine, which says nothing of those kernels: each
    checks its own machine at bind, and a plan keeps its kinds wherever it is opened.)"""
    return mode == "int8" if mode is not None else ctx.device.type == "cpu"


def machine_mode(mode: str, device: torch.device) -> str:
    """A plan's GEMM kind on this machine: ``int8`` where torch._int_mm runs here exactly, else
    ``float64`` (the same bits)."""
    return "int8" if mode == "int8" and device.type == "cpu" and _int_mm_cpu() else "float64"


def make_mm(mode: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """mm(a [m, k] int8, bt [n, k] int8 or float64 in float64 mode) -> a @ bt.T (int32 / float64, exact);
    in float32 mode both are float32 and every partial sum is below 2^24 (the caller's bound)."""
    if mode == "int8":
        def mm(a: torch.Tensor, bt: torch.Tensor) -> torch.Tensor:
            return torch._int_mm(a, bt.t())
    elif mode == "float32":
        def mm(a: torch.Tensor, bt: torch.Tensor) -> torch.Tensor:
            return a @ bt.t()
    else:
        def mm(a: torch.Tensor, bt: torch.Tensor) -> torch.Tensor:
            return a.to(torch.float64) @ bt.t()
    return mm


def weight_matrix(part: np.ndarray, mode: str, device: torch.device) -> torch.Tensor:
    """[k, n] integer weights -> the second GEMM operand stored transposed ([n, k], contiguous)."""
    dtype = {"int8": torch.int8, "float32": torch.float32}.get(mode, torch.float64)
    return plan_tensor(np.ascontiguousarray(part.T), device, dtype)


def col_bound(part: np.ndarray) -> np.ndarray:
    """Bound of |int8 activations @ part| per column (activations within [-128, 127])."""
    return 128.0 * np.abs(part.astype(np.float64)).reshape(-1, part.shape[-1]).sum(axis=0)


# -- the fused int8 kernels (native/int8.c) -------------------------------------------------------

def qconv_bound(wc: np.ndarray, zx: int) -> np.ndarray:
    """Per output channel: the largest |sum over taps of (q - zx) * w| and |sum of q * w| for q in [0, 255]."""
    w = wc.astype(np.int64).reshape(-1, wc.shape[-1])
    pos, neg = np.where(w > 0, w, 0).sum(axis=0), np.where(w < 0, -w, 0).sum(axis=0)
    centred = np.maximum((255 - zx) * pos + zx * neg, zx * pos + (255 - zx) * neg)
    return np.maximum(centred, 255 * np.maximum(pos, neg)).astype(np.float64)


class FusedSetup:
    """What native/int8.c's kernels need for one op: the library, the C requantization of the
    int32 accumulator (bias in its constants) and the accumulator's start ``-zx * sum(w)`` per output
    channel, so that it ends as the spec's ``sum((q - zx) * w)``."""

    def __init__(self, lib: ctypes.CDLL, form: NativeRequant, init: torch.Tensor):
        self.lib, self.form, self.init = lib, form, init

    @staticmethod
    def data(xq: QParams, wc: np.ndarray, rq: Requant) -> dict[str, np.ndarray] | None:
        """The model's side of :meth:`of` (plan arrays): the accumulator's bound per output channel
        (``bound``, :func:`qconv_bound`) and start (``init``); None where the kernels cannot apply
        whatever the machine: not an 8-bit input with the int32 accumulator scheme, weights outside
        int8, or an accumulator that may not fit int32."""
        if xq.bitwidth != 8 or rq.wide or wc.size == 0 or int(wc.min()) < -128 or int(wc.max()) > 127:
            return None
        zx = int(xq.zero_point[0])
        bound = qconv_bound(wc, zx)
        if float(bound.max()) >= float(INT32_MAX):
            return None
        cout = wc.shape[-1]
        return {"bound": bound, "init": -zx * wc.astype(np.int64).reshape(-1, cout).sum(axis=0)}

    @staticmethod
    def bind(device: torch.device, rq: Requant, bias: np.ndarray, data: dict[str, np.ndarray]) -> FusedSetup | None:
        """The machine's side of :meth:`of`, from :meth:`data`: None where not the CPU, int8.c's kernels
        are not built (neither AVX-512 VNNI nor AVX2), or the requantization is not the C form."""
        lib = native.library()
        if lib is None or device.type != "cpu" or not native.int8_available():
            return None
        rq.fast(bias, [(1, data["bound"])], torch.int32)  # the plan; the kernels run its C epilogue
        form = rq.native_form
        if form is None or form.in_dtype != torch.int32:
            return None
        return FusedSetup(lib, form, plan_tensor(np.asarray(data["init"], dtype=np.int64), "cpu", torch.int32))

    @staticmethod
    def key(rq: Requant, bias: np.ndarray, data: dict[str, np.ndarray]) -> str:
        """The key of the accumulator whose requantization :meth:`bind` decides (a plan keeps it for
        :meth:`from_plan`)."""
        return rq.accumulator_key(bias, [(1, data["bound"])])

    @staticmethod
    def from_plan(device: torch.device, rq_attrs: Mapping[str, Any], key: Any, init: np.ndarray) -> FusedSetup | None:
        """:meth:`bind` from a plan alone, where it keeps the C requantization prepare proved (QNN's int32 form,
        :meth:`QnnRequant.stored_int_form`) and its accumulator's :meth:`key`: the same kernels and constants with
        no requantization made. None where it does not (then :meth:`bind`)."""
        lib = native.library()
        if lib is None or device.type != "cpu" or not native.int8_available():
            return None
        form = QnnRequant.stored_int_form(rq_attrs, key, torch.int32, device)
        if form is None:
            return None
        return FusedSetup(lib, form, plan_tensor(np.asarray(init, dtype=np.int64), "cpu", torch.int32))

    @staticmethod
    def for_plan(device: torch.device, attrs: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
                 requant: Callable[[], Requant], bias: np.ndarray) -> FusedSetup | None:
        """The setup of a plan's fused GEMM (``attrs``: its ``rq`` and ``fused_form``; ``arrays``: its ``fused_init``
        and ``fused_bound``): :meth:`from_plan`, else :meth:`bind` with the requantization ``requant()`` makes; None
        where this machine lacks int8.c's kernels."""
        return (FusedSetup.from_plan(device, attrs["rq"], attrs.get("fused_form"), arrays["fused_init"])
                or FusedSetup.bind(device, requant(), bias, {"bound": arrays["fused_bound"], "init": arrays["fused_init"]}))

    @staticmethod
    def of(ctx: HtpBuildContext | torch.device, xq: QParams, wc: np.ndarray, rq: Requant, bias: np.ndarray
           ) -> FusedSetup | None:
        """For integer weights ``wc`` (output channels last); None where the kernels do not apply
        (:meth:`data`, :meth:`bind`)."""
        device = ctx if isinstance(ctx, torch.device) else ctx.device
        lib = native.library()
        if lib is None or device.type != "cpu" or not native.int8_available():
            return None
        data = FusedSetup.data(xq, wc, rq)
        return None if data is None else FusedSetup.bind(device, rq, bias, data)


def packing_for_plan(wkn: np.ndarray) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The fused GEMM's int8 weights [k, n] packed as this machine's int8 kernels read them, for its plan to keep
    (attrs ``fused_packing``: the kernels' :func:`native.int8_isa`; arrays ``fused_packed``), so that binding packs
    nothing (:func:`stored_packing`). Nothing for weights of ``BACKGROUND_BYTES`` or more (binding packs those in
    worker threads, and the file would hold them twice) or where the kernels are not here."""
    isa = native.int8_isa() if native.int8_available() else None
    if (isa is None or wkn.size >= BACKGROUND_BYTES or wkn.dtype.kind not in "iu" or wkn.ndim != 2 or not wkn.size
            or wkn.min() < -128 or wkn.max() > 127):
        return {}, {}
    return {"fused_packing": isa}, {"fused_packed": native.int8_gemm_pack(wkn)}


def stored_packing(attrs: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """The packed weights a plan keeps (:func:`packing_for_plan`) where this machine's int8 kernels read that
    packing, else None (another machine's: packed again on binding)."""
    packing = attrs.get("fused_packing")
    return arrays.get("fused_packed") if packing is not None and packing == native.int8_isa() else None


def fused_gemm(ctx: HtpBuildContext | torch.device, xq: QParams | None, wkn: np.ndarray, rq: Requant | None,
               bias: np.ndarray | None, fs: FusedSetup | None = None, packed: np.ndarray | None = None
               ) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``x [..., k] (uint8 codes) -> requant(sum((q - zx) * w) + bias) [..., n]`` as native/int8.c's
    GEMM with the requantization fused, for static integer weights ``wkn`` [k, n]; None where it
    does not apply (:meth:`FusedSetup.of`; ``fs``: one made already, from a plan; ``packed``: the weights as this
    machine's kernels read them, from a plan: :func:`stored_packing`)."""
    device = ctx if isinstance(ctx, torch.device) else ctx.device
    if fs is None:
        assert xq is not None and rq is not None and bias is not None
        fs = FusedSetup.of(device, xq, wkn, rq, bias)
    if fs is None:
        return None
    # the weights are packed in C, which releases the GIL: large ones in the background when opening a
    # context (small ones at once: a worker thread's handoff would cost more than the packing)
    # (int8 already, as plans store them: packed from the array itself, no copy)
    w = wkn if wkn.dtype == np.int8 else plan_tensor(wkn, "cpu", torch.int8)
    gemm = (deferred("int8 GEMM weights", native.Int8Gemm, fs.lib, w, fs.init, fs.form)
            if wkn.size >= BACKGROUND_BYTES and packed is None else [native.Int8Gemm(fs.lib, w, fs.init, fs.form, packed)])
    slot, n, dtype = output_slot("gemm"), wkn.shape[1], fs.form.out_dtype

    def run(x: torch.Tensor) -> torch.Tensor:
        return gemm[0].run(x.contiguous(), step_output(slot, (*x.shape[:-1], n), dtype, device))

    return run


# -- the im2col GEMM convolution ------------------------------------------------------------------

class ConvCore:
    """Int8 GEMM convolution of an already padded int8 input [planes * n, hp, wp, c] (stride, dilation,
    groups) with static weights [kh, kw, cin/g, cout]; ``run(p)`` returns the requantized output."""

    def __init__(self, wc: np.ndarray, xq: QParams, rq: Requant, bias: np.ndarray, n: int, hp: int, wp: int,
                 oh: int, ow: int, stride: tuple[int, int], dilation: tuple[int, int], groups: int, mode: str,
                 device: torch.device, split: tuple[list[tuple[int, np.ndarray]], np.ndarray] | None = None,
                 off: np.ndarray | None = None, bounds: Sequence[np.ndarray] | None = None,
                 tap_sums: np.ndarray | None = None):
        """``split``: :meth:`weight_split` of ``wc`` made already (from a plan); ``wc`` then only gives
        the geometry. ``off``: :meth:`folded_offset` of it, likewise; ``bounds``: its planes'
        :func:`col_bound` (:func:`split_bounds`). ``tap_sums``: under QNN's W8A16 requantization, the weights'
        sum per output position and channel [oh * ow, cout] where the zero point's share counts other taps than
        all of the kernel's (a transposed convolution's phases; the padded input holds the zero point)."""
        kh, kw, cin_g, cout = wc.shape
        cout_g = cout // groups
        self.geo = (n, oh, ow, kh, kw, stride, dilation, groups, cin_g)
        k = kh * kw * cin_g
        parts_b, b0 = split if split is not None else ConvCore.weight_split(wc, groups)
        coefs_a = act_coefs(xq.bitwidth)
        self.planes = len(coefs_a)
        self.m = n * oh * ow
        if off is None:
            off = ConvCore.folded_offset((parts_b, b0), bias, xq, k)
        if bounds is None:
            bounds = [col_bound(part) for _, part in parts_b]
        # 8-bit activations and one int8 weight plane on a CPU whose int8 GEMM is slow: exact float32 GEMMs, over
        # the whole reduction where every partial sum stays below 2^24, else over chunks of F32_CHUNK products
        # (|sum| <= 1024 * 2^14 = 2^24 whatever the weights) added as int32
        self.f32_rows: list[tuple[int, int]] | None = None
        if (mode in ("int8", "float64") and not rq.wide and len(coefs_a) == 1 and len(parts_b) == 1 and not b0.any()
                and float(bounds[0].max()) < INT32_MAX and not fast_int8(device)):
            mode = "float32"
            if float(bounds[0].max()) >= _F32_EXACT:
                self.f32_rows = [(r, min(r + F32_CHUNK, k)) for r in range(0, k, F32_CHUNK)]
        chunks = self.f32_rows or [(0, k)]
        self.b_t = [[weight_matrix(part[r0:r1, gi * cout_g:(gi + 1) * cout_g], mode, device)
                     for r0, r1 in chunks for gi in range(groups)] for _, part in parts_b]
        if mode == "int8" and max(float(b.max()) for b in bounds) >= INT32_MAX:
            raise Unsupported(f"a reduction over {k} products may overflow the int32 GEMM accumulator")
        self.mm = make_mm(mode)
        self.use_row = bool(b0.any())
        terms: list[Term] = []
        self.term_index: list[tuple[int, int]] = []  # (A plane, B part) per GEMM term
        for pa, ca in enumerate(coefs_a):
            for rb, ((db, _), bound) in enumerate(zip(parts_b, bounds)):
                terms.append((ca * db, bound))
                self.term_index.append((pa, rb))
        row_bound = 128.0 * k
        if self.use_row:
            terms += [(-ca * b0, np.full(cout, row_bound)) for ca in coefs_a]
        self.narrow = not rq.wide
        # QNN's W8A16 requantization takes the two planes' sums apart (each less 128 per byte: act_planes)
        self.conv16 = isinstance(rq, QnnConv16Requant)
        self.wcoefs = [int(db) for db, _ in parts_b]
        self.b0_t = torch.from_numpy(np.array(b0, dtype=np.int64)).to(device)
        # 16-bit activations, one weight plane: 256 * hi + lo combined in int32 when it cannot overflow
        self.combine = (not self.narrow and self.planes == 2 and len(parts_b) == 1 and not self.use_row
                        and mode == "int8" and float(257.0 * bounds[0].max()) < INT32_MAX and not self.conv16)
        if isinstance(rq, QnnConv16Requant):
            # the planes hold the bytes less 128 at every tap (padding and stuffing: the zero point's bytes), so
            # the bytes' sums over the counted taps are th + 128 * W - z * (W - tap_sums)
            w_all = sum(d * part.astype(np.int64).sum(axis=0) for d, part in parts_b) - k * np.asarray(b0, np.int64)
            zx = int(xq.zero_point[0])
            w_sum = w_all if tap_sums is None else np.asarray(tap_sums, dtype=np.int64)
            self.requant = rq.planes_fast(w_sum, bias, zx, 128 * w_all - (zx >> 8) * (w_all - w_sum),
                                          128 * w_all - (zx & 255) * (w_all - w_sum))
        elif self.combine:
            self.requant = rq.fast(off, [(1, 257.0 * bounds[0])], torch.int32)
        elif self.narrow:  # one int accumulator: the row correction joins it in place
            assert len(terms) == 1 or (len(terms) == 2 and self.use_row)
            bound = np.zeros(cout)
            for c, b in terms:
                bound = bound + np.abs(np.asarray(c, dtype=np.float64)) * b
            ok32 = float(np.max(bound)) < INT32_MAX
            self.negb0 = torch.tensor(-b0, dtype=torch.int32 if mode == "int8" else torch.float64, device=device)
            if self.use_row and not ok32:
                raise Unsupported("accumulator may overflow int32 before requantization")
            first = ({"int8": torch.int32, "float32": torch.float32}.get(mode, torch.float64)
                     if self.f32_rows is None else torch.int32)
            self.requant = rq.fast(off, [(1, bound)], first)
        else:
            self.requant = rq.fast(off, terms, torch.int32 if mode == "int8" else torch.float64)
        self.cout_g, self.mode = cout_g, mode
        self.pointwise = kh == kw == 1 and stride == (1, 1) and hp == oh and wp == ow and groups == 1

    @staticmethod
    def folded_offset(split: tuple[list[tuple[int, np.ndarray]], np.ndarray], bias: np.ndarray, xq: QParams, k: int
                      ) -> np.ndarray:
        """The zero-point corrections and the bias as one per-channel constant of the accumulator:
        ``off = bias - a0 * sum_r d_r colsum(B_r) + K * a0 * b0`` (``k`` products per output)."""
        parts_b, b0 = split
        a0 = act_a0(xq)
        colsum = sum(d * part.astype(np.int64).sum(axis=0) for d, part in parts_b)
        return np.asarray(bias - a0 * colsum + k * a0 * b0, dtype=np.int64)

    @staticmethod
    def weight_split(wc: np.ndarray, groups: int) -> tuple[list[tuple[int, np.ndarray]], np.ndarray]:
        """Per group: [k, cout_g] weights as int8 planes (:func:`int8_split`, groups side by side); b0
        per output channel."""
        kh, kw, cin_g, cout = wc.shape
        cout_g, k = cout // groups, kh * kw * cin_g
        mats = [wc[..., gi * cout_g:(gi + 1) * cout_g].reshape(k, cout_g) for gi in range(groups)]
        return int8_split(np.concatenate(mats, axis=1) if groups > 1 else mats[0])

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
        if self.f32_rows is not None:
            return [self._chunked(a)]
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

    def _plane_sum(self, prods: list[torch.Tensor], rows: torch.Tensor | None, pa: int) -> torch.Tensor:
        """``sum((plane pa) * w)`` of the activations' plane ``pa`` over the weight planes (``rows``: the im2col
        rows' sums where the weights carry a per-channel shift ``b0``)."""
        m = self.m
        if len(prods) == 1 and self.wcoefs[0] == 1 and rows is None:
            return prods[0][pa * m:(pa + 1) * m]
        acc = torch.zeros(prods[0][:m].shape, dtype=torch.int64, device=prods[0].device)
        for d, p in zip(self.wcoefs, prods):
            acc += p[pa * m:(pa + 1) * m].to(torch.int64) * d
        if rows is not None:
            acc -= rows[pa * m:(pa + 1) * m].to(torch.int64) * self.b0_t
        return acc

    def _chunked(self, a: torch.Tensor) -> torch.Tensor:
        """float32 GEMMs over chunks of the reduction (each exact), added as int32: [rows, cout]."""
        assert self.f32_rows is not None
        groups = self.geo[7]
        rows, cg = a.shape[-2], self.cout_g
        acc = scratch("acc0", (rows, cg * groups), torch.int32, a.device)
        part = scratch("f32part", (rows, cg), torch.float32, a.device)
        mats = iter(self.b_t[0])
        for c, (r0, r1) in enumerate(self.f32_rows):
            for gi in range(groups):
                x = (a if a.dim() == 2 else a[gi])[:, r0:r1]
                dst = acc[:, gi * cg:(gi + 1) * cg]
                if c == 0:
                    dst.copy_(torch.mm(x, next(mats).t(), out=part))
                else:
                    dst.add_(torch.mm(x, next(mats).t(), out=part).to(torch.int32))
        return acc

    def run(self, p: torch.Tensor) -> torch.Tensor:
        n, oh, ow = self.geo[:3]
        if self.mode == "float32":  # the im2col in float32 straight from the int8 input (a reused buffer)
            p = scratch("p32", p.shape, torch.float32, p.device).copy_(p)
        a = self.cols(p)
        m = self.m
        prods = self.products(a)
        if self.use_row:  # row sums of the im2col rows, per output channel (its group's rows)
            rows = a.sum(dim=-1, dtype=torch.int32 if a.dtype == torch.int8 else torch.float64)
            rows = rows.t().repeat_interleave(self.cout_g, dim=1) if a.dim() == 3 else rows.unsqueeze(1)
            if self.mode != "int8":
                rows = rows.to(torch.float64)
        if self.conv16:  # (per image: the constants may be per output position)
            out = self.requant(*(self._plane_sum(prods, rows if self.use_row else None, pa).reshape(n, oh * ow, -1)
                                 for pa in (0, 1)))
        elif self.combine:
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
