"""QNN's HTP requantization of an int32 accumulator to 8-bit codes, per arch: the convolutions' (stride-1
depthwise ones too; strided depthwise ones have their own, below), TransposeConv2d's
and FullyConnected's (8-bit input codes, int8 weights), established on Qualcomm's HTP simulator
(onnxruntime-qnn 2.7.0, QNN 2.51) with ``tests/fidelity/requant_probe.py`` and held to it by
``tests/fidelity/test_qnn_requant.py`` (docs/htp-fidelity.md).

TFLite's arithmetic (``htp_config.arithmetic: "tflite"``) rounds ``acc * M + zo`` with a 31-bit multiplier.
QNN's, per output channel with the multiplier ``M = s_in * s_w / s_out`` (from the float32 scales),
``e = floor(log2 M)`` and ``s = max(0, floor(-log2 M) - 3)`` (the accumulator's low bits it drops, floor):

- **v68**: the output zero point joins the accumulator first, ``a = acc + round(zo / M)``; an 11-bit
  multiplier ``m = round(M * 2^(10 - e))``; ``code = clamp(((a >> s) * m + 2^(k-1)) >> k)``, ``k = 10 - e - s``.
  Dropping the low bits by floor biases v68 down by up to ``(2^s - 1) * M`` of a code.
- **v73**: the dropped range centred, ``a = ((acc >> s) << s) + 2^(s-1)``; a 12-bit multiplier
  ``m = round(M * 2^(11 - e))``; ``code = clamp(((a * m + 2^(k-1)) >> k) + zo)``, ``k = 11 - e``.

**Strided depthwise convolutions** (``kernel="dw_strided"``, v68 and v73 alike): the output zero point joins the
accumulator first (as v68's ``round(zo / M)``), the int32 bias is added as given, nothing is dropped, and a 15-bit
multiplier rounded to nearest, round half up: ``a = acc + round(zo / M)``, ``m = round(M * 2^(14 - e))``,
``code = clamp((a * m + 2^(k-1)) >> k)``, ``k = 14 - e``. Found layer by layer on MobileNetV2 (64x64, W8A8 per
channel, output zero points 0; ``python -m tests.fidelity.model_layers --model mobilenet``: the four stride-2
depthwise convolutions from the simulator's own input codes, v68 and v73: 78,336 of 78,336 codes, where exact
rounding gives 99.93% and v68's or v73's convolution form 96.6-98.4%; 11- to 31-bit multipliers, rounded or
floored, and the v73 float32 bias tried: only the rounded 15-bit one is exact); the zero point's place from
random stride-2 convolutions with output zero points to 255 and biases to 1e6 of both signs
(``tests/fidelity/test_qnn_requant.py``, 3 x 4,096 codes per arch: 100%; the zero point added after rounding
99.73-99.95%, exact rounding 99.83-99.90%). With 16-bit input and output codes (int8 weights) the same form on
the exact accumulator (no byte split, unlike the other W8A16 convolutions of spec/qnn_conv16.py): the fidelity
sweep's stride-2 depthwise cases, v68 = v73, per-tensor 2,560 of 2,560 codes, per-channel 2,549 of 2,560 (the
bias as given; v73's conversion of it 2,552), where exact rounding gives 65-68% and spec/qnn_conv16.py's rule
24-53%. With 16-bit codes the folded zero point is not ``round(zo / M)`` but QNN's float32 share with the 1/2
added in float32, ``floor(fl(fl(zo / M_c) + 1/2))`` (:func:`dw_strided16_pre`, ``M_c`` :func:`qnn_multiplier`;
stop 27: strided depthwise probes, 320 of 320 channels per arch; the fidelity cases 100%); the bias is still added
as given.

The bias (docs/htp-fidelity.md, "The bias"): v73 does not add the int32 bias it is given but QNN's own
conversion of it, :func:`qnn_bias` (float32 arithmetic that truncates: the accumulator is off by 0 or one step
toward zero on some channels, more with biases near 2^28 or larger). v68 rounds the same float32 value together
with the output zero point's share ``zo / M_c``, ``M_c`` QNN's float32 multiplier: the largest one times the
channel's weight-scale ratio (every one of 6,321 probed channels).

Other archs, 16-bit inputs, weights or outputs, and the other ops are not established yet: they keep
TFLite's arithmetic (``spec_for`` returns None).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["ARCHS", "BIAS_LEVELS", "QnnRequantSpec", "TensorConsts", "dw_strided16_pre", "qnn_bias", "qnn_multiplier",
           "spec_for"]

ARCHS = ("v68", "v73")


@dataclass(frozen=True)
class QnnRequantSpec:
    """One requantization's per-channel integer constants (int64 arrays of the channels)."""

    arch: str
    zero_point: int
    qmax: int
    pre: np.ndarray  # added before the shift: round(zo / M) on v68, 0 on v73
    shift: np.ndarray  # s: low bits dropped
    centre: np.ndarray  # added back after the shift: 2^(s-1) on v73 (where s > 0), 0 on v68
    mult: np.ndarray  # m
    k: np.ndarray  # the final right shift
    post: int  # added after rounding: zo on v73's convolution form, else 0
    kernel: str = "conv"  # "conv", or "dw_strided": a strided depthwise convolution's own form

    @staticmethod
    def of(arch: str, real: np.ndarray, zero_point: int, bitwidth: int = 8, kernel: str = "conv") -> QnnRequantSpec:
        pre, shift, centre, mult, k = [], [], [], [], []
        for r in np.asarray(real, dtype=np.float64).reshape(-1):
            e = math.floor(math.log2(r))
            s = 0 if kernel == "dw_strided" else max(0, math.floor(-math.log2(r)) - 3)
            shift.append(s)
            if kernel == "dw_strided":  # zo folded in, 15-bit multiplier, nothing dropped (both archs)
                pre.append(round(zero_point / r))
                centre.append(0)
                mult.append(math.floor(r * 2.0 ** (14 - e) + 0.5))
                k.append(14 - e)
            elif arch == "v68":
                pre.append(round(zero_point / r))
                centre.append(0)
                mult.append(math.floor(r * 2.0 ** (10 - e) + 0.5))
                k.append(10 - e)  # (a >> s) * m >> (10 - e - s), with the dropped bits shifted back in place
            else:
                pre.append(0)
                centre.append((1 << (s - 1)) if s > 0 else 0)
                mult.append(math.floor(r * 2.0 ** (11 - e) + 0.5))
                k.append(11 - e)
        arr = lambda v: np.asarray(v, dtype=np.int64)  # noqa: E731
        return QnnRequantSpec(arch, int(zero_point), (1 << bitwidth) - 1, arr(pre), arr(shift), arr(centre), arr(mult),
                              arr(k), _post(arch, kernel, zero_point), kernel)

    def consts(self) -> np.ndarray:
        """The per-channel constants as one int64 [5, channels] array (pre, shift, centre, mult, k): what a
        plan stores, so that binding it does no arithmetic on the multipliers."""
        return np.stack([self.pre, self.shift, self.centre, self.mult, self.k]).astype(np.int64)

    @staticmethod
    def from_consts(arch: str, consts: np.ndarray, zero_point: int, bitwidth: int = 8,
                    kernel: str = "conv") -> QnnRequantSpec:
        """The spec of :meth:`consts`' array (made by :meth:`of` at prepare)."""
        pre, shift, centre, mult, k = (np.ascontiguousarray(r, dtype=np.int64) for r in consts)
        return QnnRequantSpec(arch, int(zero_point), (1 << bitwidth) - 1, pre, shift, centre, mult, k,
                              _post(arch, kernel, zero_point), kernel)

    def apply_np(self, acc: np.ndarray) -> np.ndarray:
        """Codes of int64 accumulators ``acc`` (channels last): the reference."""
        a = np.asarray(acc, dtype=np.int64) + self.pre
        a = ((a >> self.shift) << self.shift) + self.centre
        p = a * self.mult
        code = np.where(self.k > 0, (p + (np.int64(1) << np.maximum(self.k - 1, 0))) >> np.maximum(self.k, 0),
                        p << np.maximum(-self.k, 0))
        return np.clip(code + self.post, 0, self.qmax)

    def apply_t(self, acc: torch.Tensor, c: TensorConsts) -> torch.Tensor:
        """The same on a tensor of integer accumulators (any integer or integral float dtype), as int64;
        ``c``: :meth:`TensorConsts.of` this spec."""
        a = acc.to(torch.int64) + c.pre
        a = torch.bitwise_left_shift(torch.bitwise_right_shift(a, c.shift), c.shift).add_(c.centre)
        p = a.mul_(c.mult)
        code = torch.bitwise_right_shift(p.add_(c.half), c.k) if c.positive else torch.where(
            c.kpos, torch.bitwise_right_shift(p + c.half, c.kcl), torch.bitwise_left_shift(p, c.kneg))
        return code.add_(self.post).clamp_(0, self.qmax)


