"""htp integer kernels: data movement, Concat, Split, Pad, Gather, Cast (see registry.py).

Movement ops move integers unchanged, requantized first where the output encoding differs from the
input's (common.py). Concat requantizes each input to the output encoding that way, except, with
``htp_config.arithmetic: "qnn"`` (v68, v73), an 8-bit graph input, which QNN EP quantizes from its float values
straight into the output's encoding through float16 (``spec/qnn_eltwise.py``). Pad's constant
is ``pad_constant_value`` quantized (round half to even, clamped) in the output encoding.

Each builder makes a :class:`StepPlan` (shapes, permutations, index arrays, the requantization's
integers); the binder beside it (``htp.<kernel>``) rebuilds the numpy spec and the torch path from
the plan alone.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from openqnn.backends.htp import native
from openqnn.backends.htp.fixedpoint import INT32_MAX, INT32_MIN, mbqm_np, mbqm_t, quantize_multiplier
from openqnn.backends.htp.kernels.common import (
    Flow,
    act_q,
    c_array,
    const_step,
    flow,
    move_kernel,
    movement_plan,
    out_attrs,
    static_value,
    tensor_of,
    to_storage,
)
from openqnn.backends.htp.kernels.registry import (
    HtpBuildContext,
    HtpStep,
    Unsupported,
    bind_step,
    compact_codes,
    htp_binder,
    htp_kernel,
    plan_tensor,
    wide_codes,
)
from openqnn.backends.htp.spec.qnn_eltwise import input_quantize_table
from openqnn.backends.plan import StepPlan
from openqnn.ir.graph import Node
from openqnn.ops.shape import CRD, PAD_CONSTANT, PAD_EDGE, PAD_MIRROR_REFLECT, PAD_MIRROR_SYMMETRIC

__all__ = [
    "cast",
    "concat",
    "depth_space",
    "gather",
    "gather_elements",
    "pad",
    "reshape",
    "split",
    "strided_slice",
    "tile",
    "transpose",
]


Moves = tuple[Callable[[np.ndarray], np.ndarray], Callable[[torch.Tensor], torch.Tensor]]
Attrs = Mapping[str, Any]
Arrays = Mapping[str, np.ndarray]


# -- pure movement -------------------------------------------------------------------------------

@htp_kernel("Reshape")
def reshape(node: Node, ctx: HtpBuildContext) -> HtpStep:
    return movement_plan(node, ctx, "htp.reshape", {"shape": list(ctx.shape(node.outputs[0]))})


@move_kernel("htp.reshape")
def _reshape_moves(attrs: Attrs, arrays: Arrays, device: torch.device) -> Moves:
    shape = tuple(attrs["shape"])
    return (lambda a: a.reshape(shape)), (lambda t: t.reshape(shape))


@htp_kernel("Transpose")
def transpose(node: Node, ctx: HtpBuildContext) -> HtpStep:
    perm = [int(p) for p in node.attrs["perm"]]
    image = perm == [0, 2, 3, 1] and ctx.shape(node.inputs[0])[1] == 3
    return movement_plan(node, ctx, "htp.transpose", {"perm": perm, "nchw3_to_nhwc": image})


@move_kernel("htp.transpose")
def _transpose_moves(attrs: Attrs, arrays: Arrays, device: torch.device) -> Moves:
    perm = tuple(attrs["perm"])
    if not attrs["nchw3_to_nhwc"] or not native.int8_available():
        return (lambda a: np.transpose(a, perm)), (lambda t: t.permute(perm))

    def to_nhwc(t: torch.Tensor) -> torch.Tensor:  # an image input's NCHW -> NHWC, in C
        if t.dtype == torch.uint8 and t.device.type == "cpu" and t.is_contiguous():
            return native.nchw3_to_nhwc(t)
        return t.permute(perm)

    return (lambda a: np.transpose(a, perm)), to_nhwc


@htp_kernel("Tile")
def tile(node: Node, ctx: HtpBuildContext) -> HtpStep:
    return movement_plan(node, ctx, "htp.tile", {"reps": [int(r) for r in node.attrs["multiples"]]})


@move_kernel("htp.tile")
def _tile_moves(attrs: Attrs, arrays: Arrays, device: torch.device) -> Moves:
    reps = tuple(attrs["reps"])
    return (lambda a: np.tile(a, reps)), (lambda t: t.repeat(reps))


@htp_kernel("StridedSlice")
def strided_slice(node: Node, ctx: HtpBuildContext) -> HtpStep:
    ranges = [[int(v) for v in r] for r in node.attrs["ranges"]]
    return movement_plan(node, ctx, "htp.strided_slice", {"ranges": ranges, "shape": list(ctx.shape(node.inputs[0]))})


@move_kernel("htp.strided_slice")
def _strided_slice_moves(attrs: Attrs, arrays: Arrays, device: torch.device) -> Moves:
    ranges = [tuple(r) for r in attrs["ranges"]]
    shape = attrs["shape"]
    # numpy: negative steps directly (an end of -1 runs past index 0)
    np_index = tuple(slice(b, None if (s < 0 and e < 0) else e, s) for b, e, s in ranges)
    # torch has no negative steps: flip those dims, then slice forward
    flips = tuple(i for i, (_, _, s) in enumerate(ranges) if s < 0)
    t_index = tuple(slice(b, e, s) if s > 0 else slice(n - 1 - b, n - 1 - e, -s)
                    for (b, e, s), n in zip(ranges, shape))

    def move_t(t: torch.Tensor) -> torch.Tensor:
        return (torch.flip(t, flips) if flips else t)[t_index]

    return (lambda a: a[np_index]), move_t


@htp_kernel("DepthToSpace", "SpaceToDepth")
def depth_space(node: Node, ctx: HtpBuildContext) -> HtpStep:
    bh, bw = (int(v) for v in node.attrs["block_size"])
    mode = node.attrs["mode"]
    n, h, w, c = ctx.shape(node.inputs[0])
    if node.op_type == "DepthToSpace":
        oc = c // (bh * bw)
        # CRD: channel = oc_i * bh * bw + by * bw + bx; DCR: channel = (by * bw + bx) * oc + oc_i
        split = (n, h, w, oc, bh, bw) if mode == CRD else (n, h, w, bh, bw, oc)
        perm = (0, 1, 4, 2, 5, 3) if mode == CRD else (0, 1, 3, 2, 4, 5)
        final = (n, h * bh, w * bw, oc)
    else:
        if mode == CRD:
            raise Unsupported("SpaceToDepth in CRD mode")
        split = (n, h // bh, bh, w // bw, bw, c)
        perm = (0, 1, 3, 2, 4, 5)
        final = (n, h // bh, w // bw, bh * bw * c)
    return movement_plan(node, ctx, "htp.depth_space", {"split": list(split), "perm": list(perm), "final": list(final)})


@move_kernel("htp.depth_space")
def _depth_space_moves(attrs: Attrs, arrays: Arrays, device: torch.device) -> Moves:
    split, perm, final = tuple(attrs["split"]), tuple(attrs["perm"]), tuple(attrs["final"])
    return (lambda a: np.transpose(a.reshape(split), perm).reshape(final),
            lambda t: t.reshape(split).permute(perm).reshape(final))


def _pad_index(scheme: int, n: int, before: int, after: int) -> np.ndarray:
    """Source index along one dim of every padded position (edge and mirror schemes)."""
    r = np.arange(-before, n + after)
    if scheme == PAD_EDGE:
        return np.clip(r, 0, n - 1)
    if scheme == PAD_MIRROR_REFLECT:
        period = 2 * (n - 1) if n > 1 else 1
        r = np.abs(r) % period
        return np.where(r >= n, period - r, r)
    if scheme == PAD_MIRROR_SYMMETRIC:
        r = np.where(r < 0, -r - 1, r) % (2 * n)
        return np.where(r >= n, 2 * n - 1 - r, r)
    raise Unsupported(f"Pad scheme {scheme}")


@htp_kernel("Pad")
def pad(node: Node, ctx: HtpBuildContext) -> HtpStep:
    pads = [[int(a), int(b)] for a, b in node.attrs["pad_amount"]]
    scheme, value = node.attrs["scheme"], float(node.attrs["pad_constant_value"])
    if scheme == PAD_CONSTANT:
        qo = act_q(ctx, node.outputs[0])
        if qo is None:
            fill: int | float = int(value)
        else:
            fill = int(qo.codes(value))
        return movement_plan(node, ctx, "htp.pad_constant", {"pads": pads, "fill": fill})
    shape = ctx.shape(node.inputs[0])
    plan = [(i, _pad_index(scheme, shape[i], a, b)) for i, (a, b) in enumerate(pads) if (a, b) != (0, 0)]
    if any(shape[i] == 0 for i, _ in plan):
        raise Unsupported("Pad of an empty dim with a non-constant scheme")
    return movement_plan(node, ctx, "htp.pad_index", {"axes": [i for i, _ in plan]},
                         {f"index{i}": idx for i, idx in plan})


@move_kernel("htp.pad_constant")
def _pad_constant_moves(attrs: Attrs, arrays: Arrays, device: torch.device) -> Moves:
    pads, fill = [tuple(p) for p in attrs["pads"]], attrs["fill"]
    flat = [v for a, b in reversed(pads) for v in (a, b)]
    return (lambda a: np.pad(a, pads, constant_values=fill)), (lambda t: F.pad(t, flat, value=fill))


@move_kernel("htp.pad_index")
def _pad_index_moves(attrs: Attrs, arrays: Arrays, device: torch.device) -> Moves:
    plan = [(i, np.asarray(arrays[f"index{i}"])) for i in attrs["axes"]]
    plan_t = [(i, plan_tensor(idx, device)) for i, idx in plan]

    def move_np(a: np.ndarray) -> np.ndarray:
        for i, idx in plan:
            a = np.take(a, idx, axis=i)
        return a

    def move_t(t: torch.Tensor) -> torch.Tensor:
        for i, idx in plan_t:
            t = torch.index_select(t, i, idx)
        return t

    return move_np, move_t


@move_kernel("htp.copy")
def _copy_moves(attrs: Attrs, arrays: Arrays, device: torch.device) -> Moves:
    """No movement: the flow alone (a requantization, or a plain integer conversion)."""
    return (lambda a: a), (lambda t: t)


@htp_kernel("Cast")
def cast(node: Node, ctx: HtpBuildContext) -> HtpStep:
    """Quantized float -> quantized float: a requantization; integer -> integer: a plain conversion.

    Integer (or bool) -> quantized float (a 0/1 mask made float): the integer clamped to int32, then
    ``q = clamp(z + mbqm(v, 1 / s))`` (quantize_multiplier of the reciprocal scale). Quantized float ->
    integer: a table of the codes, ``trunc(s * (q - z))`` in float64 (bool: ``q != z``)."""
    x, y = node.inputs[0], node.outputs[0]
    src, dst = ctx.graph.tensors[x], ctx.graph.tensors[y]
    if src.dtype.is_float == dst.dtype.is_float:
        return movement_plan(node, ctx, "htp.copy")
    if ctx.is_static(x):
        raise Unsupported(f"Cast of static '{x}' (constant folding handles this)")
    if dst.dtype.is_float:
        return _cast_to_codes(node, ctx, act_q(ctx, y))
    qi = act_q(ctx, x)
    if qi is None or qi.axis is not None:
        raise Unsupported(f"Cast from {src.dtype.name} without a per-tensor encoding")
    codes = np.arange(qi.qmin, qi.qmax + 1, dtype=np.int64)
    real = (codes - int(qi.zero_point[0])) * float(qi.scale[0])
    table = real != 0 if dst.dtype.numpy == np.bool_ else np.trunc(real).astype(dst.dtype.numpy)
    plan = StepPlan("htp.cast_table", node.name, node.op_type, (x,), (y,), {"lo": qi.qmin}, {"table": c_array(table)})
    return bind_step(plan, ctx.device)


@htp_binder("htp.cast_table")
def _bind_cast_table(plan: StepPlan, device: torch.device) -> tuple[Callable[..., Any], Callable[..., Any]]:
    table = c_array(plan.arrays["table"])
    table_t = plan_tensor(table, device)
    lo = int(plan.attrs["lo"])

    def reference(a: np.ndarray) -> np.ndarray:
        return c_array(table[np.asarray(a, dtype=np.int64) - lo])

    def fast(t: torch.Tensor) -> torch.Tensor:
        return table_t[t.to(torch.int64) - lo]

    return reference, fast


def _cast_to_codes(node: Node, ctx: HtpBuildContext, qo: Any) -> HtpStep:
    if qo is None or qo.axis is not None:
        raise Unsupported(f"Cast to '{node.outputs[0]}' without a per-tensor encoding")
    m, shift = quantize_multiplier(1.0 / float(qo.scale[0]))
    attrs = {"z": int(qo.zero_point[0]), "multiplier": int(m), "shift": int(shift), "qmin": qo.qmin, "qmax": qo.qmax,
             "bits": qo.bitwidth}
    plan = StepPlan("htp.cast_codes", node.name, node.op_type, (node.inputs[0],), tuple(node.outputs), attrs)
    return bind_step(plan, ctx.device)


@htp_binder("htp.cast_codes")
def _bind_cast_codes(plan: StepPlan, device: torch.device) -> tuple[Callable[..., Any], Callable[..., Any]]:
    a = plan.attrs
    m, shift = int(a["multiplier"]), int(a["shift"])
    z, qmin, qmax, bits = int(a["z"]), int(a["qmin"]), int(a["qmax"]), int(a["bits"])

    def reference(a: np.ndarray) -> np.ndarray:
        v = np.clip(np.asarray(a).astype(np.int64), INT32_MIN, INT32_MAX)
        return c_array(np.clip(z + mbqm_np(v, m, shift), qmin, qmax))

    def fast(t: torch.Tensor) -> torch.Tensor:
        v = torch.clamp(t.to(torch.int64), INT32_MIN, INT32_MAX)
        return to_storage(torch.clamp(z + mbqm_t(v, m, shift), qmin, qmax), bits).contiguous()

    return reference, fast


# -- several inputs or outputs -------------------------------------------------------------------

def _piece(a: Any, axis: int, lo: int, hi: int) -> Any:
    return a[(slice(None),) * axis + (slice(lo, hi),)]


@htp_kernel("Split")
def split(node: Node, ctx: HtpBuildContext) -> HtpStep:
    x = node.inputs[0]
    rank = len(ctx.shape(x))
    axis = int(node.attrs["axis"]) % rank
    bounds = [0, *(int(v) for v in node.attrs["split_index"]), ctx.shape(x)[axis]]
    cuts = [list(c) for c in itertools.pairwise(bounds)]
    if ctx.is_static(x):
        return const_step(node, ctx, [c_array(_piece(static_value(ctx, x, o), axis, lo, hi))
                                      for o, (lo, hi) in zip(node.outputs, cuts)])
    attrs = {"axis": axis, "cuts": cuts, "flows": [flow(ctx, x, o).to_attrs() for o in node.outputs]}
    return bind_step(StepPlan("htp.split", node.name, node.op_type, (x,), tuple(node.outputs), attrs), ctx.device)


@htp_binder("htp.split")
def _bind_split(plan: StepPlan, device: torch.device) -> tuple[Callable[..., Any], Callable[..., Any]]:
    axis = int(plan.attrs["axis"])
    cuts = [(int(lo), int(hi)) for lo, hi in plan.attrs["cuts"]]
    flows = [Flow.from_attrs(f) for f in plan.attrs["flows"]]

    def piece(a: Any, lo: int, hi: int) -> Any:
        return a[(slice(None),) * axis + (slice(lo, hi),)]

    def reference(a: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(c_array(f.np(piece(a, lo, hi))) for f, (lo, hi) in zip(flows, cuts))

    def fast(t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(f.t(piece(t, lo, hi)).contiguous() for f, (lo, hi) in zip(flows, cuts))

    return reference, fast


@htp_kernel("Concat")
def concat(node: Node, ctx: HtpBuildContext) -> HtpStep:
    """Each input requantized to the output encoding (when its own differs), then joined."""
    out = node.outputs[0]
    rank = len(ctx.shape(out))
    axis = int(node.attrs["axis"]) % rank if rank else 0
    ins = [x for x in node.inputs if x]
    # per input: {"static": array name} or {"flow": Flow attrs}
    parts: list[dict[str, Any]] = []
    arrays: dict[str, np.ndarray] = {}
    for i, x in enumerate(ins):
        if ctx.is_static(x):
            arrays[f"static{i}"] = static_value(ctx, x, out)
            parts.append({"static": f"static{i}"})
        elif (table := _graph_input_table(ctx, x, out)) is not None:
            arrays[f"table{i}"] = table
            parts.append({"table": f"table{i}"})
        else:
            parts.append({"flow": flow(ctx, x, out).to_attrs()})
    runtime = [x for x in ins if not ctx.is_static(x)]
    if not runtime:
        return const_step(node, ctx, [np.concatenate(list(arrays.values()), axis)])
    plan = StepPlan("htp.concat", node.name, node.op_type, tuple(runtime), (out,),
                    {"axis": axis, "parts": parts, "out": out_attrs(ctx, out)}, arrays)
    return bind_step(plan, ctx.device)


def _graph_input_table(ctx: HtpBuildContext, x: str, out: str) -> np.ndarray | None:
    """QNN's codes for a Concat input that is an 8-bit graph input of another encoding than the output's, with
    ``htp_config.arithmetic: "qnn"`` (v68, v73): QNN EP quantizes the graph input's float values straight into
    the output's encoding, through float16 (spec/qnn_eltwise.py); None elsewhere (the input is requantized)."""
    if x not in ctx.graph.inputs:
        return None
    qi, qo = act_q(ctx, x), act_q(ctx, out)
    if qi is None or qo is None or qi.axis is not None or qo.axis is not None:
        return None
    if qi.bitwidth == qo.bitwidth and float(qi.scale[0]) == float(qo.scale[0]) and \
            int(qi.zero_point[0]) == int(qo.zero_point[0]):
        return None
    return input_quantize_table(ctx.arch.name, ctx.arithmetic, float(qi.scale[0]), int(qi.zero_point[0]),
                                float(qo.scale[0]), int(qo.zero_point[0]), (qi.bitwidth, qo.bitwidth))


