"""ONNX op translations, one family per module; importing this package registers them all."""

from openqnn.frontends.onnx.translations import (  # noqa: F401
    conv,
    elementwise,
    linear,
    normalization,
    pooling,
    shape,
    spatial,
    tensor,
)
