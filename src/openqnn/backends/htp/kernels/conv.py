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

- on CPUs with AVX-512 VNNI or AVX2, 8-bit unpadded 1x1 and depthwise convolutions with int8 weights run as
  native/int8.c's kernels with the requantization fused (:func:`_fused_int8`);
- on the CPU, other 8-bit convolutions with a spatial kernel (and depthwise ones without those
  kernels) with int8 weights run as oneDNN's int8 convolution returning the accumulator in float32 (:func:`_int8_conv`): exact
  while every sum stays below 2^24 (:func:`qconv_bound`, per channel at build time; otherwise the
  input channels are split into parts that do, summed in int32), where that is exact (with VNNI);
  else (AVX2) as a uint8 im2col (padding holding the zero point) times native/int8.c's GEMM
  (:func:`_im2col_native`);
- otherwise the products run as int8 GEMMs with int32 results (gemm.py's :class:`ConvCore`: int8 planes of
  the activations and weights, zero-point corrections folded into one per-channel constant,
  ``torch._int_mm`` per group) on an im2col of the input padded with the zero point;
  TransposeConv2d is the stride-1 convolution of the zero-point-stuffed input with the flipped
  kernel; asymmetric weights that do not fit int8 add a row-sum correction;
- depthwise convolutions and inputs of at most 4 channels (with at most 64 taps per output) run
  as a float convolution (oneDNN, weights reordered once) of ``q - zx`` (8-bit inputs on oneDNN:
  of ``q`` padded with ``zx``, ``zx * sum(w)`` folded into the bias): exact, every partial sum an
  integer below 2^24 (checked per channel at build time; float64 otherwise);
- the requantization is requant.py's :class:`Requant`: one floor of an affine function evaluated
  in float64 where every value is an exact dyadic fraction (checked with integers at build time),
  with an int64 fallback; in one C pass where the native helpers are built (native/). Large intermediates live in per-thread scratch buffers (scratch.py).

On other devices than the CPU, the GEMMs run in float64 (exact below 2^53) instead of int8.

Under QNN's W8A16 requantization (v73, 16-bit input and output codes, int8 weights: requant.py's
``QnnConv16Requant``, spec/qnn_conv16.py) the output is not a function of ``acc``: the input codes' high and low
bytes' sums enter apart (the low one floored to units of 256), so the reference convolves each byte plane and the
fast kinds (the float convolution, the int8 GEMM core) hand both planes' sums to the requantization; a transposed
convolution's zero point share counts the taps of the output's phase (:func:`tconv_tap_sums`).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from openqnn.backends.htp import native
from openqnn.backends.htp.kernels.gemm import (
    ConvCore,
    FusedSetup,
    act_planes,
    act_qparams,
    drop_derivable_plane,
    fast_int8,
    fused_gemm,
    gemm_mode,
    int8_kinds,
    lazy_int64,
    machine_mode,
    narrowest,
    op_bias,
    packing_for_plan,
    qconv_bound,
    qparams_attrs,
    qparams_of,
    reference16,
    split_arrays,
    split_bounds,
    split_of,
    static_operand,
    stored_packing,
    with_derived_plane,
)
from openqnn.backends.htp.kernels.registry import (
    BACKGROUND_BYTES,
    HtpBuildContext,
    HtpStep,
    QParams,
    Unsupported,
    bind_step,
    deferred,
    htp_binder,
    htp_kernel,
    plan_tensor,
)
from openqnn.backends.htp.kernels.requant import QnnConv16Requant, Requant, requant_for
from openqnn.backends.htp.kernels.scratch import output_slot, scratch, step_output
from openqnn.backends.plan import StepPlan
from openqnn.errors import InvalidModelError
from openqnn.ir.graph import Node

Bound = tuple[Callable[..., Any], Callable[..., Any]]

__all__ = ["conv2d", "transpose_conv2d"]


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

    _FIELDS = ("n", "h", "w", "c", "kh", "kw", "sh", "sw", "dh", "dw", "pt", "pb", "pl", "pr", "oh", "ow", "cout")

    def to_attrs(self) -> dict[str, int]:
        return {f: int(getattr(self, f)) for f in self._FIELDS}

    @staticmethod
    def of(attrs: Mapping[str, Any]) -> _Geo:
        g = _Geo.__new__(_Geo)
        for f in _Geo._FIELDS:
            setattr(g, f, int(attrs[f]))
        return g


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



