"""Conv and ConvTranspose: 1-D through a height-1 2-D convolution, 2-D, and 3-D (NDHWC)."""

from __future__ import annotations

from collections.abc import Sequence

from openqnn.frontends.onnx.context import ConversionContext, Value, channel_last_perm
from openqnn.frontends.onnx.registry import onnx_op
from openqnn.frontends.onnx.translations.common import conv_pads, explicit_pads


def _to_2d(ctx: ConversionContext, rank: int) -> tuple[str, bool]:
    """Channel-last input as rank 4: a rank-3 (N, C, W) input becomes (N, 1, W, C)."""
    x = ctx.channel_last(0)
    if rank == 4:
        return x, False
    if rank != 3:
        raise ctx.fail(f"{rank - 2}-D convolution is not supported here (1-D and 2-D are)")
    n, w, c = ctx.graph.tensors[x].shape
    return ctx.emit("Reshape", [x], {"shape": (n, 1, w, c)}, name=f"{x}_as2d")[0], True


def _bind_out(ctx: ConversionContext, out: str, was_1d: bool) -> None:
    if was_1d:
        n, _, w, c = ctx.graph.tensors[out].shape
        out = ctx.emit("Reshape", [out], {"shape": (n, w, c)})[0]
        ctx.bind(0, out, channel_last_perm(3))
    else:
        ctx.bind(0, out, channel_last_perm(4))


def _check_rank(ctx: ConversionContext, rank: int) -> None:
    if rank not in (3, 4, 5):
        raise ctx.fail(f"{rank - 2}-D {ctx.node.op_type} is not supported (1-D, 2-D and 3-D are)")


def _weights_2d(ctx: ConversionContext, perm: tuple[int, int, int, int]) -> str:
    """The filter input, made rank 4 (1-D kernels get a height of 1) and permuted by ``perm``."""
    w = ctx.input(1)
    if w.rank == 3:
        if w.const is not None:
            data = w.const[:, :, None, :]
            return ctx.tensor(Value(None, data.shape, w.dtype, None, data, w.hint), perm)
        src = ctx.tensor(w)
        a, b, k = ctx.graph.tensors[src].shape
        r = ctx.emit("Reshape", [src], {"shape": (a, b, 1, k)}, name=f"{src}_as2d")[0]
        return ctx.emit("Transpose", [r], {"perm": perm})[0]
    return ctx.tensor(w, perm)


def _spatial_attrs(ctx: ConversionContext, n: int) -> tuple[list[int], list[int]]:
    strides = [int(s) for s in ctx.attr("strides", [1] * n)]
    dilations = [int(d) for d in ctx.attr("dilations", [1] * n)]
    if len(strides) != n or len(dilations) != n:
        raise ctx.fail(f"strides / dilations must have {n} entries for a {n}-D input")
    return strides, dilations


def _check_filter(ctx: ConversionContext, x: Value, w: Value, kernel: Sequence[int], group: int,
                  transposed: bool) -> None:
    """The weight's shape agrees with the input, kernel_shape, group and the attributes' lengths."""
    n = x.rank - 2
    if group <= 0:
        raise ctx.fail(f"group {group} must be positive")
    if w.rank != x.rank or min(w.shape, default=0) <= 0:
        raise ctx.fail(f"weight '{ctx.node.input[1]}' has shape {list(w.shape)}; a {n}-D convolution needs a rank "
                       f"{x.rank} weight with positive dims")
    if list(kernel) != list(w.shape[2:]):
        raise ctx.fail(f"kernel_shape {list(kernel)} does not match the weight's spatial dims {list(w.shape[2:])}")
    cin = x.shape[1]
    want = cin if transposed else cin // group if cin % group == 0 else None
    have = w.shape[0] if transposed else w.shape[1]
    if want is None or have != want or (not transposed and w.shape[0] % group):
        raise ctx.fail(f"weight shape {list(w.shape)} does not fit {cin} input channels in {group} group(s)")
    if ctx.has(2):
        cout = w.shape[1] * group if transposed else w.shape[0]
        if ctx.input(2).shape != (cout,):
            raise ctx.fail(f"bias '{ctx.node.input[2]}' has shape {list(ctx.input(2).shape)}, the {cout} output "
                           f"channels need [{cout}]")
    strides = ctx.attr("strides", [1] * n)
    dilations = ctx.attr("dilations", [1] * n)
    if min(strides, default=1) <= 0 or min(dilations, default=1) <= 0:
        raise ctx.fail(f"strides {list(strides)} and dilations {list(dilations)} must be positive")


