"""Resize, Upsample, InstanceNormalization, GroupNormalization, LRN, LpNormalization, DepthToSpace,
SpaceToDepth and Pad."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from openqnn.frontends.onnx.context import ConversionContext, Perm, channel_last_perm
from openqnn.frontends.onnx.registry import onnx_op
from openqnn.frontends.onnx.translations.common import as_ints, ir_axis, norm_axis
from openqnn.ops.shape import CRD, DCR, PAD_CONSTANT, PAD_EDGE, PAD_MIRROR_REFLECT

_F32 = np.float32


# -- Resize / Upsample --------------------------------------------------------------------------------

_TRANSFORMATIONS = {"half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn",
                    "half_pixel_symmetric", "tf_crop_and_resize"}
_NEAREST_MODES = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"}


def _floats(ctx: ConversionContext, index: int, what: str) -> list[float] | None:
    """A constant float input, or None when it is absent or empty."""
    if not ctx.has(index):
        return None
    data = np.asarray(ctx.const(index, what)).reshape(-1)
    return [float(v) for v in data] if data.size else None


def _resize_shape(ctx: ConversionContext, in_shape: Sequence[int], scales: list[float] | None,
                  sizes: list[int] | None, axes: list[int], policy: str) -> tuple[list[int], list[np.float32]]:
    """Output shape and per-dim float32 scales, computed the way ONNX Runtime computes them:
    out = trunc(float32(scale) * in) from scales; scale = float32(out) / float32(in) from sizes."""
    rank = len(in_shape)
    out, sc = list(in_shape), [_F32(1)] * rank
    if scales is not None:
        if len(scales) != len(axes):
            raise ctx.fail(f"scales has {len(scales)} values for {len(axes)} axes")
        for a, s in zip(axes, scales):
            if not s > 0:
                raise ctx.fail(f"scale {s} of axis {a} is not positive")
            sc[a] = _F32(s)
            out[a] = int(_F32(s) * _F32(in_shape[a]))
        return out, sc
    if sizes is None:
        raise ctx.fail("neither scales nor sizes is given")
    if len(sizes) != len(axes):
        raise ctx.fail(f"sizes has {len(sizes)} values for {len(axes)} axes")
    for a, n in zip(axes, sizes):
        out[a] = int(n)
        sc[a] = _F32(n) / _F32(in_shape[a]) if in_shape[a] else _F32(1)
    if policy in ("not_larger", "not_smaller"):
        pick = min if policy == "not_larger" else max
        s = pick(sc[a] for a in axes)
        for a in axes:
            sc[a] = s
            out[a] = int(np.floor(abs(float(_F32(s) * _F32(in_shape[a]))) + 0.5))  # std::round
    elif policy != "stretch":
        raise ctx.fail(f"keep_aspect_ratio_policy={policy!r} is not valid; use stretch, not_larger or not_smaller")
    if any(n <= 0 for n in out) and not any(d == 0 for d in in_shape):
        raise ctx.fail(f"sizes give an empty output shape {out}")
    return out, sc


def _emit_resize(ctx: ConversionContext, out: list[int], scales: list[np.float32], attrs: dict,
                 roi: list[float] | None = None, scales_given: bool = True) -> None:
    """One IR Resize: channel-last when batch and channels are kept, else in the input's layout.
    ``scales_given`` False (the model gave sizes) leaves the IR scales empty: output / input."""
    x = ctx.input(0)
    rank = x.rank
    if list(out) == list(x.shape):  # nothing is resized: ONNX Runtime copies the input, whatever the scales
        ctx.alias(0, x)
        return
    perm: Perm | None
    if rank >= 3 and out[0] == x.shape[0] and out[1] == x.shape[1] and scales[0] == 1 and scales[1] == 1:
        perm = channel_last_perm(rank)
    else:
        perm = x.perm
    order = list(perm) if perm is not None else list(range(rank))
    ir_attrs = dict(attrs)
    ir_attrs["output_shape"] = [out[p] for p in order]
    ir_attrs["scales"] = [float(scales[p]) for p in order] if scales_given else []
    if roi is not None:
        ir_attrs["roi"] = [roi[p] for p in order] + [roi[rank + p] for p in order]
    y = ctx.emit("Resize", [ctx.tensor(x, perm)], ir_attrs)[0]
    ctx.bind(0, y, perm)


def _legacy_mode(ctx: ConversionContext) -> str:
    mode = str(ctx.attr("mode", "nearest")).lower()
    if mode == "bilinear":
        mode = "linear"
    if mode not in ("nearest", "linear"):
        raise ctx.fail(f"mode={mode!r} is not valid here; use nearest or linear")
    return mode


def _nearest_simple(scales: list[np.float32]) -> str:
    """ONNX Runtime's nearest rounding before opset 11: floor when upsampling, ceil when downsampling."""
    resized = [s for s in scales if s != 1]
    if all(s > 1 for s in resized):
        return "floor"
    if all(s < 1 for s in resized):
        return "ceil"
    return "simple"