def tconv_tap_sums(wc: np.ndarray, g: _Geo, groups: int) -> np.ndarray:
    """Per output position and channel [oh, ow, cout]: the sum of the transposed convolution's weights whose taps
    fall on the input's lattice (``i * stride``), inside the input or not (QNN's W8A16 zero point share counts
    those: its taps by the output's phase, the input padded with the zero point; probed, docs/htp-fidelity.md).
    Tap ``(i, j)`` reaches output row ``o`` from the lattice where ``(o + pad_top - i * dilation) % stride == 0``
    (and likewise for columns), so the sums are periodic in the stride."""
    kh, kw, cin, cout_g = wc.shape
    taps = wc.astype(np.int64).reshape(kh, kw, groups, cin // groups, cout_g).sum(axis=3).reshape(kh, kw, -1)
    rows = ((np.arange(g.oh)[:, None] + g.pt - np.arange(kh)[None, :] * g.dh) % g.sh == 0).astype(np.int64)
    cols = ((np.arange(g.ow)[:, None] + g.pl - np.arange(kw)[None, :] * g.dw) % g.sw == 0).astype(np.int64)
    return np.einsum("oi,qj,ijc->oqc", rows, cols, taps)


# -- convolutions: the fast path ------------------------------------------------------------------

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


def _float_conv(device: torch.device, g: _Geo, xq: QParams, wc: np.ndarray, rq: Requant, bias: np.ndarray,
                groups: int, f32: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """A float convolution of ``q - zx`` (so the convolution's own zero padding is the zero point),
    exact since all partial sums are integers below 2^24 (float32, oneDNN with weights reordered
    once) or 2^53 (float64). Used for depthwise convolutions and tiny input depths, where im2col
    GEMMs do poorly. 16-bit inputs run as two 8-bit planes (``q - zx = 256 * (hi - zhi) + (lo -
    zlo)``) in one call. ``f32``: int8 mode and :func:`_float32_exact` (decided at prepare)."""
    cout = wc.shape[-1]
    zx = int(xq.zero_point[0])
    absw = np.abs(wc.astype(np.float64)).reshape(-1, cout).sum(axis=0)
    mkl = f32 and _mkldnn_ok(device)
    dtype = torch.float32 if mkl else torch.float64
    weight = torch.from_numpy(np.ascontiguousarray(wc.transpose(3, 2, 0, 1),
                                                   dtype=np.float32 if dtype == torch.float32 else np.float64)).to(device)
    planes = 1 if xq.bitwidth == 8 else 2
    coefs = [1] if planes == 1 else [256, 1]
    # 8-bit input on oneDNN: convolve x itself, padded with zx (no subtraction pass): every tap of
    # x - zx is then the same minus zx, so conv(x) = conv(x - zx) + zx * sum(w), folded into the bias
    raw = mkl and planes == 1
    if isinstance(rq, QnnConv16Requant):  # the planes' sums apart (of the bytes less the zero point's)
        w_sum = wc.astype(np.int64).reshape(-1, cout).sum(axis=0)
        run_rq = rq.planes_fast(w_sum, bias, zx, (zx >> 8) * w_sum, (zx & 255) * w_sum)
    elif raw:
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


_QCONV_EXACT: bool | None = None


def _qconv_exact() -> bool:
    """Whether this machine's oneDNN int8 convolution gives exact sums where pairs of uint8 x int8
    products overflow int16 (CPUs without VNNI may saturate there): checked once on extreme codes."""
    global _QCONV_EXACT
    if _QCONV_EXACT is None:
        try:
            c, zx = 64, 3
            x = torch.full((1, c, 3, 3), 255, dtype=torch.uint8).contiguous(memory_format=torch.channels_last)
            x[0, ::3, 1, 1] = 0
            w = torch.full((4, c, 3, 3), 127, dtype=torch.int8)
            w[1] = -128
            w[2, ::2] = -128
            ones, zeros = torch.ones(4), torch.zeros(4, dtype=torch.int64)
            packed = torch.ops.onednn.qconv_prepack(w, ones, 1.0, zx, [1, 1], [1, 1], [1, 1], 1, [1, c, 3, 3])
            y = torch.ops.onednn.qconv2d_pointwise(x, 1.0, zx, packed, ones, zeros, None, [1, 1], [1, 1], [1, 1],
                                                   1, 1.0, 0, torch.float32, "none", [], "")
            want = F.conv2d(x.to(torch.float64) - zx, w.to(torch.float64), padding=1)
            _QCONV_EXACT = bool(torch.equal(y.to(torch.float64), want))
        except (RuntimeError, AttributeError, NotImplementedError):
            _QCONV_EXACT = False
    return _QCONV_EXACT


def _onednn_qconv_ok(device: torch.device) -> bool:
    return (device.type == "cpu" and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.onednn, "qconv2d_pointwise") and hasattr(torch.ops.onednn, "qconv_prepack")
            and _qconv_exact())


def channel_parts(wc: np.ndarray, zx: int, groups: int) -> list[tuple[int, int, np.ndarray]] | None:
    """The fewest equal-ish parts [a, b) of the input channels (axis 2 of ``wc``) whose float32
    accumulators are exact (:func:`qconv_bound` below 2^24), with each part's bound; None where even
    one channel per part is not, or a grouped convolution would need splitting."""
    cin = wc.shape[2]
    splits = 1
    while True:
        edges = [0, *np.cumsum([p.shape[2] for p in np.array_split(wc, splits, axis=2)]).tolist()]
        parts = [(a, b, qconv_bound(wc[:, :, a:b], zx)) for a, b in itertools.pairwise(edges)]
        if max(float(bound.max()) for _, _, bound in parts) < float(1 << 24):
            return parts
        splits *= 2
        if groups != 1 or splits > cin:
            return None


def _int8_parts(xq: QParams, wc: np.ndarray, rq: Requant, groups: int) -> list[tuple[int, int, np.ndarray]] | None:
    """The model's side of :func:`_int8_conv`: its parts of the input channels (:func:`channel_parts`),
    None where it cannot apply whatever the machine."""
    if xq.bitwidth != 8 or rq.wide or wc.size == 0 or wc.min() < -128 or wc.max() > 127:
        return None
    return channel_parts(wc, int(xq.zero_point[0]), groups)


def _int8_conv(device: torch.device, g: _Geo, xq: QParams, rq: Requant, bias: np.ndarray, groups: int,
               parts: list[tuple[int, int, np.ndarray]], weights: list[np.ndarray]
               ) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """oneDNN's int8 convolution (uint8 activations with their zero point, int8 weights, int32
    accumulation) returning the accumulator in float32, then the requantization; None where it does
    not apply. Exact: the int32 sum of (q - zx) * w is converted to float32 unchanged (scales 1, no
    bias) while every |sum| stays below 2^24 (checked per channel at build time, also for the raw
    sum of q * w). Where it might not, the input channels are split into parts that each stay below
    it, and the parts' float32 accumulators are summed in int32. Padding taps hold the zero point
    (oneDNN pads the real zero). ``parts``: :func:`_int8_parts`, made at prepare; ``weights``: each part's
    [cout, cin_part, kh, kw]."""
    if not _onednn_qconv_ok(device):
        return None
    zx = int(xq.zero_point[0])
    n, c, cout = g.n, g.c, g.cout
    symmetric = g.pt == g.pb and g.pl == g.pr
    hp, wp = (g.h, g.w) if symmetric else (g.h + g.pt + g.pb, g.w + g.pl + g.pr)
    pad = [g.pt, g.pl] if symmetric else [0, 0]
    stride, dilation = [g.sh, g.sw], [g.dh, g.dw]
    ones = torch.ones(cout, dtype=torch.float32)
    zeros = torch.zeros(cout, dtype=torch.int64)
    packed = []  # per part, a cell holding oneDNN's packed weights (filled in the background from a context)
    for (a, b, _), w in zip(parts, weights):
        weight = plan_tensor(np.asarray(w, dtype=np.int8))  # the layout oneDNN wants: the stored one
        args = (weight, ones, 1.0, zx, stride, pad, dilation, groups, [n, (b - a) * groups, hp, wp])
        try:  # large weights in the background when opening a context (small: a handoff costs more)
            packed.append(deferred("oneDNN int8 convolution weights", torch.ops.onednn.qconv_prepack, *args)
                          if weight.numel() >= BACKGROUND_BYTES else [torch.ops.onednn.qconv_prepack(*args)])
        except RuntimeError:
            return None
    qconv = torch.ops.onednn.qconv2d_pointwise.default
    top, left = g.pt, g.pl

    def acc_of(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return qconv(x.permute(0, 3, 1, 2), 1.0, zx, w, ones, zeros, None, stride, pad, dilation, groups,
                     1.0, 0, torch.float32, "none", [], "").permute(0, 2, 3, 1)

    if len(parts) == 1:
        run_rq = rq.fast(bias, [(1, parts[0][2])], torch.float32)
        w0 = packed[0]

        def conv(x: torch.Tensor) -> torch.Tensor:
            return run_rq(acc_of(x, w0[0]))
    else:
        run_rq = rq.fast(bias, [(1, np.sum([bound for _, _, bound in parts], axis=0))], torch.int32)
        slices = [(a, b, w) for (a, b, _), w in zip(parts, packed)]

        def conv(x: torch.Tensor) -> torch.Tensor:
            acc = None
            for a, b, w in slices:
                part = acc_of(x[..., a:b].contiguous(), w[0])
                acc = part.to(torch.int32) if acc is None else acc.add_(part.to(torch.int32))
            assert acc is not None
            return run_rq(acc)

    if symmetric:
        return conv

    def conv_padded(x: torch.Tensor) -> torch.Tensor:
        p = scratch("qpad", (n, hp, wp, c), torch.uint8, x.device).fill_(zx)
        p[:, top:top + g.h, left:left + g.w].copy_(x)
        return conv(p)

    return conv_padded


def _fused_shape(g: _Geo, wc: np.ndarray, groups: int) -> str | None:
    """Which of native/int8.c's kernels a convolution's shape takes: ``gemm`` (unpadded 1x1),
    ``depthwise``, or None."""
    if g.kh == g.kw == 1 and not (g.pt or g.pb or g.pl or g.pr) and groups == 1:
        return "gemm"
    return "depthwise" if wc.shape[2] == 1 and groups == g.c == wc.shape[-1] else None


def _fused_matrix(g: _Geo, wc: np.ndarray, groups: int) -> np.ndarray:
    return wc.reshape(g.c, wc.shape[-1]) if _fused_shape(g, wc, groups) == "gemm" else wc


def _fused_int8(device: torch.device, g: _Geo, xq: QParams, wc: np.ndarray, groups: int, fs: FusedSetup | None,
                packed: np.ndarray | None = None) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """native/int8.c's kernels (AVX-512 VNNI or AVX2): an unpadded 1x1 convolution as one GEMM (gemm.py's
    :func:`fused_gemm`; strided: of the pixels it visits), a depthwise convolution directly, each with the requantization
    fused; None where they do not apply. The int32 accumulator is ``-zx * sum(w) + sum(q * w)``,
    the spec's sum of (q - zx) * w, exact since its final value fits int32 (:func:`qconv_bound`);
    the bias joins the requantization's constants. Taps outside the input read the zero point.
    ``fs``: the kernels' setup (:meth:`FusedSetup.for_plan`), None where this machine has none; ``packed``: the
    GEMM's weights as its plan keeps them packed (:func:`stored_packing`)."""
    cout = wc.shape[-1]
    shape = _fused_shape(g, wc, groups)
    if shape is None or fs is None:
        return None
    if shape == "gemm":
        gemm = fused_gemm(device, xq, wc.reshape(g.c, cout), None, None, fs, packed)
        if gemm is None or (g.sh, g.sw) == (1, 1):
            return gemm
        # strided: the GEMM of the pixels the kernel visits, gathered into a scratch buffer first
        sh, sw, sub_shape = g.sh, g.sw, (g.n, g.oh, g.ow, g.c)

        def run_strided(x: torch.Tensor) -> torch.Tensor:
            return gemm(scratch("conv1x1_pixels", sub_shape, x.dtype, x.device).copy_(x[:, ::sh, ::sw, :]))

        return run_strided
    geo = (g.n, g.h, g.w, g.c, g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, g.pt, g.pl, g.oh, g.ow, int(xq.zero_point[0]))
    dw = [native.Int8Depthwise(fs.lib, plan_tensor(wc.reshape(g.kh, g.kw, cout), "cpu", torch.int8), fs.init, fs.form,
                               geo)]  # (depthwise weights are small: packed at once)
    slot, out_shape, dtype = output_slot("dw"), (g.n, g.oh, g.ow, cout), fs.form.out_dtype

    def run_dw(x: torch.Tensor) -> torch.Tensor:
        return dw[0].run(x.contiguous(), step_output(slot, out_shape, dtype, device))

    return run_dw


def _im2col_native(device: torch.device, g: _Geo, xq: QParams, wc: np.ndarray, fs: FusedSetup | None,
                   packed: np.ndarray | None = None) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """A convolution (one group) as native/int8.c's GEMM, requantization fused, of its uint8 im2col rows
    ``[n * oh * ow, kh * kw * c]`` (NHWC taps, padding taps holding the zero point, so the accumulator
    ``-zx * sum(w) + sum(q * w)`` is the spec's); None where the kernels are not here. For CPUs whose
    oneDNN int8 convolution is not exact (AVX2 without VNNI): the GEMM's vpmaddwd never saturates.
    ``fs``: the kernels' setup (:meth:`FusedSetup.for_plan`), None where this machine has none; ``packed``: as
    :func:`_fused_int8`'s."""
    if fs is None:
        return None
    k = g.kh * g.kw * g.c
    gemm = fused_gemm(device, xq, wc.reshape(k, g.cout), None, None, fs, packed)
    if gemm is None:
        return None
    n, oh, ow = g.n, g.oh, g.ow
    im2col = native.Im2col((n, g.h, g.w, g.c, g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, g.pt, g.pl, oh, ow),
                           int(xq.zero_point[0]))

    def run(x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()  # (a step's 8-bit codes: uint8, the plan's shape, on the CPU, as the C im2col takes)
        return gemm(im2col.run(x, scratch("im2col_rows", (n, oh, ow, k), torch.uint8, x.device)))

    return run


def _requant_np(rq: Requant, acc: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return rq.reference(acc + bias)


def _x_np(x: np.ndarray, xq: QParams) -> np.ndarray:
    return np.asarray(x, dtype=np.int64) - int(xq.zero_point[0])


def _conv_common(node: Node, ctx: HtpBuildContext) -> tuple[QParams, QParams, np.ndarray, np.ndarray, int]:
    xq = act_qparams(ctx, node.inputs[0], "input")
    oq = act_qparams(ctx, node.outputs[0], "output")
    wc, w_scale, w_bits = static_operand(ctx, node.inputs[1], 3)
    return xq, oq, wc, w_scale, w_bits


def _conv_plan_attrs(node: Node, g: _Geo, groups: int, xq: QParams, rq: Requant, mode: str) -> dict[str, Any]:
    return {"geo": g.to_attrs(), "groups": groups, "x": qparams_attrs(xq), "rq": rq.to_attrs(), "mode": mode}


@htp_kernel("Conv2d", "DepthWiseConv2d")
def conv2d(node: Node, ctx: HtpBuildContext) -> HtpStep:
    return build_conv2d(node, ctx)


def build_conv2d(node: Node, ctx: HtpBuildContext, mode: str | None = None) -> HtpStep:
    """Conv2d / DepthWiseConv2d with static weights; ``mode`` forces the GEMM kind (tests).

    The plan's ``kinds`` are the fast kernels that apply to the model, in order of preference, the
    first the one this machine runs (``fused``: native/int8.c; ``im2col_native``: a uint8 im2col times
    native/int8.c's GEMM; ``int8_conv``: oneDNN's int8 convolution; ``float_conv``; ``core``:
    the im2col int8 GEMM in PyTorch); a machine without the first's library binds the next (the same bits)."""
    int8 = int8_kinds(mode, ctx)
    mode = mode or gemm_mode(ctx)
    g = _Geo(node, ctx)
    depthwise = node.op_type == "DepthWiseConv2d"
    groups = g.c if depthwise else int(node.attrs["group"])
    xq, oq, wc, w_scale, w_bits = _conv_common(node, ctx)
    # QNN requantizes a strided depthwise convolution its own way (a 15-bit multiplier: docs/htp-fidelity.md)
    rq = requant_for(ctx, xq, oq, w_scale, g.cout, w_bits,
                     qnn_kernel="dw_strided" if depthwise and (g.sh, g.sw) != (1, 1) else "conv")
    if depthwise:
        if wc.shape[2] != 1:
            raise Unsupported("DepthWiseConv2d filter must be [kh, kw, 1, cout]")
    b_name = node.inputs[2] if len(node.inputs) > 2 else ""
    bias = op_bias(ctx, b_name, float(xq.scale[0]), w_scale, g.cout, rq)
    attrs = _conv_plan_attrs(node, g, groups, xq, rq, mode)
    # stored [cout, cin, kh, kw], the layout oneDNN's convolutions take: binding copies it, no transpose
    arrays: dict[str, np.ndarray] = {"w_oihw": np.ascontiguousarray(narrowest(wc).transpose(3, 2, 0, 1)), "bias": bias}
    kinds: list[str] = []  # the fast kernels that apply to the model, in order of preference
    fused_data: dict[str, np.ndarray] = {}  # FusedSetup.data of the "fused" or "im2col_native" kind
    if int8 and _fused_shape(g, wc, groups) is not None:
        data = FusedSetup.data(xq, _fused_matrix(g, wc, groups), rq)
        if data is not None:
            kinds.append("fused")
            fused_data = data
    cin_g = wc.shape[2]
    # 1x1 stride-1 convolutions are plain GEMMs: torch._int_mm has less per-call overhead than oneDNN's
    pointwise = g.kh == g.kw == 1 and (g.sh, g.sw) == (1, 1) and not (g.pt or g.pb or g.pl or g.pr) and groups == 1
    # the uint8 im2col rows (int8.c's im2col_u8) times the native GEMM: ahead of oneDNN's int8 convolution, which
    # is not exact without VNNI and with it measured slower (ResNet-18's 3x3 convolutions ~10%, MobileNetV2's
    # 3x3x3 stem 0.45 -> 0.33 ms on Zen 4)
    im2col = int8 and groups == 1 and _fused_shape(g, wc, groups) is None
    if im2col and (data := FusedSetup.data(xq, wc, rq)) is not None:
        kinds.append("im2col_native")
        fused_data = data
    arrays.update({f"fused_{key}": v for key, v in fused_data.items()})
    if fused_data:
        attrs["fused_form"] = FusedSetup.key(rq, bias, fused_data)
    parts = _int8_parts(xq, wc, rq, groups) if int8 and not pointwise else None
    if parts is not None:
        kinds.append("int8_conv")
        attrs["parts"] = [[a, b] for a, b, _ in parts]
        arrays.update({f"part_bound{i}": bound for i, (_, _, bound) in enumerate(parts)})
    # tiny input depths: a float convolution beats the int8 GEMM while the im2col rows stay short
    # (3x3x3: 0.32 vs 0.53 ms); with long ones (7x7x3) the GEMM wins (1.0 vs 1.27 ms)
    tiny = g.c <= 4 and g.kh * g.kw * g.c <= 64
    # every partial sum below 2^24: oneDNN's float32 convolution is exact (any machine: the kind a CPU without
    # fast int8 products runs)
    attrs["f32"] = f32 = _float32_exact(wc)
    dw_shape = cin_g == 1 and groups == g.c
    if dw_shape or f32:
        kinds.append("float_conv")
    if not dw_shape:  # (a depthwise float convolution runs on any machine, in float64 where it must)
        kinds.append("core")
        split = ConvCore.weight_split(wc, groups)
        attrs["wcoefs"], split_data = split_arrays(split)
        drop_derivable_plane(split_data, attrs["wcoefs"], arrays["w_oihw"])
        arrays.update(split_data, core_off=ConvCore.folded_offset(split, bias, xq, g.kh * g.kw * cin_g))
    # this machine's choice: the first whose library is here (the binder falls back along ``kinds``)
    # (the fused kinds' data was made above: here only the machine is asked)
    here = {"fused": lambda: FusedSetup.bind(ctx.device, rq, bias, fused_data) is not None,
            "int8_conv": lambda: _onednn_qconv_ok(ctx.device),
            "im2col_native": lambda: FusedSetup.bind(ctx.device, rq, bias, fused_data) is not None,
            "float_conv": lambda: dw_shape or (_mkldnn_ok(ctx.device) and (tiny or not fast_int8(ctx.device))),
            "core": lambda: True}
    attrs["kind"] = next(k for k in kinds if here[k]())
    attrs["kinds"] = kinds
    if attrs["kind"] == "im2col_native" or (attrs["kind"] == "fused" and _fused_shape(g, wc, groups) == "gemm"):
        packing, packed = packing_for_plan(wc.reshape(-1, wc.shape[-1]))  # the GEMM's [kh * kw * cin, cout]
        attrs.update(packing)
        arrays.update(packed)
    if parts is not None and len(parts) > 1:
        # split input channels: each part's [cout, cin_part, kh, kw] stored contiguous, one after another, so
        # oneDNN's packing reads each as it is (the whole weight is put together only where a kind needs it)
        w_oihw = arrays.pop("w_oihw")
        arrays["w_parts"] = np.concatenate([np.ascontiguousarray(w_oihw[:, p0:p1]).reshape(-1) for p0, p1, _ in parts])
    plan = StepPlan("htp.conv2d", node.name, node.op_type, (node.inputs[0],), tuple(node.outputs), attrs, arrays)
    return bind_step(plan, ctx.device)


@htp_binder("htp.conv2d")
def _bind_conv2d(plan: StepPlan, device: torch.device) -> Bound:
    a, arrays = plan.attrs, plan.arrays
    g, groups = _Geo.of(a["geo"]), int(a["groups"])
    xq = qparams_of(a["x"])
    # made on first use: the fused kinds bind the C form the plan keeps
    requant = functools.cache(lambda: Requant.from_attrs(a["rq"], device))
    part_ws = _part_weights(arrays, a, g)

    @functools.cache
    def whole() -> np.ndarray:
        """[kh, kw, cin, cout] (a view of the stored [cout, cin, kh, kw], or the parts put together), in the
        narrowest integer dtype holding the weights; the fast kernels read it as is."""
        w = arrays["w_oihw"] if part_ws is None else np.concatenate(part_ws, axis=1)
        return w.transpose(2, 3, 1, 0)

    wc64 = functools.cache(lambda: np.asarray(whole(), dtype=np.int64))
    bias = np.asarray(arrays["bias"], dtype=np.int64)

    def reference(x: np.ndarray) -> np.ndarray:
        rq = requant()
        if isinstance(rq, QnnConv16Requant):
            wc = wc64()
            return reference16(rq, x, xq, lambda xc: conv_acc_np(xc, wc, g, groups),
                               wc.reshape(-1, wc.shape[-1]).sum(axis=0), bias)
        return _requant_np(rq, conv_acc_np(_x_np(x, xq), wc64(), g, groups), bias)

    mode = machine_mode(a["mode"], device)
    kinds = list(a["kinds"])
    fast: Callable[[torch.Tensor], torch.Tensor] | None = None
    for kind in kinds[kinds.index(a["kind"]):]:  # the prepared choice, else the next this machine runs
        if kind == "fused":
            fast = _fused_int8(device, g, xq, whole(), groups, FusedSetup.for_plan(device, a, arrays, requant, bias),
                               stored_packing(a, arrays))
        elif kind == "im2col_native":
            fast = _im2col_native(device, g, xq, whole(), FusedSetup.for_plan(device, a, arrays, requant, bias),
                                  stored_packing(a, arrays))
        elif kind == "int8_conv":
            rq = requant()
            parts = [(int(p0), int(p1), np.asarray(arrays[f"part_bound{i}"])) for i, (p0, p1) in enumerate(a["parts"])]
            weights = part_ws or [np.ascontiguousarray(whole()[:, :, p0:p1].transpose(3, 2, 0, 1)) for p0, p1, _ in parts]
            fast = _int8_conv(device, g, xq, rq, bias, groups, parts, weights)
        elif kind == "float_conv" and ((whole().shape[2] == 1 and groups == g.c) or (a["f32"] and _mkldnn_ok(device))):
            fast = _float_conv(device, g, xq, whole(), requant(), bias, groups, bool(a["f32"]))
        elif kind == "core":
            cols = with_derived_plane(arrays, lambda: whole().reshape(-1, g.cout))
            fast = _core_conv(device, g, xq, whole(), requant(), bias, groups, mode, split_of(a["wcoefs"], cols),
                              np.asarray(arrays["core_off"], dtype=np.int64), split_bounds(a["wcoefs"], arrays))
        if fast is not None:
            return reference, fast
    raise InvalidModelError(f"node '{plan.node}': no fast kernel of {kinds} runs on this machine")


def _part_weights(arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any], g: _Geo) -> list[np.ndarray] | None:
    """Each input-channel part's [cout, cin_part, kh, kw], views of ``w_parts`` (None: one whole ``w_oihw``)."""
    if "w_parts" not in arrays:
        return None
    flat, out, at = arrays["w_parts"], [], 0
    for p0, p1 in attrs["parts"]:
        size = g.cout * (int(p1) - int(p0)) * g.kh * g.kw
        out.append(flat[at:at + size].reshape(g.cout, int(p1) - int(p0), g.kh, g.kw))
        at += size
    return out


def _core_conv(device: torch.device, g: _Geo, xq: QParams, wc: np.ndarray, rq: Requant, bias: np.ndarray,
               groups: int, mode: str, split: tuple[list[tuple[int, np.ndarray]], np.ndarray], off: np.ndarray,
               bounds: list[np.ndarray]) -> Callable[[torch.Tensor], torch.Tensor]:
    hp, wp = g.h + g.pt + g.pb, g.w + g.pl + g.pr
    core = ConvCore(wc, xq, rq, bias, g.n, hp, wp, g.oh, g.ow, (g.sh, g.sw), (g.dh, g.dw), groups, mode, device,
                    split, off, bounds)
    prep = _pad_planes_fn(xq, g.n, g.h, g.w, g.c, hp, wp, (0, g.h, g.pt, 1), (0, g.w, g.pl, 1), device)
    core_run = core.run

    def fast(x: torch.Tensor) -> torch.Tensor:
        return core_run(prep(x))

    return fast


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
    bias = op_bias(ctx, b_name, float(xq.scale[0]), w_scale_out, g.cout, rq)
    # conv weights [kh, kw, cin/g, cout]: W2[i, j, ci, gi * cout_g + co] = w[kh-1-i, kw-1-j, gi * cin_g + ci, co]
    wf = wc[::-1, ::-1].reshape(kh, kw, groups, cin_g, cout_g).transpose(0, 1, 3, 2, 4).reshape(kh, kw, cin_g, -1)
    hp, wp = g.oh + g.dh * (kh - 1), g.ow + g.dw * (kw - 1)

    def placement(size: int, stride: int, top: int, span: int) -> tuple[int, int, int, int]:
        """Input indices i0:i1 whose stuffed position i * stride + top falls in [0, span)."""
        i0 = 0 if top >= 0 else (-top + stride - 1) // stride
        i1 = min(size, (span - 1 - top) // stride + 1) if span - 1 - top >= 0 else 0
        return i0, max(i0, i1), i0 * stride + top, stride

    attrs = _conv_plan_attrs(node, g, groups, xq, rq, mode)
    split = ConvCore.weight_split(np.ascontiguousarray(wf), groups)
    attrs["wcoefs"], split_data = split_arrays(split)
    attrs.update(hp=hp, wp=wp, wf_shape=list(wf.shape), rows=list(placement(g.h, g.sh, g.dh * (kh - 1) - g.pt, hp)),
                 cols=list(placement(g.w, g.sw, g.dw * (kw - 1) - g.pl, wp)))
    plan = StepPlan("htp.transpose_conv2d", node.name, node.op_type, (node.inputs[0],), tuple(node.outputs), attrs,
                    {"w": narrowest(wc), "bias": bias, **split_data,
                     "core_off": ConvCore.folded_offset(split, bias, xq, kh * kw * cin_g)})
    return bind_step(plan, ctx.device)


@htp_binder("htp.transpose_conv2d")
def _bind_transpose_conv2d(plan: StepPlan, device: torch.device) -> Bound:
    a, arrays = plan.attrs, plan.arrays
    g, groups = _Geo.of(a["geo"]), int(a["groups"])
    xq, rq = qparams_of(a["x"]), Requant.from_attrs(a["rq"], device)
    wc64 = lazy_int64(arrays["w"])  # the reference's only: the fast path reads the split planes
    bias = np.asarray(arrays["bias"], dtype=np.int64)

    # QNN's W8A16 requantization: the zero point's share counts the taps of the output's phase
    phase_w = functools.cache(lambda: tconv_tap_sums(wc64(), g, groups))

    def reference(x: np.ndarray) -> np.ndarray:
        if isinstance(rq, QnnConv16Requant):
            wc = wc64()
            return reference16(rq, x, xq, lambda xc: tconv_acc_np(xc, wc, g, groups), phase_w(), bias)
        return _requant_np(rq, tconv_acc_np(_x_np(x, xq), wc64(), g, groups), bias)

    hp, wp = int(a["hp"]), int(a["wp"])
    rows, cols = tuple(int(v) for v in a["rows"]), tuple(int(v) for v in a["cols"])
    wf_shape = np.broadcast_to(np.int64(0), tuple(a["wf_shape"]))  # (the core reads the shape; weights: split)
    core = ConvCore(wf_shape, xq, rq, bias, g.n, hp, wp, g.oh, g.ow, (1, 1), (g.dh, g.dw), groups,
                    machine_mode(a["mode"], device), device, split_of(a["wcoefs"], arrays),
                    np.asarray(arrays["core_off"], dtype=np.int64), split_bounds(a["wcoefs"], arrays),
                    phase_w().reshape(g.oh * g.ow, g.cout) if isinstance(rq, QnnConv16Requant) else None)
    prep = _pad_planes_fn(xq, g.n, g.h, g.w, g.c, hp, wp, rows, cols, device)  # type: ignore[arg-type]
    core_run = core.run

    def fast(x: torch.Tensor) -> torch.Tensor:
        return core_run(prep(x))

    return reference, fast