def _post(arch: str, kernel: str, zero_point: int) -> int:
    """What a spec adds after rounding: the output zero point on v73's convolution form (the others fold it
    into the accumulator first)."""
    return int(zero_point) if arch == "v73" and kernel == "conv" else 0


@dataclass(frozen=True)
class TensorConsts:
    """A spec's constants as tensors on a device (made once per bound step)."""

    pre: torch.Tensor
    shift: torch.Tensor
    centre: torch.Tensor
    mult: torch.Tensor
    half: torch.Tensor
    k: torch.Tensor
    kcl: torch.Tensor
    kneg: torch.Tensor
    kpos: torch.Tensor
    positive: bool

    @staticmethod
    def of(spec: QnnRequantSpec, device: torch.device) -> TensorConsts:
        t = lambda a: torch.from_numpy(np.array(a, dtype=np.int64)).to(device)  # noqa: E731 (a writable copy)
        kcl = np.maximum(spec.k, 0)
        return TensorConsts(t(spec.pre), t(spec.shift), t(spec.centre), t(spec.mult),
                             t(np.where(spec.k > 0, np.int64(1) << np.maximum(spec.k - 1, 0), 0)), t(spec.k), t(kcl),
                             t(np.maximum(-spec.k, 0)), torch.from_numpy(np.array(spec.k > 0)).to(device), bool((spec.k > 0).all()))


