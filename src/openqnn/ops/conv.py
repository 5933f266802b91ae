"""Convolutions (channel-last): Conv2d, DepthWiseConv2d, TransposeConv2d.

Activations are NHWC. Weights: Conv2d ``[kh, kw, cin/group, cout]``, DepthWiseConv2d
``[kh, kw, 1, cout]`` (cout = cin * multiplier), TransposeConv2d ``[kh, kw, cin, cout/group]``.
``pad_amount`` is ``[[top, bottom], [left, right]]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from openqnn.errors import InvalidModelError
from openqnn.ops.schema import Attr, TType, op

_CONV_ATTRS = (
    Attr("stride", "ints", (1, 1)),
    Attr("pad_amount", "ints2d", ((0, 0), (0, 0))),
    Attr("dilation", "ints", (1, 1)),
)


def conv_out_dim(size: int, k: int, stride: int, pad: tuple[int, int], dilation: int) -> int:
    return (size + pad[0] + pad[1] - dilation * (k - 1) - 1) // stride + 1


def _spatial(attrs: dict[str, Any], x: TType, kh: int, kw: int) -> tuple[int, int]:
    if len(x.shape) != 4:
        raise InvalidModelError(f"convolution input must be NHWC (rank 4), got shape {x.shape}")
    (sh, sw), (dh, dw), pads = attrs["stride"], attrs["dilation"], attrs["pad_amount"]
    oh = conv_out_dim(x.shape[1], kh, sh, pads[0], dh)
    ow = conv_out_dim(x.shape[2], kw, sw, pads[1], dw)
    if oh <= 0 or ow <= 0:
        raise InvalidModelError(f"convolution output would be empty: input {x.shape}, kernel {kh}x{kw}")
    return oh, ow


@op("Conv2d", ["in", "filter", "bias?"], attrs=(*_CONV_ATTRS, Attr("group", "int", 1)))
def _conv2d(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    """2-D convolution, NHWC input, filter [kh, kw, cin/group, cout]."""
    x, w = ins[0], ins[1]
    kh, kw, cin_g, cout = w.shape
    if x.shape[3] != cin_g * attrs["group"]:
        raise InvalidModelError(
            f"Conv2d: input has {x.shape[3]} channels but filter expects {cin_g} x group {attrs['group']}"
        )
    oh, ow = _spatial(attrs, x, kh, kw)
    return [TType((x.shape[0], oh, ow, cout), x.dtype)]


@op("DepthWiseConv2d", ["in", "filter", "bias?"], attrs=_CONV_ATTRS)
def _dwconv2d(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    """Depthwise 2-D convolution, filter [kh, kw, 1, cin * multiplier]."""
    x, w = ins[0], ins[1]
    kh, kw, _, cout = w.shape
    if cout % x.shape[3]:
        raise InvalidModelError(f"DepthWiseConv2d: {cout} outputs is not a multiple of {x.shape[3]} inputs")
    oh, ow = _spatial(attrs, x, kh, kw)
    return [TType((x.shape[0], oh, ow, cout), x.dtype)]


@op(
    "TransposeConv2d",
    ["in", "filter", "bias?"],
    attrs=(*_CONV_ATTRS, Attr("output_padding", "ints", (0, 0)), Attr("group", "int", 1)),
)
def _tconv2d(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    """Transposed 2-D convolution, filter [kh, kw, cin, cout/group]."""
    x, w = ins[0], ins[1]
    kh, kw, cin, cout_g = w.shape
    if x.shape[3] != cin:
        raise InvalidModelError(f"TransposeConv2d: input has {x.shape[3]} channels, filter expects {cin}")
    dims = []
    for i, k in enumerate((kh, kw)):
        s, d, p, op_ = attrs["stride"][i], attrs["dilation"][i], attrs["pad_amount"][i], attrs["output_padding"][i]
        dims.append((x.shape[1 + i] - 1) * s - p[0] - p[1] + d * (k - 1) + op_ + 1)
    return [TType((x.shape[0], dims[0], dims[1], cout_g * attrs["group"]), x.dtype)]
