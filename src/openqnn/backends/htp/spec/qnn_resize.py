"""QNN's linear Resize of 8-bit codes as QNN EP runs it from openqnn's QDQ export, established on Qualcomm's
HTP simulator (onnxruntime-qnn 2.7.0, QNN 2.51) with ``tests/fidelity/resize_probe.py`` and held to it by
``tests/fidelity/test_qnn_resize.py`` (docs/htp-fidelity.md, "AveragePool, Resize, Where and Div (8-bit)").

openqnn's export writes a Resize between Transposes with no Q/DQ next to it, so QNN EP runs
``DequantizeLinear -> Transpose -> Resize -> Transpose -> QuantizeLinear`` on floats. What the simulator
computes, v68 = v73:

- the input dequantized in float32: ``x = float32(s_in) * float32(q - z_in)``;
- the interpolation in float32 (ONNX's coordinates and weights; the order of the two axes and of the taps
  never showed in the probes' codes);
- the output quantized through float16, as a graph input quantized into a Concat's encoding
  (``qnn_eltwise.input_quantize_codes``): ``inv = float32(1) / float32(s_out)``, the exact product
  ``y * inv`` rounded once to float16, then to a code half away from zero, plus ``z_out``.

The float16 step is what moves codes against exact rounding (step 1/8 of a code from 128 codes off the zero
point, 1/16 from 64, ...): a value rounded up to a .5 in float16 goes away from zero. Exact rounding in
float16 (half to even), or float16 inputs and arithmetic, miss 1-2% of the codes.

16-bit codes (uint16 in and out; docs/htp-fidelity.md, "16-bit Resize (stop 27)"): QNN EP runs the same float
graph (QNN's log shows the float Resize), and the float16 step is gone (it would miss 20-40% of the codes). The
route here (:func:`quantize16`) keeps the float32 dequantization and interpolation above and quantizes by the
float32 product ``float32(y * inv)``, adds the zero point in float32 and rounds half up (stop 28; stop 27 rounded the
product half away from zero: 99.77% of 126,000 simulator codes, v68 = v73; exact rounding 99.75%, openqnn's former
Q.20 fixed-point route 99.52%). It is a model of a float op, not
QNN's arithmetic to the last bit: QNN's floats carry about 2 units of 2^-23 of relative error (codes within
0.004 of a .5 boundary fall either way; exact ties below zero go toward zero or away by the significands of ``q - z_in`` and ``s_in``),
which no float32 ordering of the steps reproduces.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["ARCHS", "dequantize", "dequantize_t", "filter_axes", "filter_axes_t", "linear_taps", "quantize", "quantize16",
           "quantize16_t", "quantize_t", "to_float16", "to_float16_t"]

ARCHS = ("v68", "v73")

FilterAxis = tuple[int, np.ndarray, np.ndarray]  # (axis, idx [out, T], float32 weights [out, T])


def dequantize(q: np.ndarray, s_in: float, z_in: int) -> np.ndarray:
    """``float32(s_in) * float32(q - z_in)``."""
    return np.float32(s_in) * (np.asarray(q, dtype=np.int64) - z_in).astype(np.float32)


LINEAR_TAP_MODES = ("half_pixel", "pytorch_half_pixel", "asymmetric", "align_corners")


def linear_taps(mode: str, n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray] | None:
    """QNN's two taps per output of a linear axis of ``n_in -> n_out``: ``(idx [n_out, 2], float32 w [n_out,
    2])``, or None for a coordinate mode not probed (``LINEAR_TAP_MODES`` only).

    Deviations from ONNX Runtime's coordinates (``(x + 0.5) / scale - 0.5`` with the model's scale, and in
    geometry.py align_corners' exact ``x (n_in - 1) / (length - 1)``): QNN takes the axis' sizes, not the scale,
    and computes the source coordinate in float32 by the ratio ``r = float32(n_in) / float32(n_out)``:
    ``(x + 0.5) * r - 0.5`` (half_pixel, pytorch_half_pixel; -0.5 where ``n_out`` is 1), ``x * r``
    (asymmetric), ``x * float32(float32(n_in - 1) / float32(n_out - 1))`` (align_corners), clamped to ``[0, n_in
    - 1]``; taps ``x0 = floor``, ``x1 = min(x0 + 1, n_in - 1)``, weights ``w1 = float32(x - x0)``, ``w0 =
    float32(1 - w1)``. Found with 16-bit codes (docs/htp-fidelity.md, "16-bit Resize (stop 27)"): half_pixel x3
    69 codes off of 45,360 where ORT's division gives 169, align_corners x2 29 of 20,160 and x3 43 of 22,680 where
    exact coordinates give 54 and 82, half_pixel x1.5 (7 -> 10, 9 -> 13) 4 of 5,200 where the model's scale
    1.5 misses 3,982; align_corners' quotient order ``float32(x (n_in - 1)) / (n_out - 1)`` misses 85 of the
    x3's 22,680. Not told apart: ``1 / float32(n_out / n_in)`` for ``r``. 8-bit codes: 100% as before, and
    half_pixel x1.5 now 100% too (the model's scale missed 2,591 of 3,120)."""
    f32 = np.float32
    x = np.arange(n_out, dtype=f32)
    r = f32(n_in) / f32(n_out)
    if mode in ("half_pixel", "pytorch_half_pixel"):
        if mode == "pytorch_half_pixel" and n_out == 1:
            xo = np.full(n_out, f32(-0.5), dtype=f32)
        else:
            xo = ((x + f32(0.5)) * r - f32(0.5)).astype(f32)
    elif mode == "asymmetric":
        xo = (x * r).astype(f32)
    elif mode == "align_corners":
        xo = np.zeros(n_out, dtype=f32) if n_out == 1 else (x * (f32(n_in - 1) / f32(n_out - 1))).astype(f32)
    else:
        return None
    v = np.clip(xo, f32(0), f32(n_in - 1)).astype(f32)
    x0 = np.floor(v).astype(np.int64)
    x1 = np.minimum(x0 + 1, n_in - 1)
    w1 = (v - x0.astype(f32)).astype(f32)
    w0 = (f32(1) - w1).astype(f32)
    return np.stack([x0, x1], axis=1), np.stack([w0, w1], axis=1)


def filter_axes(v: np.ndarray, axes: Sequence[FilterAxis]) -> np.ndarray:
    """Per axis in turn, ``sum_t w[:, t] * v[idx[:, t]]`` in float32, the taps added in order."""
    for ax, idx, w in axes:
        shape = [1] * v.ndim
        shape[ax] = idx.shape[0]
        acc = np.take(v, idx[:, 0], axis=ax) * w[:, 0].reshape(shape)
        for t in range(1, idx.shape[1]):
            acc = acc + np.take(v, idx[:, t], axis=ax) * w[:, t].reshape(shape)
        v = acc.astype(np.float32)
    return v


def to_float16(p: np.ndarray) -> np.ndarray:
    """float64 values rounded once to float16 (to nearest, ties to even), returned as float64."""
    with np.errstate(over="ignore"):  # beyond float16's range: inf, as the cast gives
        return np.asarray(p, dtype=np.float64).astype(np.float16).astype(np.float64)


def quantize(y: np.ndarray, s_out: float, z_out: int, qmax: int) -> np.ndarray:
    """Codes of float32 values ``y``: ``clamp(z_out + round_half_away(float16(y * float32(1 / s_out))))``."""
    inv = np.float32(1.0) / np.float32(s_out)
    v = to_float16(np.asarray(y, dtype=np.float32).astype(np.float64) * float(inv))
    return np.clip(z_out + np.sign(v) * np.floor(np.abs(v) + 0.5), 0, qmax).astype(np.int64)


def quantize16(y: np.ndarray, s_out: float, z_out: int, qmax: int) -> np.ndarray:
    """16-bit codes of float32 values ``y``: ``clamp(floor(float32(float32(y * float32(1 / s_out)) + z_out) + 1/2))``.

    Deviation from TFLite (exact rounding of ``y / s_out``): the float32 product, the zero point added in float32,
    then half up. Found with ``python -m tests.fidelity.resize_probe --bits 16`` (stop 27: the float32 product rounded
    half away from zero, 99.87% of the codes; every positive exact tie rounds up, half to even ruled out); stop 28 (7
    linear modes x 10 held-out seeds, 181,760 codes per arch, v68 = v73): 168 codes off where the product rounded
    half away from zero misses 241, half up without the float32 sum 191, the sum fused into the product's rounding
    181. The residue is open (QNN's float arithmetic is not IEEE float32 to the last ulp; negative exact ties of
    some significands go away from zero, ``tests/fidelity/test_qnn_resize.py::test_16bit_ties``)."""
    inv = np.float32(1.0) / np.float32(s_out)
    v = (np.asarray(y, dtype=np.float32) * inv).astype(np.float32) + np.float32(z_out)
    return np.clip(np.floor(v.astype(np.float64) + 0.5), 0, qmax).astype(np.int64)


# -- the same on torch tensors (the htp fast path) ------------------------------------------------

def dequantize_t(q: torch.Tensor, s_in: float, z_in: int) -> torch.Tensor:
    return (q.to(torch.int64) - z_in).to(torch.float32) * float(np.float32(s_in))


def filter_axes_t(v: torch.Tensor, axes: Sequence[tuple[int, torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    for ax, idx, w in axes:
        shape = [1] * v.dim()
        shape[ax] = int(idx.shape[0])
        acc = torch.index_select(v, ax, idx[:, 0]) * w[:, 0].reshape(shape)
        for t in range(1, int(idx.shape[1])):
            acc = acc + torch.index_select(v, ax, idx[:, t]) * w[:, t].reshape(shape)
        v = acc
    return v


def to_float16_t(p: torch.Tensor) -> torch.Tensor:
    """float64 values rounded once to float16 (ties to even), as float64: 11 significant bits, at least
    2^-24 (float16's subnormal step). torch's own cast goes through float32 (a double rounding)."""
    _, exp = torch.frexp(p)  # p = m * 2^exp, |m| in [0.5, 1)
    step_exp = torch.clamp(exp - 11, min=-24)
    step = torch.ldexp(torch.ones_like(p), step_exp)
    out = torch.round(p / step) * step  # exact scaling by a power of two; round: half to even
    return torch.where(out.abs() > 65504.0, torch.sign(out) * torch.inf, out)


def quantize_t(y: torch.Tensor, s_out: float, z_out: int, qmax: int) -> torch.Tensor:
    inv = float(np.float32(1.0) / np.float32(s_out))
    v = to_float16_t(y.to(torch.float64) * inv)
    r = torch.sign(v) * torch.floor(v.abs() + 0.5)
    return torch.clamp(r + z_out, 0, qmax).to(torch.int64)


def quantize16_t(y: torch.Tensor, s_out: float, z_out: int, qmax: int) -> torch.Tensor:
    inv = torch.tensor(np.float32(1.0) / np.float32(s_out), dtype=torch.float32, device=y.device)
    v = y.to(torch.float32) * inv + torch.tensor(float(z_out), dtype=torch.float32, device=y.device)
    return torch.clamp(torch.floor(v.to(torch.float64) + 0.5), 0, qmax).to(torch.int64)