class _Table:
    """A Concat input's codes looked up in a 256-entry table (:func:`_graph_input_table`)."""

    def __init__(self, table: np.ndarray, device: torch.device):
        self.table = np.asarray(table, dtype=np.int64)
        self.table_t = to_storage(plan_tensor(self.table, device), 8)

    def np(self, x: np.ndarray) -> np.ndarray:
        return self.table[np.asarray(x, dtype=np.int64)]

    def t(self, x: torch.Tensor) -> torch.Tensor:
        return self.table_t[x.to(torch.int64)]


@htp_binder("htp.concat")
def _bind_concat(plan: StepPlan, device: torch.device) -> tuple[Callable[..., Any], Callable[..., Any]]:
    axis = int(plan.attrs["axis"])
    parts: list[tuple[np.ndarray, torch.Tensor] | Flow | _Table] = []
    for p in plan.attrs["parts"]:
        if "static" in p:
            v = plan.arrays[p["static"]]
            parts.append((v, tensor_of(v, plan.attrs["out"], device)))
        elif "table" in p:
            parts.append(_Table(plan.arrays[p["table"]], device))
        else:
            parts.append(Flow.from_attrs(p["flow"]))

    def reference(*xs: np.ndarray) -> np.ndarray:
        it = iter(xs)
        vals = [p[0] if isinstance(p, tuple) else p.np(next(it)) for p in parts]
        return np.concatenate(vals, axis)

    def fast(*xs: torch.Tensor) -> torch.Tensor:
        it = iter(xs)
        vals = [p[1] if isinstance(p, tuple) else p.t(next(it)) for p in parts]
        return torch.cat(vals, axis)

    return reference, fast


