"""Convolutions on NHWC activations.

A channel-last tensor permuted to NCHW is an NCHW tensor in channels_last memory, which PyTorch's
oneDNN convolutions run natively; the result permuted back is contiguous NHWC again. No copies.

On the CPU, float32 convolutions with static weights call oneDNN directly
(``torch.ops.mkldnn._convolution_pointwise``) with the weights reordered once, at prepare time, into
oneDNN's blocked layout: ``F.conv2d`` reorders them on every call. The same call can apply an
:class:`Epilogue` -- an element-wise add and a clamp (Relu, ReluMinMax) -- which the plan uses to
fuse ``Conv2d -> ElementWiseAdd -> Relu`` chains into one step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from openqnn.backends.background import deferred
from openqnn.backends.cpu import native
from openqnn.backends.cpu.kernels.registry import (
    BuildContext,
    KernelFn,
    LayerOperands,
    Source,
    Step,
    Unsupported,
    kernel,
)
from openqnn.ir.dtype import DType
from openqnn.ir.graph import Node

__all__ = ["NO_EPILOGUE", "Epilogue", "build_conv2d", "conv2d", "fusable", "mkldnn_ok", "native_conv", "native_ok",
           "transpose_conv2d"]


@dataclass(frozen=True)
class Epilogue:
    """Element-wise work fused after a convolution or FullyConnected: ``clamp(act(y) + add, lo, hi)``.

    ``add`` names a tensor of the output's shape ("" for none); ``clamp`` is ``(lo, hi)``, e.g.
    ``(0, inf)`` for Relu, or None; ``act`` is "" or a GELU (FullyConnected only): ``"gelu"`` (erf) or
    ``"gelu_tanh"`` (its tanh approximation).
    """

    add: str = ""
    clamp: tuple[float, float] | None = None
    act: str = ""

    def apply(self, y: torch.Tensor, other: torch.Tensor | None) -> torch.Tensor:
        """The epilogue in PyTorch ops (what no fused kernel did), in place: ``y`` must be a kernel's
        fresh output (or a view of one) that nothing else holds yet."""
        if self.act:
            y = F.gelu(y, approximate="tanh" if self.act == "gelu_tanh" else "none")
        if other is not None:
            y = y.add_(other)
        if self.clamp is not None:
            lo, hi = self.clamp
            y = y.relu_() if lo == 0.0 and hi == math.inf else y.clamp_(lo, hi)
        return y


NO_EPILOGUE = Epilogue()


def mkldnn_ok(ctx: BuildContext) -> bool:
    """Whether oneDNN's fused fp32 kernels (``torch.ops.mkldnn``) can run this plan's tensors."""
    return (ctx.device.type == "cpu" and ctx.float_dtype is None and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_convolution_pointwise"))


def native_ok(ctx: BuildContext, x_name: str) -> bool:
    """Whether the native float32 kernels (:mod:`openqnn.backends.cpu.native`) can run this float32 input."""
    return (ctx.native and ctx.device.type == "cpu" and ctx.float_dtype is None
            and ctx.dtype(x_name) is DType.FLOAT_32 and native.library() is not None)


def native_conv(node: Node, ctx: BuildContext) -> str:
    """Which native kernel a float32 convolution with static weights takes ("" for none: oneDNN's):
    ``depthwise`` (one weight per channel), ``gemm`` (an unpadded 1x1 stride-1 convolution) or ``conv``: an
    image's first convolution (up to 4 channels and 7x7), and a strided unpadded 1x1 convolution with at most
    2^18 weights (ResNets' downsampling), where the native implicit GEMM beats oneDNN's channels-last kernels
    (measured in ResNet-18 and ResNet-50, one thread, AVX-512 and AVX2: those steps together 7-19% faster; alone,
    ResNet-50's 256 -> 512 downsampling was 6% slower on AVX2). With larger weights, which it reads once per block
    of pixels, and for the other 3x3 convolutions, oneDNN is as fast or faster."""
    c = ctx.shape(node.inputs[0])[3]
    kh, kw, _, cout = ctx.shape(node.inputs[1])
    groups = c if node.op_type == "DepthWiseConv2d" else node.attrs["group"]
    unpadded = not any(p for pad in node.attrs["pad_amount"] for p in pad)
    if groups == c == cout and groups > 1:
        return "depthwise"
    if groups == 1 and kh == kw == 1 and tuple(node.attrs["stride"]) == (1, 1) and unpadded:
        return "gemm"
    if groups == 1 and ((c <= 4 and kh * kw <= 49) or (kh == kw == 1 and unpadded and c * cout <= 2**18)):
        return "conv"
    return ""


def _unary(clamp: tuple[float, float] | None) -> tuple[str, list[float]] | None:
    """oneDNN's name and scalars for a clamp, None when oneDNN has no such post-op."""
    if clamp is None:
        return "none", []
    lo, hi = clamp
    if lo == 0.0 and hi == math.inf:
        return "relu", []
    if math.isfinite(lo) and math.isfinite(hi):
        return "hardtanh", [lo, hi]
    return None


def fusable(epilogue: Epilogue) -> bool:
    """Whether oneDNN's convolution applies all of ``epilogue`` itself (after an add: Relu only)."""
    if epilogue.act:
        return False
    if epilogue.add:
        return epilogue.clamp is None or _unary(epilogue.clamp) == ("relu", [])
    return _unary(epilogue.clamp) is not None


def _padding(node: Node) -> tuple[tuple[int, int], tuple[int, int, int, int] | None]:
    """Symmetric padding for the conv call, or an explicit F.pad (left, right, top, bottom)."""
    (pt, pb), (pl, pr) = node.attrs["pad_amount"]
    if pt == pb and pl == pr:
        return (pt, pl), None
    return (0, 0), (pl, pr, pt, pb)


@kernel("Conv2d", "DepthWiseConv2d")
def conv2d(node: Node, ctx: BuildContext) -> Step:
    return build_conv2d(node, ctx)


def build_conv2d(node: Node, ctx: BuildContext, epilogue: Epilogue = NO_EPILOGUE) -> Step:
    """The step of a Conv2d / DepthWiseConv2d node, followed by ``epilogue``.

    Run-time inputs: x, then the weight and bias when they are not static, then ``epilogue.add``.
    """
    x_name, w_name = node.inputs[0], node.inputs[1]
    b_name = node.inputs[2] if len(node.inputs) > 2 else ""
    if not ctx.dtype(x_name).is_float:
        raise Unsupported(f"{node.op_type} on {ctx.dtype(x_name).name} input")
    stride, dilation = tuple(node.attrs["stride"]), tuple(node.attrs["dilation"])
    groups = ctx.shape(x_name)[3] if node.op_type == "DepthWiseConv2d" else node.attrs["group"]
    padding, explicit = _padding(node)
    static = ctx.is_static(w_name) and (not b_name or ctx.is_static(b_name))
    if static and native_ok(ctx, x_name):
        fast = _native_conv(node, ctx, epilogue)
        if fast is not None:
            return Step(fast[0], [x_name] + ([epilogue.add] if epilogue.add else []), path="native", over=fast[1])
    if static and mkldnn_ok(ctx) and ctx.dtype(x_name) is DType.FLOAT_32:
        n, h, w, c = ctx.shape(x_name)
        if explicit is not None:
            h, w = h + explicit[2] + explicit[3], w + explicit[0] + explicit[1]
        args = (list(padding), list(stride), list(dilation), groups)
        # oneDNN's own layout (blocked for this CPU) cannot be stored: it is made from the plan's [cout, cin/g, kh, kw]
        # weight, in a worker thread while the other steps bind
        (oihw,) = ctx.prepared(f"oihw:{w_name}", lambda: (ctx.static(w_name).permute(3, 2, 0, 1).contiguous(),),
                               [Source(w_name, 0, perm=(2, 3, 1, 0))])
        packed = deferred("oneDNN convolution weights", torch.ops.mkldnn._reorder_convolution_weight, oihw, *args,
                          [n, c, h, w])
        b = ctx.static(b_name).clone() if b_name else None
        fn, over = _mkldnn_conv(packed, b, args, explicit, epilogue)
        return Step(fn, [x_name] + ([epilogue.add] if epilogue.add else []), path="onednn", over=over)
    # [kh, kw, cin/g, cout] -> [cout, cin/g, kh, kw]
    ops = LayerOperands.of(ctx, w_name, b_name, lambda t: t.permute(3, 2, 0, 1).contiguous(
        memory_format=torch.channels_last))
    runtime = [x_name, *ops.runtime] + ([epilogue.add] if epilogue.add else [])

    def run(x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        it = iter(rest)
        w, b = ops.take(it)
        x = x.permute(0, 3, 1, 2)
        if explicit is not None:
            x = F.pad(x, explicit)
        y = F.conv2d(x, w, b, stride, padding, dilation, groups).permute(0, 2, 3, 1)
        return epilogue.apply(y, next(it) if epilogue.add else None)

    return Step(run, runtime)


def _native_conv(node: Node, ctx: BuildContext, epilogue: Epilogue) -> tuple[KernelFn, KernelFn | None] | None:
    """The native float32 kernel of a convolution with static weights that :func:`native_conv` names, epilogue fused,
    and with a residual add its form writing over the residual (the step's ``over``); None for the others. Its
    weights are laid out once (:meth:`~BuildContext.prepared`: a context binary keeps them)."""
    n, h, wd, c = ctx.shape(node.inputs[0])
    w_name, b_name = node.inputs[1], node.inputs[2] if len(node.inputs) > 2 else ""
    kh, kw, _, cout = ctx.shape(w_name)
    out_shape = ctx.graph.tensors[node.outputs[0]].shape
    (pt, _), (pl, _) = node.attrs["pad_amount"]
    (sh, sw), (dh, dw) = node.attrs["stride"], node.attrs["dilation"]
    geo = (n, h, wd, c, kh, kw, sh, sw, dh, dw, pt, pl, out_shape[1], out_shape[2])
    kind = native_conv(node, ctx)
    add = bool(epilogue.add)
    if kind == "depthwise":
        w, b = depthwise_operands(ctx, w_name, b_name)
        dwk = native.Depthwise(w, b, geo, epilogue.clamp)
        return dwk.run, dwk.run_over if add else None  # (x) or (x, other)
    if kind in ("gemm", "conv"):
        panels = gemm_panels(ctx, w_name, b_name, kh * kw * c)
        if kind == "gemm":
            gemm = native.Gemm.of_panels(panels, c, cout, epilogue.clamp)
            return gemm.step(out_shape, add=add), gemm.step_over(out_shape) if add else None
        conv = native.Conv.of_panels(panels, cout, geo, epilogue.clamp)
        return conv.run, conv.run_over if add else None
    return None


def gemm_panels(ctx: BuildContext, w_name: str, b_name: str, k: int, transposed: bool = False) -> native.Panels:
    """The static weight ``w_name`` as the native GEMM's panels (:func:`native.pack`) of its [k, n] rows (the IR's
    convolution weight [kh, kw, cin, cout] read as [kh * kw * cin, cout]; ``transposed``: a FullyConnected weight
    [n, k]), with the bias ``b_name`` ("" for none) padded in; laid out once (:meth:`~BuildContext.prepared`)."""
    nr, n = native.panel_width(), ctx.graph.tensors[w_name].size // k

    def make() -> tuple[torch.Tensor, ...]:
        w = ctx.static(w_name)
        w = w.reshape(-1, k).t() if transposed else w.reshape(k, -1)
        return native.pack(w, ctx.static(b_name) if b_name else None)

    sources = [Source(w_name, 0, (k, nr), (0, n), transposed)] + ([Source(b_name, 1, cols=(0, n))] if b_name else [])
    packed, bias = ctx.prepared(f"sgemm{nr}:{len(w_name)}:{w_name}:{b_name}", make, sources)
    return packed, bias


def depthwise_operands(ctx: BuildContext, w_name: str, b_name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A static depthwise weight (the IR's [kh, kw, 1, c]) as the native kernel's [kh, kw, c] and its bias (zeros for
    none), laid out once (:meth:`~BuildContext.prepared`)."""
    def make() -> tuple[torch.Tensor, ...]:
        w = ctx.static(w_name)
        b = ctx.static(b_name).to(torch.float32) if b_name else torch.zeros(w.shape[3])
        return w[:, :, 0, :].to(torch.float32).contiguous(), b.contiguous()

    sources = [Source(w_name, 0)] + ([Source(b_name, 1)] if b_name else [])
    w, b = ctx.prepared(f"dw:{len(w_name)}:{w_name}:{b_name}", make, sources)
    return w, b


def _mkldnn_conv(cell: list[torch.Tensor], bias: torch.Tensor | None, args: tuple, explicit: tuple | None,
                 epilogue: Epilogue) -> tuple[KernelFn, KernelFn | None]:
    """oneDNN convolution on prepacked weights (``cell[0]``: :func:`deferred`'s, filled before the plan runs), the
    epilogue as post-ops; NHWC in and out: the step's function and, with an add, its form accumulating into the
    residual (the step's ``over``).

    oneDNN fuses the add and, after an add, only a Relu: a clamp it cannot take runs right after.
    """
    conv = torch.ops.mkldnn._convolution_pointwise
    post = Epilogue(clamp=None if fusable(epilogue) else epilogue.clamp)  # what oneDNN leaves to do
    unary = _unary(epilogue.clamp) if fusable(epilogue) else ("none", [])
    assert unary is not None

    def nchw(x: torch.Tensor) -> torch.Tensor:  # NHWC (contiguous) seen as channels_last NCHW
        x = x.contiguous().permute(0, 3, 1, 2)
        return x if explicit is None else F.pad(x, explicit)

    if epilogue.add:
        attr = None if unary[0] == "none" else unary[0]

        def run_add(x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
            other = other.contiguous().permute(0, 3, 1, 2)
            y = conv.binary(nchw(x), other, cell[0], bias, *args, "add", None, attr, [], "").permute(0, 2, 3, 1)
            return post.apply(y, None)

        into = torch.ops.mkldnn._convolution_pointwise_

        def run_over(x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
            if other.dtype != torch.float32 or not other.is_contiguous():
                return run_add(x, other)
            into.binary(other.permute(0, 3, 1, 2), nchw(x), cell[0], bias, *args, "add", None, attr, [], "")
            return post.apply(other, None)

        return run_add, run_over if hasattr(into, "binary") else None

    attr, scalars = unary

    def run(x: torch.Tensor) -> torch.Tensor:
        return post.apply(conv.default(nchw(x), cell[0], bias, *args, attr, scalars, "").permute(0, 2, 3, 1), None)

    return run, None


@kernel("TransposeConv2d")
def transpose_conv2d(node: Node, ctx: BuildContext) -> Step:
    x_name, w_name = node.inputs[0], node.inputs[1]
    b_name = node.inputs[2] if len(node.inputs) > 2 else ""
    stride, dilation = tuple(node.attrs["stride"]), tuple(node.attrs["dilation"])
    out_pad, groups = tuple(node.attrs["output_padding"]), node.attrs["group"]
    (pt, pb), (pl, pr) = node.attrs["pad_amount"]
    kh, kw, cin, cout_g = ctx.shape(w_name)
    oh, ow = ctx.graph.tensors[node.outputs[0]].shape[1:3]

    # [kh, kw, cin, cout/g] -> [cin, cout/g, kh, kw]
    ops = LayerOperands.of(ctx, w_name, b_name, lambda t: t.permute(2, 3, 0, 1).contiguous())

    def run(x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        w, b = ops.take(iter(rest))
        # the full (unpadded) transposed convolution, cropped by the pads; output_padding positions at
        # the end receive no contributions, only the bias
        y = F.conv_transpose2d(x.permute(0, 3, 1, 2), w, None, stride, 0, 0, groups, dilation)
        grow_h, grow_w = max(0, pt + oh - y.shape[2]), max(0, pl + ow - y.shape[3])
        if grow_h or grow_w:
            y = F.pad(y, (0, grow_w, 0, grow_h))
        y = y[:, :, pt:pt + oh, pl:pl + ow]
        if b is not None:
            y = y + b.view(1, -1, 1, 1)
        return y.permute(0, 2, 3, 1)

    del pb, pr, kh, kw, cin, cout_g, out_pad
    return Step(run, [x_name, *ops.runtime])
