"""The seed's quantization-range check: MSE of a quantize-dequantize round trip.

The guide's ``validate_quantization_range(data, scale, offset, bitwidth)`` adds ``offset`` after dividing
by the scale: its offset is the *zero point*. openqnn's files (``_net.json``, ``_encodings.json``) use
QNN's sign instead, ``real = scale * (q + offset)``, so their offset is minus the zero point. Both are
accepted, each by its own name: ``zero_point=`` (or the guide's positional ``offset``) and
``qnn_offset=``.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from openqnn.errors import InvalidConfigError

__all__ = ["validate_quantization_range"]

log = logging.getLogger("openqnn.quantization")


def validate_quantization_range(data: np.ndarray, scale: float, offset: float | None = None, bitwidth: int = 8,
                                threshold: float = 1e-3, *, zero_point: float | None = None,
                                qnn_offset: float | None = None) -> bool:
    """Quantize ``data`` to unsigned ``bitwidth``-bit codes and back, print the round trip's MSE, and
    return whether it is below ``threshold``.

    Give the encoding's zero point as ``offset`` (the guide's name and meaning: ``q = round(x / scale +
    offset)``) or ``zero_point``, or QNN's offset as ``qnn_offset`` (``real = scale * (q + qnn_offset)``,
    the sign in openqnn's ``_encodings.json``); exactly one of the three.

    >>> validate_quantization_range(np.linspace(-1, 1, 101), 2 / 255, zero_point=128)   # doctest: +SKIP
    >>> validate_quantization_range(np.linspace(-1, 1, 101), 2 / 255, qnn_offset=-128)  # the same check
    """
    given = {k: v for k, v in (("offset", offset), ("zero_point", zero_point), ("qnn_offset", qnn_offset))
             if v is not None}
    if len(given) != 1:
        raise InvalidConfigError("validate_quantization_range: give exactly one of offset (the zero point, as in "
                                 "the guide), zero_point, or qnn_offset (QNN's sign: -zero_point); got "
                                 + (", ".join(given) or "none"))
    zp = -float(qnn_offset) if qnn_offset is not None else float(next(iter(given.values())))
    if not (isinstance(scale, (int, float, np.floating)) and math.isfinite(scale) and scale > 0):
        raise InvalidConfigError(f"validate_quantization_range: scale {scale!r} must be a finite positive number")
    if bitwidth not in (4, 8, 16, 32):
        raise InvalidConfigError(f"validate_quantization_range: bitwidth {bitwidth!r} must be 4, 8, 16 or 32")
    x = np.asarray(data, dtype=np.float64)
    quantized = np.clip(np.round(x / scale + zp), 0, (1 << bitwidth) - 1)
    dequantized = (quantized - zp) * scale
    mse = float(np.mean((x - dequantized) ** 2))
    log.info("Quantization MSE: %g", mse)
    print(f"Quantization MSE: {mse}")
    return mse < threshold