@onnx_op("Conv")
def conv(ctx: ConversionContext) -> None:
    x, w = ctx.input(0), ctx.input(1)
    _check_rank(ctx, x.rank)
    n = x.rank - 2
    group = int(ctx.attr("group", 1))
    kernel = [int(k) for k in ctx.attr("kernel_shape", w.shape[2:])]
    strides, dilations = _spatial_attrs(ctx, n)
    _check_filter(ctx, x, w, kernel, group, transposed=False)
    pads = conv_pads(ctx, x.shape[2:], kernel, strides, dilations)
    cin = x.shape[1]
    bias = ctx.src(2)
    if n == 3:
        attrs = {"stride": strides, "dilation": dilations, "pad_amount": pads, "group": group}
        out = ctx.emit("Conv3d", [ctx.channel_last(0), ctx.tensor(w, (2, 3, 4, 1, 0)), bias], attrs)[0]
        ctx.bind(0, out, channel_last_perm(5))
        return
    xin, was_1d = _to_2d(ctx, x.rank)
    if was_1d:
        strides, dilations, pads = [1, *strides], [1, *dilations], [(0, 0), *pads]
    attrs = {"stride": strides, "dilation": dilations, "pad_amount": pads}
    if group > 1 and group == cin and w.shape[1] == 1:
        out = ctx.emit("DepthWiseConv2d", [xin, _weights_2d(ctx, (2, 3, 1, 0)), bias], attrs)[0]
    else:
        out = ctx.emit("Conv2d", [xin, _weights_2d(ctx, (2, 3, 1, 0)), bias], {**attrs, "group": group})[0]
    _bind_out(ctx, out, was_1d)


def transpose_pads(in_spatial: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
                   dilations: Sequence[int], out_pad: Sequence[int], target: Sequence[int],
                   auto_pad: str, extend: bool = True) -> tuple[list[tuple[int, int]], list[int]]:
    """Pads and output padding that make a transposed convolution's output ``target`` long.

    ONNX: total_padding = stride * (in - 1) + output_padding + ((k - 1) * dilation + 1) - target;
    SAME_UPPER puts total // 2 at the beginning, NOTSET and SAME_LOWER put total - total // 2 there.
    A negative total (the target is longer than the full output) becomes extra output padding at the
    end: positions no input reaches, which get only the bias. With ``extend`` False (auto_pad SAME
    without an output_shape) a negative total counts as 0 and the output stays the full one, as in
    ONNX Runtime (the ONNX reference implementation instead grows it to in * stride).
    """
    pads, out_pads = [], []
    for size, k, s, d, op_, t in zip(in_spatial, kernel, strides, dilations, out_pad, target):
        total = s * (size - 1) + op_ + (k - 1) * d + 1 - int(t)
        if total < 0 and not extend:
            total = 0
        if total < 0:
            pads.append((0, 0))
            out_pads.append(op_ - total)
            continue
        small = total // 2
        pads.append((small, total - small) if auto_pad == "SAME_UPPER" else (total - small, small))
        out_pads.append(op_)
    return pads, out_pads


@onnx_op("ConvTranspose")
def conv_transpose(ctx: ConversionContext) -> None:
    x, w = ctx.input(0), ctx.input(1)
    _check_rank(ctx, x.rank)
    n = x.rank - 2
    group = int(ctx.attr("group", 1))
    kernel = [int(k) for k in ctx.attr("kernel_shape", w.shape[2:])]
    strides, dilations = _spatial_attrs(ctx, n)
    _check_filter(ctx, x, w, kernel, group, transposed=True)
    out_pad = [int(p) for p in ctx.attr("output_padding", [0] * n)]
    out_shape = ctx.attr("output_shape")
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    if len(out_pad) != n:
        raise ctx.fail(f"output_padding must have {n} entries for a {n}-D input")
    spatial = x.shape[2:]
    if out_shape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        if out_shape is not None:
            if len(out_shape) not in (n, n + 2):
                raise ctx.fail(f"output_shape {list(out_shape)} must list the {n} spatial sizes")
            target = [int(t) for t in list(out_shape)[-n:]]
        else:
            target = [d * s for d, s in zip(spatial, strides)]
        pads, out_pad = transpose_pads(spatial, kernel, strides, dilations, out_pad, target, auto_pad,
                                       extend=out_shape is not None)
    elif auto_pad == "VALID":
        pads = [(0, 0)] * n
    else:
        pads = explicit_pads(ctx, n)
    if n == 3:
        attrs = {"stride": strides, "dilation": dilations, "pad_amount": pads, "output_padding": out_pad,
                 "group": group}
        out = ctx.emit("TransposeConv3d", [ctx.channel_last(0), ctx.tensor(w, (2, 3, 4, 0, 1)), ctx.src(2)], attrs)[0]
        ctx.bind(0, out, channel_last_perm(5))
        return
    xin, was_1d = _to_2d(ctx, x.rank)
    if was_1d:
        strides, dilations, pads, out_pad = [1, *strides], [1, *dilations], [(0, 0), *pads], [0, *out_pad]
    attrs = {"stride": strides, "dilation": dilations, "pad_amount": pads, "output_padding": out_pad, "group": group}
    out = ctx.emit("TransposeConv2d", [xin, _weights_2d(ctx, (2, 3, 0, 1)), ctx.src(2)], attrs)[0]
    _bind_out(ctx, out, was_1d)