def spec_for(arch: str, arithmetic: str, real: np.ndarray, zero_point: int, in_bits: int, w_bits: int,
             out_bits: int, two_activations: bool, kernel: str = "conv") -> QnnRequantSpec | None:
    """QNN's requantization where it is established (``arithmetic == "qnn"``, v68 or v73, 8-bit input codes,
    int8 weights, 8-bit outputs, a weight operand; a strided depthwise convolution's also with 16-bit input and
    output codes), else None (TFLite's arithmetic applies). ``kernel``: "conv", or "dw_strided" for a depthwise
    convolution with a stride above 1."""
    codes = (in_bits, out_bits) in ((8, 8), (16, 16)) if kernel == "dw_strided" else in_bits == out_bits == 8
    if arithmetic != "qnn" or arch not in ARCHS or not codes or w_bits != 8 or two_activations:
        return None
    if not np.all(np.asarray(real) > 0):
        return None
    return QnnRequantSpec.of(arch, real, zero_point, out_bits, kernel)


def qnn_multiplier(x_scale: float, w_scale: np.ndarray, out_scale: float, channels: int) -> np.ndarray:
    """QNN's float32 multiplier per output channel (float32 array): the tensor's largest one times the channel's
    weight-scale ratio, ``M_c = fl(fl(fl(s_x s_w_max) / s_o) * fl(s_w_c / s_w_max))`` (one weight scale:
    ``fl(fl(s_x s_w) / s_o)``), as v68's bias shares it (:func:`_v68_bias`) and the 16-bit strided depthwise
    convolution's zero point share (:func:`dw_strided16_pre`)."""
    f32 = np.float32
    w = np.broadcast_to(np.asarray(w_scale, dtype=f32).reshape(-1), (channels,))
    w_max = w.max()
    big_m = f32(f32(f32(x_scale) * w_max) / f32(out_scale))
    return (big_m * (w / w_max).astype(f32)).astype(f32)


