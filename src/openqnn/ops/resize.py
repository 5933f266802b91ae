"""Resize (channel-last spatial dims of a rank-4 NHWC tensor, or any dims for other ranks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from openqnn.errors import InvalidModelError
from openqnn.ops.schema import Attr, TType, op


@op(
    "Resize",
    ["in"],
    attrs=(
        Attr("output_shape", "ints", doc="the full output shape (QNN reads it from the output tensor)"),
        Attr("interpolation_mode", "str", "nearest", "nearest, linear or cubic"),
        Attr("transformation_mode", "str", "half_pixel",
             "half_pixel, pytorch_half_pixel, align_corners, asymmetric, tf_half_pixel_for_nn, half_pixel_symmetric, "
             "tf_crop_and_resize"),
        Attr("nearest_mode", "str", "round_prefer_floor",
             "round_prefer_floor, round_prefer_ceil, floor, ceil, or simple (ONNX opset < 11: floor when "
             "upsampling an axis, ceil when downsampling it)"),
        Attr("cubic_coeff", "float", -0.75),
        Attr("exclude_outside", "bool", False),
        Attr("scales", "floats", (), "per-dim scales when the source gave them (coordinate mapping uses them)"),
        Attr("antialias", "bool", False),
        Attr("roi", "floats", (), "tf_crop_and_resize only: [starts..., ends...] per dim, normalized"),
        Attr("extrapolation_value", "float", 0.0, "tf_crop_and_resize only: value of samples outside the input"),
    ),
)
def _resize(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    """Interpolate to output_shape."""
    shape = attrs["output_shape"]
    if len(shape) != len(ins[0].shape):
        raise InvalidModelError(f"Resize: output_shape {shape} has the wrong rank for input {ins[0].shape}")
    return [TType(tuple(shape), ins[0].dtype)]
