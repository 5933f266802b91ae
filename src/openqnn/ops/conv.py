"""Convolutions (channel-last): Conv2d, DepthWiseConv2d, TransposeConv2d, Conv3d, TransposeConv3d.

Activations are NHWC (2-D) or NDHWC (3-D). Weights: Conv2d ``[kh, kw, cin/group, cout]``,
DepthWiseConv2d ``[kh, kw, 1, cout]`` (cout = cin * multiplier), TransposeConv2d
``[kh, kw, cin, cout/group]``, Conv3d ``[kd, kh, kw, cin/group, cout]``, TransposeConv3d
``[kd, kh, kw, cin, cout/group]``. ``pad_amount`` is one ``[begin, end]`` pair per spatial axis:
``[[top, bottom], [left, right]]`` in 2-D, ``[[front, back], [top, bottom], [left, right]]`` in 3-D.
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

_CONV3D_ATTRS = (
    Attr("stride", "ints", (1, 1, 1)),
    Attr("pad_amount", "ints2d", ((0, 0), (0, 0), (0, 0))),
    Attr("dilation", "ints", (1, 1, 1)),
)


def conv_out_dim(size: int, k: int, stride: int, pad: tuple[int, int], dilation: int) -> int:
    return (size + pad[0] + pad[1] - dilation * (k - 1) - 1) // stride + 1


def _check_spatial_attrs(name: str, attrs: dict[str, Any], n: int, extra: Sequence[str] = ()) -> None:
    for a in ("stride", "dilation", "pad_amount", *extra):
        if len(attrs[a]) != n:
            raise InvalidModelError(f"{name}: {a} has {len(attrs[a])} entries, the op has {n} spatial axes")
    if any(len(p) != 2 for p in attrs["pad_amount"]):
        raise InvalidModelError(f"{name}: pad_amount must hold one [begin, end] pair per spatial axis")
    if min(attrs["stride"]) <= 0 or min(attrs["dilation"]) <= 0:
        raise InvalidModelError(f"{name}: stride {attrs['stride']} and dilation {attrs['dilation']} must be positive")
    if min(v for p in attrs["pad_amount"] for v in p) < 0:
        raise InvalidModelError(f"{name}: pad_amount {attrs['pad_amount']} must not be negative")
    if "group" in attrs and attrs["group"] <= 0:
        raise InvalidModelError(f"{name}: group {attrs['group']} must be positive")


def _check_filter(name: str, ins: Sequence[TType], rank: int, layout: str) -> None:
    """The filter has the op's rank and positive dims; the input has the op's rank; a bias is [cout]."""
    x, w = ins[0], ins[1]
    if len(w.shape) != rank or min(w.shape) <= 0:
        raise InvalidModelError(f"{name}: filter must be {layout} with positive dims, got shape {w.shape}")
    if len(x.shape) != rank:
        raise InvalidModelError(f"{name}: input must have rank {rank} (channel-last), got shape {x.shape}")


def _spatial_nd(name: str, attrs: dict[str, Any], x: TType, kernel: Sequence[int]) -> list[int]:
    n = len(kernel)
    if len(x.shape) != n + 2:
        layout = "NHWC" if n == 2 else "NDHWC"
        raise InvalidModelError(f"{name}: input must be {layout} (rank {n + 2}), got shape {x.shape}")
    _check_spatial_attrs(name, attrs, n)
    dims = [conv_out_dim(x.shape[1 + i], kernel[i], attrs["stride"][i], attrs["pad_amount"][i], attrs["dilation"][i])
            for i in range(n)]
    if min(dims) <= 0:
        raise InvalidModelError(f"{name}: output would be empty: input {x.shape}, kernel {tuple(kernel)}")
    return dims


def _spatial(attrs: dict[str, Any], x: TType, kh: int, kw: int) -> tuple[int, int]:
    oh, ow = _spatial_nd("convolution", attrs, x, (kh, kw))
    return oh, ow


@op("Conv2d", ["in", "filter", "bias?"], attrs=(*_CONV_ATTRS, Attr("group", "int", 1)))
def _conv2d(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    """2-D convolution, NHWC input, filter [kh, kw, cin/group, cout]."""
    x, w = ins[0], ins[1]
    _check_spatial_attrs("Conv2d", attrs, 2)
    _check_filter("Conv2d", ins, 4, "[kh, kw, cin/group, cout]")
    kh, kw, cin_g, cout = w.shape
    if x.shape[3] != cin_g * attrs["group"]:
        raise InvalidModelError(
            f"Conv2d: input has {x.shape[3]} channels but filter expects {cin_g} x group {attrs['group']}"
        )
    if cout % attrs["group"]:
        raise InvalidModelError(f"Conv2d: {cout} output channels do not split into {attrs['group']} groups")
    _check_bias("Conv2d", ins, cout)
    oh, ow = _spatial(attrs, x, kh, kw)
    return [TType((x.shape[0], oh, ow, cout), x.dtype)]


def _check_bias(name: str, ins: Sequence[TType], cout: int) -> None:
    if len(ins) > 2 and ins[2] is not None and tuple(ins[2].shape) != (cout,):
        raise InvalidModelError(f"{name}: bias has shape {ins[2].shape}, the filter's {cout} output channels "
                                f"need ({cout},)")


@op("DepthWiseConv2d", ["in", "filter", "bias?"], attrs=_CONV_ATTRS)
def _dwconv2d(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    """Depthwise 2-D convolution, filter [kh, kw, 1, cin * multiplier]."""
    x, w = ins[0], ins[1]
    _check_spatial_attrs("DepthWiseConv2d", attrs, 2)
    _check_filter("DepthWiseConv2d", ins, 4, "[kh, kw, 1, cin * multiplier]")
    kh, kw, _, cout = w.shape
    if w.shape[2] != 1:
        raise InvalidModelError(f"DepthWiseConv2d: filter must be [kh, kw, 1, cin * multiplier], got {w.shape}")
    _check_bias("DepthWiseConv2d", ins, cout)
    if not x.shape[3] or cout % x.shape[3]:
        raise InvalidModelError(f"DepthWiseConv2d: {cout} outputs is not a multiple of {x.shape[3]} inputs")
    oh, ow = _spatial(attrs, x, kh, kw)
    return [TType((x.shape[0], oh, ow, cout), x.dtype)]


def transpose_out_dim(size: int, k: int, stride: int, pad: Sequence[int], dilation: int, output_padding: int) -> int:
    return (size - 1) * stride - pad[0] - pad[1] + dilation * (k - 1) + output_padding + 1


def _tconv(name: str, attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    x, w = ins[0], ins[1]
    n = len(w.shape) - 2
    if n < 1 or min(w.shape) <= 0:
        raise InvalidModelError(f"{name}: filter must be [k..., cin, cout/group] with positive dims, got {w.shape}")
    if len(x.shape) != n + 2:
        raise InvalidModelError(f"{name}: input must have rank {n + 2}, got shape {x.shape}")
    _check_spatial_attrs(name, attrs, n, ("output_padding",))
    if min(attrs["output_padding"]) < 0:
        raise InvalidModelError(f"{name}: output_padding {attrs['output_padding']} must not be negative")
    kernel, cin, cout_g = w.shape[:n], w.shape[n], w.shape[n + 1]
    if x.shape[-1] != cin:
        raise InvalidModelError(f"{name}: input has {x.shape[-1]} channels, filter expects {cin}")
    if cin % attrs["group"]:
        raise InvalidModelError(f"{name}: {cin} input channels do not split into {attrs['group']} groups")
    _check_bias(name, ins, cout_g * attrs["group"])
    dims = [transpose_out_dim(x.shape[1 + i], kernel[i], attrs["stride"][i], attrs["pad_amount"][i],
                              attrs["dilation"][i], attrs["output_padding"][i]) for i in range(n)]
    if min(dims) <= 0:
        raise InvalidModelError(f"{name}: output would be empty: input {x.shape}, kernel {tuple(kernel)}")
    return [TType((x.shape[0], *dims, cout_g * attrs["group"]), x.dtype)]


@op(
    "TransposeConv2d",
    ["in", "filter", "bias?"],
    attrs=(*_CONV_ATTRS, Attr("output_padding", "ints", (0, 0)), Attr("group", "int", 1)),
)
def _tconv2d(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    """Transposed 2-D convolution, filter [kh, kw, cin, cout/group]."""
    return _tconv("TransposeConv2d", attrs, ins)


@op("Conv3d", ["in", "filter", "bias?"], attrs=(*_CONV3D_ATTRS, Attr("group", "int", 1)))
def _conv3d(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    """3-D convolution, NDHWC input, filter [kd, kh, kw, cin/group, cout]."""
    x, w = ins[0], ins[1]
    _check_spatial_attrs("Conv3d", attrs, 3)
    _check_filter("Conv3d", ins, 5, "[kd, kh, kw, cin/group, cout]")
    kd, kh, kw, cin_g, cout = w.shape
    group = attrs["group"]
    if len(x.shape) == 5 and x.shape[4] != cin_g * group:
        raise InvalidModelError(f"Conv3d: input has {x.shape[4]} channels but filter expects {cin_g} x group {group}")
    if cout % group:
        raise InvalidModelError(f"Conv3d: {cout} output channels do not split into {group} groups")
    _check_bias("Conv3d", ins, cout)
    dims = _spatial_nd("Conv3d", attrs, x, (kd, kh, kw))
    return [TType((x.shape[0], *dims, cout), x.dtype)]


@op(
    "TransposeConv3d",
    ["in", "filter", "bias?"],
    attrs=(*_CONV3D_ATTRS, Attr("output_padding", "ints", (0, 0, 0)), Attr("group", "int", 1)),
)
def _tconv3d(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    """Transposed 3-D convolution, NDHWC input, filter [kd, kh, kw, cin, cout/group]."""
    if len(ins[1].shape) != 5:
        raise InvalidModelError(f"TransposeConv3d: filter must be [kd, kh, kw, cin, cout/group], got {ins[1].shape}")
    return _tconv("TransposeConv3d", attrs, ins)
