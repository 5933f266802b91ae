"""Conv and ConvTranspose (1-D through a height-1 2-D convolution, and 2-D)."""

from __future__ import annotations

from openqnn.frontends.onnx.context import ConversionContext, channel_last_perm
from openqnn.frontends.onnx.registry import onnx_op
from openqnn.frontends.onnx.translations.common import conv_pads


def _to_2d(ctx: ConversionContext, rank: int) -> tuple[str, bool]:
    """Channel-last input as rank 4: a rank-3 (N, C, W) input becomes (N, 1, W, C)."""
    x = ctx.channel_last(0)
    if rank == 4:
        return x, False
    if rank != 3:
        raise ctx.fail(f"{rank - 2}-D convolution is not supported (1-D and 2-D are)")
    n, w, c = ctx.graph.tensors[x].shape
    return ctx.emit("Reshape", [x], {"shape": (n, 1, w, c)}, name=f"{x}_as2d")[0], True


def _bind_out(ctx: ConversionContext, out: str, was_1d: bool) -> None:
    if was_1d:
        n, _, w, c = ctx.graph.tensors[out].shape
        out = ctx.emit("Reshape", [out], {"shape": (n, w, c)})[0]
        ctx.bind(0, out, channel_last_perm(3))
    else:
        ctx.bind(0, out, channel_last_perm(4))


def _weights_2d(ctx: ConversionContext, perm: tuple[int, int, int, int]) -> str:
    """The filter input, made rank 4 (1-D kernels get a height of 1) and permuted by ``perm``."""
    w = ctx.input(1)
    if w.rank == 3:
        from openqnn.frontends.onnx.context import Value

        if w.const is not None:
            data = w.const[:, :, None, :]
            return ctx.tensor(Value(None, data.shape, w.dtype, None, data, w.hint), perm)
        src = ctx.tensor(w)
        a, b, k = ctx.graph.tensors[src].shape
        r = ctx.emit("Reshape", [src], {"shape": (a, b, 1, k)}, name=f"{src}_as2d")[0]
        return ctx.emit("Transpose", [r], {"perm": perm})[0]
    return ctx.tensor(w, perm)


def _spatial_attrs(ctx: ConversionContext, n: int) -> tuple[list[int], list[int]]:
    strides = list(ctx.attr("strides", [1] * n))
    dilations = list(ctx.attr("dilations", [1] * n))
    return strides, dilations


@onnx_op("Conv")
def conv(ctx: ConversionContext) -> None:
    x, w = ctx.input(0), ctx.input(1)
    n = x.rank - 2
    group = int(ctx.attr("group", 1))
    kernel = list(ctx.attr("kernel_shape", w.shape[2:]))
    strides, dilations = _spatial_attrs(ctx, n)
    pads = conv_pads(ctx, x.shape[2:], kernel, strides, dilations)
    xin, was_1d = _to_2d(ctx, x.rank)
    if was_1d:
        strides, dilations, pads = [1, *strides], [1, *dilations], [(0, 0), *pads]
    cin, cout = x.shape[1], w.shape[0]
    bias = ctx.src(2)
    attrs = {"stride": strides, "dilation": dilations, "pad_amount": pads}
    if group > 1 and group == cin and w.shape[1] == 1:
        out = ctx.emit("DepthWiseConv2d", [xin, _weights_2d(ctx, (2, 3, 1, 0)), bias], attrs)[0]
    else:
        del cout
        out = ctx.emit("Conv2d", [xin, _weights_2d(ctx, (2, 3, 1, 0)), bias], {**attrs, "group": group})[0]
    _bind_out(ctx, out, was_1d)


@onnx_op("ConvTranspose")
def conv_transpose(ctx: ConversionContext) -> None:
    x, w = ctx.input(0), ctx.input(1)
    n = x.rank - 2
    group = int(ctx.attr("group", 1))
    kernel = list(ctx.attr("kernel_shape", w.shape[2:]))
    strides, dilations = _spatial_attrs(ctx, n)
    out_pad = list(ctx.attr("output_padding", [0] * n))
    out_shape = ctx.attr("output_shape")
    auto_pad = ctx.attr("auto_pad", "NOTSET")
    if out_shape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        spatial = x.shape[2:]
        target = list(out_shape)[-n:] if out_shape is not None else [d * s for d, s in zip(spatial, strides)]
        pads = []
        for size, k, s, d, op_, t in zip(spatial, kernel, strides, dilations, out_pad, target):
            total = max(0, s * (size - 1) + op_ + (k - 1) * d + 1 - t)
            half = total // 2
            pads.append((total - half, half) if auto_pad == "SAME_LOWER" else (half, total - half))
    elif auto_pad == "VALID":
        pads = [(0, 0)] * n
    else:
        p = list(ctx.attr("pads", [0] * (2 * n)))
        pads = [(int(p[i]), int(p[i + n])) for i in range(n)]
    xin, was_1d = _to_2d(ctx, x.rank)
    if was_1d:
        strides, dilations, pads, out_pad = [1, *strides], [1, *dilations], [(0, 0), *pads], [0, *out_pad]
    attrs = {"stride": strides, "dilation": dilations, "pad_amount": pads, "output_padding": out_pad, "group": group}
    out = ctx.emit("TransposeConv2d", [xin, _weights_2d(ctx, (2, 3, 0, 1)), ctx.src(2)], attrs)[0]
    _bind_out(ctx, out, was_1d)