def _indices(ctx: HtpBuildContext, name: str) -> None:
    t = ctx.graph.tensors[name]
    if t.encoding is not None or t.dtype.is_float:
        raise Unsupported(f"indices '{name}' are not an integer tensor")


def _normalize_np(idx: np.ndarray, size: int) -> np.ndarray:
    idx = np.asarray(idx).astype(np.int64)
    return np.where(idx < 0, idx + size, idx)


def _normalize_t(idx: torch.Tensor, size: int) -> torch.Tensor:
    idx = idx.to(torch.int64)
    return torch.where(idx < 0, idx + size, idx)


GatherFns = tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]
_GATHERS: dict[str, Callable[[Attrs, torch.device], GatherFns]] = {}


def _gather_kernel(kernel: str) -> Callable[[Callable[[Attrs, torch.device], GatherFns]],
                                            Callable[[Attrs, torch.device], GatherFns]]:
    """Register a data + indices kernel: ``fns(attrs, device) -> (ref_fn, fast_fn)``; its binder feeds
    them the data (requantized, or static) and the indices (run-time or static)."""
    def register(fns: Callable[[Attrs, torch.device], GatherFns]) -> Callable[[Attrs, torch.device], GatherFns]:
        _GATHERS[kernel] = fns
        htp_binder(kernel)(_bind_two_input)
        return fns

    return register