def _legacy_resize(ctx: ConversionContext, scales: list[float] | None) -> None:
    """Upsample (opsets 7, 9) and Resize-10: scales only, asymmetric coordinates."""
    x = ctx.input(0)
    if scales is None:
        raise ctx.fail("scales is missing or empty")
    mode = _legacy_mode(ctx)
    out, sc = _resize_shape(ctx, x.shape, scales, None, list(range(x.rank)), "stretch")
    attrs = {"interpolation_mode": mode, "transformation_mode": "asymmetric",
             "nearest_mode": _nearest_simple(sc)}
    _emit_resize(ctx, out, sc, attrs)


@onnx_op("Upsample")
def upsample(ctx: ConversionContext) -> None:
    if ctx.opset < 9:
        s = ctx.attr("scales")
        _legacy_resize(ctx, None if s is None else [float(v) for v in s])
    else:
        _legacy_resize(ctx, _floats(ctx, 1, "scales"))


@onnx_op("Resize")
def resize(ctx: ConversionContext) -> None:
    x = ctx.input(0)
    if ctx.opset < 11:
        _legacy_resize(ctx, _floats(ctx, 1, "scales"))
        return
    mode = str(ctx.attr("mode", "nearest"))
    if mode not in ("nearest", "linear", "cubic"):
        raise ctx.fail(f"mode={mode!r} is not valid; use nearest, linear or cubic")
    ctm = str(ctx.attr("coordinate_transformation_mode", "half_pixel"))
    if ctm not in _TRANSFORMATIONS or (ctm == "half_pixel_symmetric" and ctx.opset < 19):
        raise ctx.fail(f"coordinate_transformation_mode={ctm!r} is not valid in opset {ctx.opset}")
    nearest_mode = str(ctx.attr("nearest_mode", "round_prefer_floor"))
    if mode == "nearest" and nearest_mode not in _NEAREST_MODES:
        raise ctx.fail(f"nearest_mode={nearest_mode!r} is not valid; use {', '.join(sorted(_NEAREST_MODES))}")
    axes = list(range(x.rank))
    policy = "stretch"
    antialias = False
    if ctx.opset >= 18:
        a = ctx.attr("axes")
        if a is not None:
            axes = [norm_axis(int(v), x.rank) for v in a]
            if len(set(axes)) != len(axes) or any(not 0 <= v < x.rank for v in axes):
                raise ctx.fail(f"axes {list(a)} are not distinct axes of a rank-{x.rank} input")
        policy = str(ctx.attr("keep_aspect_ratio_policy", "stretch"))
        antialias = bool(int(ctx.attr("antialias", 0))) and mode != "nearest"
    scales = _floats(ctx, 2, "scales")
    sizes = None
    if scales is None:
        if not ctx.has(3):
            raise ctx.fail("Resize needs scales or sizes")
        sizes = as_ints(ctx.const(3, "sizes"))
    out, sc = _resize_shape(ctx, x.shape, scales, sizes, axes, policy if sizes is not None else "stretch")
    roi = None
    if ctm == "tf_crop_and_resize":
        given = _floats(ctx, 1, "roi")
        if given is None:
            raise ctx.fail("coordinate_transformation_mode=tf_crop_and_resize needs a constant roi input")
        if len(given) != 2 * len(axes):
            raise ctx.fail(f"roi has {len(given)} values; {2 * len(axes)} expected")
        roi = [0.0] * x.rank + [1.0] * x.rank
        for k, a in enumerate(axes):
            roi[a], roi[x.rank + a] = given[k], given[len(axes) + k]
    attrs = {
        "interpolation_mode": mode,
        "transformation_mode": ctm,
        "nearest_mode": nearest_mode,
        "cubic_coeff": float(ctx.attr("cubic_coeff_a", -0.75)),
        "exclude_outside": bool(int(ctx.attr("exclude_outside", 0))),
        "antialias": antialias,
        "extrapolation_value": float(ctx.attr("extrapolation_value", 0.0)),
    }
    _emit_resize(ctx, out, sc, attrs, roi, scales_given=scales is not None or policy != "stretch")


# -- normalizations -------------------------------------------------------------------------------

