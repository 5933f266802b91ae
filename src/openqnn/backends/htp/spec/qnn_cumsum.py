"""QNN's HTP CumulativeSum (ONNX CumSum) of 8- and 16-bit codes along the last axis, v68 and v73 alike, on
Qualcomm's HTP simulator (onnxruntime-qnn 2.7.0, QNN 2.51) with ``tests/fidelity/cumsum_probe.py``, held to it by
``tests/fidelity/test_qnn_cumsum.py`` (docs/htp-fidelity.md, "LogSoftmax (8- and 16-bit) and CumSum (stop 27)").

QNN EP hands the QDQ unit to QNN as one ``CumulativeSum`` of the uint8 / uint16 codes (its verbose log). The HTP does
not sum the input codes and requantize the sum once, as exact arithmetic (and TFLite) would: it runs the scan in
float32 *through the quantized output*: each output is quantized, and the next one starts from that output's
dequantized value. With ``f`` float32 arithmetic (every operation rounded to float32), ``inv = f(1 / f(s_out))``
and ``rint`` rounding half to even:

    x_i   = f(f(s_in) * (q_i - z_in))                              the input element, dequantized
    y_-1  = z_out
    v_i   = f(f(f(s_out) * (y_(i-1) - z_out)) + x_i)               the previous output, dequantized, plus x_i
    y_i   = clamp(rint(f(f(v_i * inv) + z_out)), 0, 2^bits - 1)     quantized (the HTP's float Quantize form)

So each step rounds (the errors of a row add up: the sweep's rows of 9 differed from exact rounding by up to 3 codes)
and saturates (a row that reaches code 0 or the top carries on from there, not from the true sum).

How it was established: rows ``[q, z_in]`` over all 256 codes (8-bit) and rows of two of every code pair (65,536
rows) showed the first element to be a requantization rounded half to even *on the output code* (with ``z_out`` odd
and a ratio of 1/8, ``-16.5 + 165`` gave 148) and the second to carry on from the first *clamped* output. Of the
per-element forms ``f(x_i * inv)`` then ``+ z_out`` in float32 then ``rint`` gave all 7,680 codes of 30 encodings
(half of them at ratios of few bits, where ties are common); ``x_i / s_out`` 14 misses, ``(q - z_in) f(s_in / s_out)``
33, rounding the relative value (``z_out + rint(v)``) 143, half up 240. Of the scans: this one gave every code of
16 encodings x 4,096 codes of rows of 2 to 40 (8-bit, v73), 12 x 8,192 (16-bit, v73), 8 x 4,096 (8-bit, v68) and
4 x 8,192 (16-bit, v68); summing the per-element codes with a saturating integer add misses 1-2.4% (ties of the
float sum), the same with each element clamped first 11-16%, a float32 cumsum quantized once (exact rounding) 15-19%.

Not covered (openqnn's htp keeps its cpu fallback): ``exclusive`` and ``reverse`` (QNN EP refuses them), axes other
than the last (the simulator's codes along axis 0 or 1 of a rank-3 tensor matched no scan along any axis: 5-22%;
not followed), signed or mixed-width codes, per-axis encodings.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ARCHS", "cumsum_codes", "cumsum_consts_for"]

ARCHS = ("v68", "v73")
_F32 = np.float32


def cumsum_consts_for(arch: str, arithmetic: str, in_bits: int, out_bits: int, signed: bool, last_axis: bool,
                      exclusive: bool, reverse: bool, s_in: float, z_in: int, s_out: float, z_out: int
                      ) -> dict[str, float | int] | None:
    """The float32 constants of the scan (``s_in``, ``s_out``, ``inv`` as float32 values; the zero points; the top
    code) where the spec applies (``arithmetic == "qnn"``, v68 or v73, unsigned 8- or 16-bit codes of one width,
    the last axis, neither exclusive nor reverse), else None."""
    if (arithmetic != "qnn" or arch not in ARCHS or in_bits != out_bits or in_bits not in (8, 16) or signed
            or not last_axis or exclusive or reverse or not s_in > 0 or not s_out > 0):
        return None
    so = _F32(s_out)
    return {"s_in": float(_F32(s_in)), "s_out": float(so), "inv": float(_F32(1.0) / so), "z_in": int(z_in),
            "z_out": int(z_out), "qmax": (1 << out_bits) - 1}


def cumsum_codes(q: np.ndarray, s_in: float, z_in: int, s_out: float, z_out: int, bits: int) -> np.ndarray:
    """The spec (module docstring) on codes ``q`` along the last axis: int64 codes of ``q``'s shape."""
    q = np.asarray(q, dtype=np.int64)
    si, so = _F32(s_in), _F32(s_out)
    inv, zo = _F32(1.0) / so, _F32(z_out)
    x = si * (q - z_in).astype(_F32)  # float32 products
    out = np.empty(q.shape, dtype=np.int64)
    y = np.full(q.shape[:-1], z_out, dtype=np.int64)
    for i in range(q.shape[-1]):
        v = so * (y - z_out).astype(_F32) + x[..., i]
        y = np.clip(np.rint(v * inv + zo), 0, (1 << bits) - 1).astype(np.int64)
        out[..., i] = y
    return out