def dw_strided16_pre(x_scale: float, w_scale: np.ndarray, out_scale: float, zero_point: int, channels: int
                     ) -> np.ndarray:
    """A strided depthwise convolution's folded output zero point with 16-bit codes (v68 and v73 alike; the
    spec's ``pre``, int64 per channel): ``floor(fl(fl(zo / M_c) + 1/2))``, the share ``zo / M_c`` in float32 with
    QNN's multiplier (:func:`qnn_multiplier`) and the 1/2 added in float32 (half to even where float32 steps are
    1, [2^23, 2^24)), where the 8-bit form has ``round(zo / M)`` exactly. Established with strided depthwise probes
    (``tests/fidelity/conv16_probe.py``'s ``strided_dw_offsets``: one tap of weight 1 per channel, consecutive
    accumulators, so each channel's offset shows exactly; docs/htp-fidelity.md, "The W8A16 bias in float32 (stop
    27)"): 320 of 320 channels on v68 and on v73 (5 probes, zero points 5,000..60,000, shares 2e6..2e8), where
    ``round(zo / M)`` gives 169 and the float32 share rounded half up in float64 277."""
    f32 = np.float32
    share = (f32(zero_point) / qnn_multiplier(x_scale, w_scale, out_scale, channels)).astype(f32)
    return np.floor((share + f32(0.5)).astype(f32).astype(np.float64)).astype(np.int64)


BIAS_LEVELS = 1 << 28
"""v73's per-channel bias: the largest |bias| of the tensor takes this many steps (:func:`qnn_bias`)."""


def qnn_bias(arch: str, bias: np.ndarray, x_scale: float, w_scale: np.ndarray, bias_scale: float | None = None,
             spec: QnnRequantSpec | None = None, real: np.ndarray | None = None) -> np.ndarray:
    """The int32 bias that QNN's HTP adds to a convolution's (or FullyConnected's) accumulators, given the
    bias ``bias`` as integers on the accumulators' scale (int64, one per output channel), the input scale, the
    weight scales (one: per-tensor weights, or one per channel) and, per-tensor, the bias's own scale.

    Established on v73 with ``tests/fidelity/conv_bias_probe.py`` (every accumulator of a range, so the offset
    of each channel shows; docs/htp-fidelity.md, "The bias"), on every measured channel: 1,471
    per-tensor channels and 5,151 per-channel ones (random biases to 2^31 - 1, both signs, weight scales), and
    FullyConnected's 125. QNN works in float32, ``fl`` below, from ``p_c = fl(s_x * s_w_c)``:

    - per-tensor weights (and a single output channel): ``trunc(fl(fl(b * s_b) / p))``, the bias dequantized
      with its own scale ``s_b`` and divided by the accumulator's;
    - per-channel weights: the biases re-quantized against the tensor's largest ``B = max |b|`` in units of
      ``P = max_c p_c`` (whatever the channel's own scale): ``S = fl(fl(B * P) * 2^-28)``,
      ``q = rint(fl(fl(b * P) * fl(1 / S)))`` (half to even), ``trunc(fl(fl(q * S) / P))``. The bias scale
      does not enter (a bias of another scale is first put on the accumulator's, as :func:`bias_q` does).

    The result is the bias or one step toward zero where ``B < 2^28`` (then ``S < P``); with larger biases the
    re-quantized bias moves by up to ``B / 2^29``.

    v68 (``spec`` the channel's :class:`QnnRequantSpec`, ``real`` its multipliers ``M`` as the spec was made
    from): the same float32 conversion, but not truncated: QNN adds the output zero point's share
    ``fl(zo / M_c)`` to it in float32 and rounds (half up) the sum, which v68's requantization adds to the
    accumulator in place of ``round(zo / M)`` (the spec's ``pre``); so the bias returned is that sum less
    ``pre``. ``M_c = fl(fl(fl(s_x s_w_max) / s_o) * fl(s_w_c / s_w_max))``: the tensor's largest multiplier
    times the channel's weight-scale ratio (one weight scale: ``fl(fl(s_x s_w) / s_o)``). Established with the
    same probe (``tests/fidelity/conv_bias_probe.py``, random biases to 2^31 - 1, weight scales over a factor
    20, zero points 37..255, and biases at fine offsets beside ties; docs/htp-fidelity.md, "The bias on v68"
    and "The v68 bias ties (stop 25)"): 6,321 of 6,321 channels (960 per-tensor), where ``fl(zo / fl(M))``
    with ``M`` the float64 ratio gives 6,290. Without ``spec``, and on other archs: the bias as given."""
    b = np.asarray(bias, dtype=np.int64).reshape(-1)
    if spec is not None and spec.kernel == "dw_strided":  # added as given (MobileNetV2's layers: exact)
        return b
    if arch == "v68" and spec is not None and real is not None:
        return _v68_bias(b, x_scale, w_scale, bias_scale, spec, real)
    if arch != "v73" or not b.any():
        return b
    return np.trunc(_bias_f32(b, x_scale, w_scale, bias_scale)).astype(np.int64)