def _channel_param(ctx: ConversionContext, index: int, channels: int, repeat: int = 1) -> str:
    """A per-channel parameter [C] (or [C / repeat], each value repeated ``repeat`` times) as an IR tensor."""
    v = ctx.input(index)
    if v.const is not None:
        data = np.repeat(np.asarray(v.const).reshape(-1), repeat)
        if data.size != channels:
            raise ctx.fail(f"input {index} has {v.const.size} values; {channels // repeat} expected")
        if v.rank == 1 and repeat == 1:
            return ctx.tensor(v)
        return ctx.add_static(f"{v.hint or 'param'}_per_channel", data)
    src = ctx.tensor(v)
    n = int(np.prod(v.shape, dtype=np.int64))
    if n * repeat != channels:
        raise ctx.fail(f"input {index} has {n} values; {channels // repeat} expected")
    if repeat == 1:
        return ctx.emit("Reshape", [src], {"shape": (channels,)}, name=f"{src}_flat")[0] if v.rank != 1 else src
    col = ctx.emit("Reshape", [src], {"shape": (n, 1)}, name=f"{src}_col")[0]
    tiled = ctx.emit("Tile", [col], {"multiples": (1, repeat)}, name=f"{src}_per_channel")[0]
    return ctx.emit("Reshape", [tiled], {"shape": (channels,)}, name=f"{src}_flat")[0]


@onnx_op("InstanceNormalization")
def instance_norm(ctx: ConversionContext) -> None:
    x = ctx.input(0)
    if x.rank < 3:
        raise ctx.fail(f"InstanceNormalization needs a rank >= 3 input (N, C, D1, ...); it has rank {x.rank}")
    c = x.shape[1]
    out = ctx.emit("InstanceNorm", [ctx.channel_last(0), _channel_param(ctx, 1, c), _channel_param(ctx, 2, c)],
                   {"epsilon": float(ctx.attr("epsilon", 1e-5))})[0]
    ctx.bind(0, out, channel_last_perm(x.rank))


@onnx_op("GroupNormalization")
def group_norm(ctx: ConversionContext) -> None:
    x = ctx.input(0)
    if x.rank < 3:
        raise ctx.fail(f"GroupNormalization needs a rank >= 3 input (N, C, D1, ...); it has rank {x.rank}")
    if ctx.attr("num_groups") is None:
        raise ctx.fail("attribute num_groups is missing")
    groups = int(ctx.attr("num_groups"))
    c = x.shape[1]
    if groups <= 0 or c % groups:
        raise ctx.fail(f"{c} channels do not split into num_groups={groups}")
    # opsets 18-20: scale and bias hold one value per group; opset 21: one per channel
    repeat = c // groups if ctx.opset < 21 else 1
    params = [_channel_param(ctx, i, c, repeat) for i in (1, 2)]
    out = ctx.emit("GroupNorm", [ctx.channel_last(0), *params],
                   {"group": groups, "epsilon": float(ctx.attr("epsilon", 1e-5))})[0]
    ctx.bind(0, out, channel_last_perm(x.rank))