def _two_input(node: Node, ctx: HtpBuildContext, kernel: str, attrs: dict[str, Any]) -> HtpStep:
    """Data (input 0) and integer indices (input 1), either possibly static."""
    x, idx, out = node.inputs[0], node.inputs[1], node.outputs[0]
    _indices(ctx, idx)
    idx_static = ctx.is_static(idx)
    idx_np = np.asarray(ctx.graph.tensors[idx].data) if idx_static else None
    arrays: dict[str, np.ndarray] = {}
    if idx_np is not None:
        arrays["indices"] = idx_np
    attrs = {**attrs, "out": out_attrs(ctx, out)}
    if ctx.is_static(x):
        data_np = static_value(ctx, x, out)
        if idx_np is not None:
            ref_fn, _ = _GATHERS[kernel](attrs, ctx.device)
            return const_step(node, ctx, [c_array(ref_fn(data_np, idx_np))])
        out_q = attrs["out"]
        arrays["data"] = compact_codes(data_np, int(out_q["bits"])) if out_q["quantized"] else data_np
        inputs: tuple[str, ...] = (idx,)
    else:
        attrs["flow"] = flow(ctx, x, out).to_attrs()
        inputs = (x,) if idx_np is not None else (x, idx)
    return bind_step(StepPlan(kernel, node.name, node.op_type, inputs, (out,), attrs, arrays), ctx.device)