def _bias_f32(b: np.ndarray, x_scale: float, w_scale: np.ndarray, bias_scale: float | None) -> np.ndarray:
    """QNN's float32 value of the int64 biases ``b`` on the accumulators' scale, before v73 truncates it
    (:func:`qnn_bias`)."""
    f32 = np.float32
    w = np.asarray(w_scale, dtype=f32).reshape(-1)
    p = (f32(x_scale) * w).astype(f32)  # the accumulators' float32 scales
    bf = b.astype(f32)
    if w.size == 1 or b.size == 1:
        sb = f32(bias_scale) if bias_scale is not None else p[0]
        real = (bf * sb).astype(f32)
        return (real / p[0]).astype(f32)
    if not b.any():
        return bf
    big_p = p.max()
    big_b = f32(np.abs(b).max())
    step = ((big_b * big_p).astype(f32) * f32(1.0 / BIAS_LEVELS)).astype(f32)
    q = np.rint(((bf * big_p).astype(f32) * (f32(1) / step).astype(f32)).astype(f32))
    return ((q.astype(f32) * step).astype(f32) / big_p).astype(f32)


def _v68_bias(b: np.ndarray, x_scale: float, w_scale: np.ndarray, bias_scale: float | None, spec: QnnRequantSpec,
              real: np.ndarray, half_f32: bool = False) -> np.ndarray:
    """v68's bias (:func:`qnn_bias`): ``floor(fl(bias + fl(zo / M_c)) + 1/2) - pre``, the bias QNN's float32
    value, per output channel, where QNN's float32 multiplier of channel ``c`` is the tensor's largest one times
    the channel's weight-scale ratio: ``M_c = fl(fl(fl(s_x s_w_max) / s_o) * fl(s_w_c / s_w_max))`` (one weight
    scale: ``fl(fl(s_x s_w) / s_o)``). ``half_f32``: the 1/2 added in float32 too, ``floor(fl(sum + 1/2))`` (the
    W8A16 convolutions', spec/qnn_conv16.py: half to even where float32 steps are 1, [2^23, 2^24); the 8-bit
    form's float64 half is established only below 2^23, where the two agree)."""
    f32 = np.float32
    n = max(b.size, spec.pre.size)
    value = np.broadcast_to(_bias_f32(b, x_scale, w_scale, bias_scale), (n,))
    w = np.asarray(w_scale, dtype=f32).reshape(-1)
    top = int(np.argmax(w))
    sx, w_max = f32(x_scale), w[top]
    # the output scale the multipliers were made from (real = s_x s_w / s_o in float64 of the float32 scales)
    so = f32(np.float64(sx) * np.float64(w_max) / float(np.asarray(real, dtype=np.float64).reshape(-1)[top]))
    big_m = f32(f32(sx * w_max) / so)  # the largest multiplier, from the largest accumulator scale
    m = np.broadcast_to((big_m * (w / w_max).astype(f32)).astype(f32), (n,))
    share = (f32(spec.zero_point) / m).astype(f32)  # the output zero point on the accumulators' scale
    # half up on the float32 sum: 6,321 of 6,321 probe channels and ResNet-18 224's layer1.0 conv2 ties
    # (docs/htp-fidelity.md, "The v68 bias ties (stop 25)"); fl(zo / fl(M)) with M from the float64 ratio: 6,290
    total32 = (value + share).astype(f32)
    if half_f32:  # the 1/2 added in float32 too (the W8A16 convolutions': spec/qnn_conv16.py's Conv16Spec.bias)
        total = np.floor((total32 + f32(0.5)).astype(f32).astype(np.float64)).astype(np.int64)
    else:
        total = np.floor(total32.astype(np.float64) + 0.5).astype(np.int64)
    return total - np.broadcast_to(spec.pre, (n,))