@onnx_op("LRN")
def lrn(ctx: ConversionContext) -> None:
    x = ctx.input(0)
    size = int(ctx.attr("size"))
    if size <= 0 or size % 2 == 0:
        raise ctx.fail(f"LRN size={size}: only odd window sizes are supported (the IR window is 2*radius+1 "
                       "channels centred on each channel)")
    if x.rank < 3:
        raise ctx.fail(f"LRN needs a rank >= 3 input (N, C, D1, ...); it has rank {x.rank}")
    alpha = float(ctx.attr("alpha", 1e-4))
    attrs = {"alpha": alpha / size, "beta": float(ctx.attr("beta", 0.75)), "bias": float(ctx.attr("bias", 1.0)),
             "radius": (size - 1) // 2}
    out = ctx.emit("Lrn", [ctx.channel_last(0)], attrs)[0]
    ctx.bind(0, out, channel_last_perm(x.rank))


@onnx_op("LpNormalization")
def lp_norm(ctx: ConversionContext) -> None:
    x = ctx.input(0)
    p = int(ctx.attr("p", 2))
    if p not in (1, 2):
        raise ctx.fail(f"p={p} is not valid; LpNormalization takes p=1 or p=2")
    axis = ir_axis(x, int(ctx.attr("axis", -1)))
    xin = ctx.tensor(x, x.perm)
    if p == 2:
        out = ctx.emit("L2Norm", [xin], {"axes": (axis,), "epsilon": 1e-30})[0]
    else:
        out = ctx.emit("LpNorm", [xin], {"axis": axis, "p": 1})[0]
    ctx.bind(0, out, x.perm)


# -- depth/space ----------------------------------------------------------------------------------

@onnx_op("DepthToSpace", "SpaceToDepth")
def depth_space(ctx: ConversionContext) -> None:
    x = ctx.input(0)
    if x.rank != 4:
        raise ctx.fail(f"{ctx.node.op_type} needs a rank-4 input; it has rank {x.rank}")
    bs = int(ctx.attr("blocksize"))
    mode = str(ctx.attr("mode", "DCR"))  # SpaceToDepth has a mode since opset 28
    if mode not in ("DCR", "CRD"):
        raise ctx.fail(f"mode={mode!r} is not valid; use DCR or CRD")
    n, c, h, w = x.shape
    if ctx.node.op_type == "DepthToSpace" and c % (bs * bs):
        raise ctx.fail(f"{c} channels are not divisible by blocksize^2 = {bs * bs}")
    if ctx.node.op_type == "SpaceToDepth" and (h % bs or w % bs):
        raise ctx.fail(f"spatial size {h}x{w} is not divisible by blocksize {bs}")
    xin = ctx.channel_last(0)
    if ctx.node.op_type == "SpaceToDepth" and mode == "CRD":
        # QNN's SpaceToDepth is DCR only: out channel = c * bs * bs + by * bs + bx, by data movement
        t = ctx.emit("Reshape", [xin], {"shape": (n, h // bs, bs, w // bs, bs, c)})[0]
        t = ctx.emit("Transpose", [t], {"perm": (0, 1, 3, 5, 2, 4)})[0]
        out = ctx.emit("Reshape", [t], {"shape": (n, h // bs, w // bs, c * bs * bs)})[0]
    else:
        out = ctx.emit(ctx.node.op_type, [xin], {"block_size": (bs, bs), "mode": CRD if mode == "CRD" else DCR})[0]
    ctx.bind(0, out, channel_last_perm(4))


# -- Pad ------------------------------------------------------------------------------------------

_SCHEMES = {"constant": PAD_CONSTANT, "reflect": PAD_MIRROR_REFLECT, "edge": PAD_EDGE}


@onnx_op("Pad")
def pad(ctx: ConversionContext) -> None:
    x = ctx.input(0)
    rank = x.rank
    mode = str(ctx.attr("mode", "constant"))
    if mode not in (*_SCHEMES, "wrap") or (mode == "wrap" and ctx.opset < 19):
        raise ctx.fail(f"mode={mode!r} is not valid in opset {ctx.opset}")
    axes = list(range(rank))
    if ctx.opset < 11:
        pads = [int(v) for v in ctx.attr("pads")]
        value = float(ctx.attr("value", 0.0))
    else:
        pads = as_ints(ctx.const(1, "pads"))
        cv = ctx.maybe_const(2) if ctx.has(2) else None
        if ctx.has(2) and cv is None:
            raise ctx.fail("a constant_value computed at run time is not supported")
        value = float(np.asarray(cv).reshape(-1)[0]) if cv is not None and np.asarray(cv).size else 0.0
        if ctx.opset >= 18 and ctx.has(3):
            axes = [norm_axis(a, rank) for a in as_ints(ctx.const(3, "axes"))]
    n = len(axes)
    if len(pads) != 2 * n:
        raise ctx.fail(f"pads has {len(pads)} values; {2 * n} expected")
    per_dim = [(0, 0)] * rank
    for k, a in enumerate(axes):
        if not 0 <= a < rank:
            raise ctx.fail(f"axis {a} is out of range for rank {rank}")
        per_dim[a] = (pads[k], pads[k + n])
    for (b, e), d in zip(per_dim, x.shape):
        if d + b + e < 0 or (mode != "constant" and (-b >= d or -e >= d)):
            raise ctx.fail(f"pads {pads} remove more than the whole of dim size {d}")

    perm = x.perm
    order = list(perm) if perm is not None else list(range(rank))
    ir_shape = [x.shape[p] for p in order]
    ir_pads = [per_dim[p] for p in order]
    t = ctx.tensor(x, perm)
    changed = False
    if any(b < 0 or e < 0 for b, e in ir_pads):  # negative pads crop
        ranges = [(max(0, -b), d - max(0, -e), 1) for (b, e), d in zip(ir_pads, ir_shape)]
        t = ctx.emit("StridedSlice", [t], {"ranges": ranges}, name=f"{ctx.node.name or ctx.node.output[0]}_crop")[0]
        ir_shape = [hi - lo for lo, hi, _ in ranges]
        ir_pads = [(max(0, b), max(0, e)) for b, e in ir_pads]
        changed = True
    if mode == "wrap":
        for i, ((b, e), d) in enumerate(zip(ir_pads, ir_shape)):
            if b or e:
                if d == 0:
                    raise ctx.fail("wrap padding of an empty dim")
                idx = (np.arange(-b, d + e) % d).astype(np.int64)
                t = ctx.emit("Gather", [t, ctx.add_static(f"{t}_wrap_index", idx)], {"axis": i})[0]
                changed = True
    elif any(b or e for b, e in ir_pads):
        t = ctx.emit("Pad", [t], {"pad_amount": ir_pads, "scheme": _SCHEMES[mode], "pad_constant_value": value})[0]
        changed = True
    if not changed:  # all pads are 0
        ctx.alias(0, x)
        return
    ctx.bind(0, t, perm)