def _bind_two_input(plan: StepPlan, device: torch.device) -> tuple[Callable[..., Any], Callable[..., Any]]:
    ref_fn, fast_fn = _GATHERS[plan.kernel](plan.attrs, device)
    if "data" in plan.arrays:
        data_np = plan.arrays["data"]
        data_t = tensor_of(data_np, plan.attrs["out"], device)
        wide = wide_codes(data_np) if plan.attrs["out"]["quantized"] else lambda: data_np
        return (lambda i: c_array(ref_fn(wide(), np.asarray(i))),
                lambda i: fast_fn(data_t, i).contiguous())
    fl = Flow.from_attrs(plan.attrs["flow"])
    if "indices" in plan.arrays:
        idx_np = plan.arrays["indices"]
        idx_t = plan_tensor(idx_np, device)
        return (lambda a: c_array(ref_fn(fl.np(a), idx_np)),
                lambda a: fast_fn(fl.t(a), idx_t).contiguous())
    return (lambda a, i: c_array(ref_fn(fl.np(a), np.asarray(i))),
            lambda a, i: fast_fn(fl.t(a), i).contiguous())


@htp_kernel("Gather")
def gather(node: Node, ctx: HtpBuildContext) -> HtpStep:
    rank = len(ctx.shape(node.inputs[0]))
    axis = int(node.attrs["axis"]) % rank
    attrs = {"axis": axis, "size": ctx.shape(node.inputs[0])[axis], "out_shape": list(ctx.shape(node.outputs[0]))}
    return _two_input(node, ctx, "htp.gather", attrs)


