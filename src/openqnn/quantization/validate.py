"""The seed's quantization-range check: MSE of a quantize-dequantize round trip."""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger("openqnn.quantization")


def validate_quantization_range(data: np.ndarray, scale: float, offset: float, bitwidth: int = 8,
                                threshold: float = 1e-3) -> bool:
    """Quantize ``data`` with ``scale``/``offset`` as the seed does (``q = clip(round(x / scale + offset))``,
    ``x' = (q - offset) * scale``: offset is the zero point there) and report whether the MSE of the round
    trip is below ``threshold``. The MSE is logged."""
    quantized = np.clip(np.round(np.asarray(data, dtype=np.float64) / scale + offset), 0, (1 << bitwidth) - 1)
    dequantized = (quantized - offset) * scale
    mse = float(np.mean((np.asarray(data, dtype=np.float64) - dequantized) ** 2))
    log.info("Quantization MSE: %g", mse)
    print(f"Quantization MSE: {mse}")
    return mse < threshold