@_gather_kernel("htp.gather")
def _gather_fns(attrs: Attrs, device: torch.device) -> GatherFns:
    axis, size, out_shape = int(attrs["axis"]), int(attrs["size"]), tuple(attrs["out_shape"])

    def ref_fn(a: np.ndarray, i: np.ndarray) -> np.ndarray:
        return np.take(a, _normalize_np(i, size), axis=axis).reshape(out_shape)

    def fast_fn(a: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return torch.index_select(a, axis, _normalize_t(i, size).reshape(-1)).reshape(out_shape)

    return ref_fn, fast_fn


@htp_kernel("GatherNd")
def gather_nd(node: Node, ctx: HtpBuildContext) -> HtpStep:
    """ONNX GatherND: the last axis of the indices addresses the data's axes batch_dims..batch_dims+k-1."""
    xs, idx_shape = ctx.shape(node.inputs[0]), ctx.shape(node.inputs[1])
    b, k = int(node.attrs.get("batch_dims", 0)), idx_shape[-1]
    inner, rest = xs[b:b + k], list(xs[b + k:])
    batch, m = int(np.prod(xs[:b], dtype=np.int64)), int(np.prod(idx_shape[b:-1], dtype=np.int64))
    attrs = {"batch": batch, "m": m, "k": int(k), "rest": rest, "positions": int(np.prod(inner, dtype=np.int64)),
             "sizes": [int(v) for v in inner], "strides": [int(np.prod(inner[j + 1:], dtype=np.int64)) for j in range(k)],
             "out_shape": list(ctx.shape(node.outputs[0]))}
    return _two_input(node, ctx, "htp.gather_nd", attrs)


@_gather_kernel("htp.gather_nd")
def _gather_nd_fns(attrs: Attrs, device: torch.device) -> GatherFns:
    batch, m, k, positions = int(attrs["batch"]), int(attrs["m"]), int(attrs["k"]), int(attrs["positions"])
    rest, out_shape = tuple(attrs["rest"]), tuple(attrs["out_shape"])
    sizes = np.asarray(attrs["sizes"], dtype=np.int64)
    strides = np.asarray(attrs["strides"], dtype=np.int64)

    def ref_fn(a: np.ndarray, i: np.ndarray) -> np.ndarray:
        i = np.asarray(i, dtype=np.int64).reshape(batch, m, k)
        lin = (np.where(i < 0, i + sizes, i) * strides).sum(axis=-1)  # [batch, m]
        return a.reshape(batch, positions, *rest)[np.arange(batch)[:, None], lin].reshape(out_shape)

    sizes_t, strides_t = plan_tensor(sizes, device), plan_tensor(strides, device)

    def fast_fn(a: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        i = i.to(torch.int64).reshape(batch, m, k)
        lin = (torch.where(i < 0, i + sizes_t, i) * strides_t).sum(dim=-1)
        rows = torch.arange(batch, device=a.device).view(-1, 1).expand_as(lin)
        return a.reshape(batch, positions, *rest)[rows, lin].reshape(out_shape)

    return ref_fn, fast_fn


@htp_kernel("GatherElements")
def gather_elements(node: Node, ctx: HtpBuildContext) -> HtpStep:
    rank = len(ctx.shape(node.inputs[0]))
    axis = int(node.attrs["axis"]) % rank
    return _two_input(node, ctx, "htp.gather_elements", {"axis": axis, "size": ctx.shape(node.inputs[0])[axis]})


@_gather_kernel("htp.gather_elements")
def _gather_elements_fns(attrs: Attrs, device: torch.device) -> GatherFns:
    axis, size = int(attrs["axis"]), int(attrs["size"])

    def ref_fn(a: np.ndarray, i: np.ndarray) -> np.ndarray:
        return np.take_along_axis(a, _normalize_np(i, size), axis=axis)

    def fast_fn(a: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return torch.gather(a, axis, _normalize_t(i, size))

    return ref_fn, fast_fn
