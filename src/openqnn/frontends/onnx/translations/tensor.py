"""Tensor ONNX ops: Split, Slice, Expand, Tile, ConstantOfShape, Range, GatherElements, GatherND,
ScatterElements, ScatterND, Trilu, CumSum, TopK, ArgMax/ArgMin, the Reduce family, Einsum, Mod.

Ops that take axes run in their input's IR layout when it has one (a channel-last input stays
channel-last; the axes are remapped through the perm); ops whose index tensors are laid out in the
ONNX order (GatherND, ScatterND) read their inputs in the ONNX layout.
"""

from __future__ import annotations

import math
import string
from collections import Counter
from collections.abc import Sequence

import numpy as np

from openqnn.frontends.onnx.context import ConversionContext, Perm, Value, is_identity
from openqnn.frontends.onnx.registry import onnx_op
from openqnn.frontends.onnx.translations.common import as_ints, elementwise, norm_axis, operand, shared_layout
from openqnn.ir.dtype import DType


def _perm_or_none(perm: Sequence[int] | None) -> Perm | None:
    return None if perm is None or is_identity(tuple(perm)) else tuple(perm)


def _ir_axes(perm: Perm | None, axes: Sequence[int]) -> list[int]:
    """IR positions of the (normalized) ONNX axes ``axes`` of a tensor in layout ``perm``."""
    return [a if perm is None else perm.index(a) for a in axes]


def _dropped_perm(perm: Perm | None, axes: Sequence[int]) -> Perm | None:
    """The layout left when ONNX axes ``axes`` are removed from a tensor in layout ``perm``."""
    if perm is None:
        return None
    gone = set(axes)
    rest = [p for p in perm if p not in gone]
    return _perm_or_none([p - sum(1 for a in gone if a < p) for p in rest])


def _remap(perm: Perm | None, per_axis: Sequence) -> list:
    """Reorder per-ONNX-axis values into IR order."""
    return list(per_axis) if perm is None else [per_axis[p] for p in perm]


# -- Split / Slice ----------------------------------------------------------------------------

@onnx_op("Split")
def split(ctx: ConversionContext) -> None:
    x = ctx.input(0)
    axis = norm_axis(int(ctx.attr("axis", 0)), x.rank)
    if not 0 <= axis < x.rank:
        raise ctx.fail(f"axis {ctx.attr('axis', 0)} is out of range for rank {x.rank}")
    dim = x.shape[axis]
    if ctx.opset < 13:
        sizes = ctx.attr("split")
        sizes = None if not sizes else [int(s) for s in sizes]
    else:
        sizes = as_ints(ctx.const(1, "split")) if ctx.has(1) else None
    n_out = len(ctx.node.output)
    if sizes is None:
        num = ctx.attr("num_outputs") if ctx.opset >= 18 else None
        n = int(num) if num is not None else n_out
        if n <= 0:
            raise ctx.fail(f"cannot split into {n} outputs")
        if dim % n == 0:
            sizes = [dim // n] * n
        else:  # opset 18: the last chunk is smaller
            chunk = -(-dim // n)
            sizes = [chunk] * (n - 1) + [dim - chunk * (n - 1)]
    if len(sizes) != n_out:
        raise ctx.fail(f"split {sizes} gives {len(sizes)} pieces for {n_out} outputs")
    if any(s < 0 for s in sizes) or sum(sizes) != dim:
        raise ctx.fail(f"split {sizes} does not add up to axis {axis}'s size {dim}")
    bounds = list(np.cumsum(sizes)[:-1])
    perm = x.perm
    ir_ax = _ir_axes(perm, [axis])[0]
    outs = ctx.emit("Split", [ctx.tensor(x, perm)], {"axis": ir_ax, "split_index": bounds})
    for i, out in enumerate(outs):
        if ctx.node.output[i]:
            ctx.bind(i, out, perm)


@onnx_op("Slice")
def slice_(ctx: ConversionContext) -> None:
    x = ctx.input(0)
    if ctx.opset < 10:
        starts = [int(v) for v in ctx.attr("starts", [])]
        ends = [int(v) for v in ctx.attr("ends", [])]
        axes_attr = ctx.attr("axes")
        axes = list(range(len(starts))) if not axes_attr else [int(v) for v in axes_attr]
        steps = [1] * len(starts)
    else:
        starts = as_ints(ctx.const(1, "starts"))
        ends = as_ints(ctx.const(2, "ends"))
        axes = as_ints(ctx.const(3, "axes")) if ctx.has(3) else list(range(len(starts)))
        steps = as_ints(ctx.const(4, "steps")) if ctx.has(4) else [1] * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ctx.fail(f"starts {starts}, ends {ends}, axes {axes} and steps {steps} differ in length")
    ranges = [(0, d, 1) for d in x.shape]
    seen = set()
    for s, e, a, st in zip(starts, ends, axes, steps):
        ax = norm_axis(a, x.rank)
        if not 0 <= ax < x.rank or ax in seen:
            raise ctx.fail(f"axes {axes} are out of range or repeated for rank {x.rank}")
        seen.add(ax)
        if st == 0:
            raise ctx.fail("a slice step of 0 is not valid")
        # Python's slice clamping is ONNX's (huge ends like INT64_MAX/INT64_MIN included)
        ranges[ax] = slice(s, e, st).indices(x.shape[ax])
    if all(r == (0, d, 1) for r, d in zip(ranges, x.shape)):
        ctx.alias(0, x)
        return
    perm = x.perm
    out = ctx.emit("StridedSlice", [ctx.tensor(x, perm)], {"ranges": _remap(perm, ranges)})[0]
    ctx.bind(0, out, perm)


# -- Expand / Tile ----------------------------------------------------------------------------

def _tile(ctx: ConversionContext, x: Value, multiples: Sequence[int]) -> None:
    """Bind output 0 to x tiled ``multiples`` times (ranks equal), in x's layout."""
    if all(m == 1 for m in multiples):
        ctx.alias(0, x)
        return
    perm = x.perm
    out = ctx.emit("Tile", [ctx.tensor(x, perm)], {"multiples": _remap(perm, multiples)})[0]
    ctx.bind(0, out, perm)


@onnx_op("Expand")
def expand(ctx: ConversionContext) -> None:
    x = ctx.input(0)
    shape = tuple(as_ints(ctx.const(1, "shape")))
    try:
        out_shape = tuple(int(d) for d in np.broadcast_shapes(x.shape, shape))
    except ValueError:
        raise ctx.fail(f"input shape {x.shape} does not broadcast to {shape}") from None
    rank = len(out_shape)
    if x.rank < rank:  # leading 1s first (ONNX layout), then tile
        padded = (1,) * (rank - x.rank) + x.shape
        r = ctx.emit("Reshape", [ctx.tensor(x)], {"shape": padded})[0]
        x = Value(r, padded, x.dtype)
    if 0 in out_shape and 0 not in x.shape:  # a broadcast to an empty tensor
        raise ctx.fail(f"expanding {x.shape} to the empty shape {out_shape} is not supported")
    multiples = [o // d if d else 1 for o, d in zip(out_shape, x.shape)]
    _tile(ctx, x, multiples)


@onnx_op("Tile")
def tile(ctx: ConversionContext) -> None:
    x = ctx.input(0)
    reps = as_ints(ctx.const(1, "repeats"))
    if len(reps) != x.rank or any(r < 0 for r in reps):
        raise ctx.fail(f"repeats {reps} do not fit rank {x.rank}")
    _tile(ctx, x, reps)


# -- ops that only exist with constant inputs ---------------------------------------------------

@onnx_op("ConstantOfShape")
def constant_of_shape(ctx: ConversionContext) -> None:
    """Normally folded (its shape input is always known); this covers a failed fold."""
    shape = as_ints(ctx.const(0, "shape"))
    value = ctx.attr("value")
    if value is None:
        fill = np.zeros((), dtype=np.float32)
    else:
        from onnx import numpy_helper

        fill = numpy_helper.to_array(value).reshape(-1)[0]
    ctx.bind_const(0, np.full(shape, fill, dtype=np.asarray(fill).dtype))


@onnx_op("Range")
def range_(ctx: ConversionContext) -> None:
    """Normally folded; a Range over run-time values has a data-dependent shape."""
    start, limit, delta = (ctx.const(i, "Range needs constant start, limit and delta") for i in range(3))
    dtype = np.asarray(start).dtype
    start, limit, delta = (np.asarray(v).reshape(()).item() for v in (start, limit, delta))
    n = max(math.ceil((limit - start) / delta), 0)
    ctx.bind_const(0, (start + np.arange(n) * delta).astype(dtype))


# -- gather / scatter ---------------------------------------------------------------------------

@onnx_op("GatherElements")
def gather_elements(ctx: ConversionContext) -> None:
    x, idx = ctx.input(0), ctx.input(1)
    if idx.rank != x.rank:
        raise ctx.fail(f"indices have rank {idx.rank}, data rank {x.rank}")
    axis = norm_axis(int(ctx.attr("axis", 0)), x.rank)
    perm = shared_layout([x, idx], x.rank)
    out = ctx.emit("GatherElements", [ctx.tensor(x, perm), ctx.tensor(idx, perm)],
                   {"axis": _ir_axes(perm, [axis])[0]})[0]
    ctx.bind(0, out, perm)


@onnx_op("ScatterElements", "Scatter")
def scatter_elements(ctx: ConversionContext) -> None:
    x, idx, upd = ctx.input(0), ctx.input(1), ctx.input(2)
    if not x.rank == idx.rank == upd.rank or idx.shape != upd.shape:
        raise ctx.fail(f"data {x.shape}, indices {idx.shape} and updates {upd.shape} do not fit")
    axis = norm_axis(int(ctx.attr("axis", 0)), x.rank)
    reduction = ctx.attr("reduction", "none")
    if reduction not in ("none", "add", "mul", "max", "min"):
        raise ctx.fail(f"reduction={reduction!r} is not supported")
    perm = shared_layout([x, idx, upd], x.rank)
    ins = [ctx.tensor(v, perm) for v in (x, idx, upd)]
    out = ctx.emit("ScatterElements", ins, {"axis": _ir_axes(perm, [axis])[0], "reduction": reduction})[0]
    ctx.bind(0, out, perm)


@onnx_op("GatherND")
def gather_nd(ctx: ConversionContext) -> None:
    x, idx = ctx.input(0), ctx.input(1)
    b = int(ctx.attr("batch_dims", 0))
    if idx.rank < 1 or not 0 <= b < min(x.rank, idx.rank) or b + idx.shape[-1] > x.rank:
        raise ctx.fail(f"indices {idx.shape} with batch_dims {b} do not fit data {x.shape}")
    if x.shape[:b] != idx.shape[:b]:
        raise ctx.fail(f"batch dims of data {x.shape} and indices {idx.shape} differ")
    out = ctx.emit("GatherNd", [ctx.src(0), ctx.src(1)], {"batch_dims": b})[0]
    ctx.bind(0, out)


@onnx_op("ScatterND")
def scatter_nd(ctx: ConversionContext) -> None:
    x, idx, upd = ctx.input(0), ctx.input(1), ctx.input(2)
    k = idx.shape[-1] if idx.rank else 0
    if idx.rank < 1 or k > x.rank or upd.shape != (*idx.shape[:-1], *x.shape[k:]):
        raise ctx.fail(f"data {x.shape}, indices {idx.shape} and updates {upd.shape} do not fit")
    reduction = ctx.attr("reduction", "none")
    if reduction not in ("none", "add", "mul", "max", "min"):
        raise ctx.fail(f"reduction={reduction!r} is not supported")
    out = ctx.emit("ScatterNd", [ctx.src(0), ctx.src(1), ctx.src(2)], {"reduction": reduction})[0]
    ctx.bind(0, out)


# -- Trilu ---------------------------------------------------------------------------------------

@onnx_op("Trilu")
def trilu(ctx: ConversionContext) -> None:
    """Select(mask, x, 0) with a static mask of the last two dims (exact for inf/NaN)."""
    x = ctx.input(0)
    if x.rank < 2:
        raise ctx.fail(f"Trilu needs rank >= 2, got {x.rank}")
    k = int(np.asarray(ctx.const(1, "k")).reshape(-1)[0]) if ctx.has(1) else 0
    n, m = x.shape[-2:]
    ones = np.ones((n, m), dtype=bool)
    tri = np.triu(ones, k) if int(ctx.attr("upper", 1)) else np.tril(ones, k)
    mask = tri.reshape((1,) * (x.rank - 2) + (n, m))
    perm = x.perm
    mask_t = operand(ctx, Value(None, mask.shape, DType.BOOL_8, None, mask, "trilu_mask"), perm, x.rank)
    zero = ctx.add_static("trilu_zero", np.zeros((), dtype=x.dtype.numpy))
    out = ctx.emit("ElementWiseSelect", [mask_t, ctx.tensor(x, perm), zero])[0]
    ctx.bind(0, out, perm)


# -- scans, arg-reductions, TopK -------------------------------------------------------------------

@onnx_op("CumSum")
def cumsum(ctx: ConversionContext) -> None:
    x = ctx.input(0)
    axis = norm_axis(int(np.asarray(ctx.const(1, "axis")).reshape(-1)[0]), x.rank)
    if not 0 <= axis < x.rank:
        raise ctx.fail(f"axis is out of range for rank {x.rank}")
    perm = x.perm
    attrs = {"axis": _ir_axes(perm, [axis])[0], "exclusive": bool(ctx.attr("exclusive", 0)),
             "reverse": bool(ctx.attr("reverse", 0))}
    out = ctx.emit("CumulativeSum", [ctx.tensor(x, perm)], attrs)[0]
    ctx.bind(0, out, perm)


def _to_int64(ctx: ConversionContext, ir: str) -> str:
    return ctx.emit("Cast", [ir], {"dtype": DType.INT_64})[0]


@onnx_op("ArgMax", "ArgMin")
def arg_reduce(ctx: ConversionContext) -> None:
    x = ctx.input(0)
    axis = norm_axis(int(ctx.attr("axis", 0)), x.rank)
    if not 0 <= axis < x.rank:
        raise ctx.fail(f"axis is out of range for rank {x.rank}")
    keep = bool(ctx.attr("keepdims", 1))
    perm = x.perm
    op_type = "Argmax" if ctx.node.op_type == "ArgMax" else "Argmin"
    attrs = {"axis": _ir_axes(perm, [axis])[0], "keep_dims": keep,
             "select_last_index": bool(ctx.attr("select_last_index", 0))}
    idx = ctx.emit(op_type, [ctx.tensor(x, perm)], attrs)[0]
    ctx.bind(0, _to_int64(ctx, idx), perm if keep else _dropped_perm(perm, [axis]))


@onnx_op("TopK")
def topk(ctx: ConversionContext) -> None:
    x = ctx.input(0)
    if ctx.opset < 10:
        k = int(ctx.attr("k"))
    else:
        k = int(np.asarray(ctx.const(1, "K")).reshape(-1)[0])
    axis = norm_axis(int(ctx.attr("axis", -1)), x.rank)
    if not 0 <= axis < x.rank or not 0 <= k <= x.shape[axis]:
        raise ctx.fail(f"k={k} / axis {ctx.attr('axis', -1)} do not fit shape {x.shape}")
    perm = x.perm
    attrs = {"k": k, "axis": _ir_axes(perm, [axis])[0], "largest": bool(ctx.attr("largest", 1)),
             "sorted": bool(ctx.attr("sorted", 1))}
    values, indices = ctx.emit("TopK", [ctx.tensor(x, perm)], attrs)
    ctx.bind(0, values, perm)
    if len(ctx.node.output) > 1 and ctx.node.output[1]:
        ctx.bind(1, _to_int64(ctx, indices), perm)


# -- reductions ------------------------------------------------------------------------------------

REDUCE = {
    "ReduceMax": "ReduceMax",
    "ReduceMin": "ReduceMin",
    "ReduceMean": "ReduceMean",
    "ReduceSum": "ReduceSum",
    "ReduceProd": "ReduceProd",
    "ReduceL1": "ReduceL1",
    "ReduceL2": "ReduceL2",
    "ReduceLogSumExp": "ReduceLogSumExp",
    "ReduceSumSquare": "ReduceSumSquare",
}


@onnx_op(*REDUCE, "ReduceLogSum")
def reduce(ctx: ConversionContext) -> None:
    """Reduce* -> the IR reduction of the same name over the IR axes (ReduceLogSum: ReduceSum, Log)."""
    op = ctx.node.op_type
    if op == "ReduceLogSum":
        out, perm = _reduce(ctx, "ReduceSum", ctx.opset >= 18)
        ctx.bind(0, ctx.emit("ElementWiseLog", [out])[0], perm)
        return
    ctx.bind(0, *_reduce(ctx, REDUCE[op], ctx.opset >= (13 if op == "ReduceSum" else 18)))


def _reduce(ctx: ConversionContext, ir_op: str, axes_as_input: bool) -> tuple[str, Perm | None]:
    """The IR tensor of the reduction of input 0 and its layout."""
    x = ctx.input(0)
    if axes_as_input:
        axes = as_ints(ctx.const(1, "axes")) if ctx.has(1) else []
        noop = bool(ctx.attr("noop_with_empty_axes", 0))
    else:
        axes = [int(a) for a in (ctx.attr("axes") or [])]
        noop = False
    keep = bool(ctx.attr("keepdims", 1))
    perm = x.perm
    if not axes and noop:  # a reduction over no axes: only the element-wise part (|x| for L1/L2, x*x ...)
        if ir_op not in ("ReduceL1", "ReduceL2", "ReduceSumSquare"):
            return ctx.tensor(x, perm), perm
        return ctx.emit(ir_op, [ctx.tensor(x, perm)], {"axes": (), "keep_dims": keep})[0], perm
    axes = sorted({norm_axis(a, x.rank) for a in axes}) if axes else list(range(x.rank))
    if any(not 0 <= a < x.rank for a in axes):
        raise ctx.fail(f"axes {axes} are out of range for rank {x.rank}")
    attrs = {"axes": sorted(_ir_axes(perm, axes)), "keep_dims": keep}
    out = ctx.emit(ir_op, [ctx.tensor(x, perm)], attrs)[0]
    return out, perm if keep else _dropped_perm(perm, axes)


# -- Mod -------------------------------------------------------------------------------------------

@onnx_op("Mod")
def mod(ctx: ConversionContext) -> None:
    """fmod=1: C fmod (sign of the dividend); fmod=0: Python's mod (sign of the divisor; ONNX asks for
    fmod=1 with floats, but its reference and test cases give floats numpy's mod, as here)."""
    fmod = int(ctx.attr("fmod", 0))
    elementwise(ctx, "ElementWiseFmod" if fmod else "ElementWiseMod")


# -- Einsum ----------------------------------------------------------------------------------------

class _Term:
    """An intermediate einsum operand: IR tensor (ONNX-like layout), its letters and shape."""

    def __init__(self, name: str, letters: list[str], shape: tuple[int, ...]):
        self.name, self.letters, self.shape = name, list(letters), tuple(shape)

    def size(self, c: str) -> int:
        return self.shape[self.letters.index(c)]


def _t_transpose(ctx: ConversionContext, t: _Term, order: list[str]) -> _Term:
    if order == t.letters:
        return t
    perm = [t.letters.index(c) for c in order]
    out = ctx.emit("Transpose", [t.name], {"perm": perm})[0]
    return _Term(out, order, tuple(t.shape[p] for p in perm))


def _t_reshape(ctx: ConversionContext, name: str, shape: Sequence[int]) -> str:
    if tuple(ctx.graph.tensors[name].shape) == tuple(shape):
        return name
    return ctx.emit("Reshape", [name], {"shape": tuple(shape)})[0]


def _t_diagonal(ctx: ConversionContext, t: _Term) -> _Term:
    """A letter repeated within one operand (``ii``) takes the diagonal: move both axes last,
    flatten them to n*n and gather every (n+1)-th element."""
    while len(set(t.letters)) != len(t.letters):
        c = next(c for c in t.letters if t.letters.count(c) > 1)
        first = t.letters.index(c)
        second = t.letters.index(c, first + 1)
        if t.shape[first] != t.shape[second]:
            raise ctx.fail(f"einsum letter {c!r} has sizes {t.shape[first]} and {t.shape[second]}")
        rest = [i for i in range(len(t.letters)) if i not in (first, second)]
        perm = [*rest, first, second]
        n = t.shape[first]
        moved = ctx.emit("Transpose", [t.name], {"perm": perm})[0] if perm != list(range(len(perm))) else t.name
        lead = [t.shape[i] for i in rest]
        flat = _t_reshape(ctx, moved, [*lead, n * n])
        idx = ctx.add_static("einsum_diagonal", np.arange(n, dtype=np.int32) * (n + 1))
        diag = ctx.emit("Gather", [flat, idx], {"axis": len(lead)})[0]
        t = _Term(diag, [t.letters[i] for i in rest] + [c], (*lead, n))
    return t


def _t_sum(ctx: ConversionContext, t: _Term, drop: Sequence[str]) -> _Term:
    if not drop:
        return t
    axes = [t.letters.index(c) for c in drop]
    out = ctx.emit("ReduceSum", [t.name], {"axes": sorted(axes), "keep_dims": False})[0]
    keep = [c for c in t.letters if c not in drop]
    return _Term(out, keep, tuple(t.size(c) for c in keep))


def _contract(ctx: ConversionContext, a: _Term, b: _Term, keep: set[str]) -> _Term:
    a = _t_sum(ctx, a, [c for c in a.letters if c not in b.letters and c not in keep])
    b = _t_sum(ctx, b, [c for c in b.letters if c not in a.letters and c not in keep])
    batch = [c for c in a.letters if c in b.letters and c in keep]
    summed = [c for c in a.letters if c in b.letters and c not in keep]
    a_only = [c for c in a.letters if c not in b.letters]
    b_only = [c for c in b.letters if c not in a.letters]
    for c in summed:
        if a.size(c) != b.size(c):
            raise ctx.fail(f"einsum letter {c!r} has sizes {a.size(c)} and {b.size(c)}")
    a = _t_transpose(ctx, a, batch + a_only + summed)
    b = _t_transpose(ctx, b, batch + summed + b_only)
    a_batch = [a.size(c) for c in batch]
    b_batch = [b.size(c) for c in batch]
    out_batch = [max(p, q) for p, q in zip(a_batch, b_batch)]
    a_sizes, b_sizes = [a.size(c) for c in a_only], [b.size(c) for c in b_only]
    if not summed:  # an outer/element-wise product: broadcasting multiply
        an = _t_reshape(ctx, a.name, [*a_batch, *a_sizes, *[1] * len(b_only)])
        bn = _t_reshape(ctx, b.name, [*b_batch, *[1] * len(a_only), *b_sizes])
        out = ctx.emit("ElementWiseMultiply", [an, bn])[0]
    else:
        k = math.prod(a.size(c) for c in summed)
        an = _t_reshape(ctx, a.name, [*a_batch, math.prod(a_sizes), k])
        bn = _t_reshape(ctx, b.name, [*b_batch, k, math.prod(b_sizes)])
        mm = ctx.emit("MatMul", [an, bn])[0]
        out = _t_reshape(ctx, mm, [*out_batch, *a_sizes, *b_sizes])
    return _Term(out, batch + a_only + b_only, (*out_batch, *a_sizes, *b_sizes))


@onnx_op("Einsum")
def einsum(ctx: ConversionContext) -> None:
    """Einsum as transposes, reshapes, ReduceSum, MatMul and Multiply (operands contracted left
    to right). A letter repeated in one operand takes that operand's diagonal."""
    eq = str(ctx.attr("equation")).replace(" ", "")
    values = [ctx.input(i) for i in range(len(ctx.node.input))]
    lhs, arrow, rhs = eq.partition("->")
    specs_in = lhs.split(",")
    if len(specs_in) != len(values):
        raise ctx.fail(f"equation {eq!r} names {len(specs_in)} operands; the node has {len(values)}")
    used = {c for c in eq if c.isalpha()}
    spare = [c for c in string.ascii_letters if c not in used]
    ell_ranks = [v.rank - (len(s) - 3) for s, v in zip(specs_in, values) if "..." in s]
    ell = spare[:max(ell_ranks, default=0)]
    specs: list[list[str]] = []
    for s, v in zip(specs_in, values):
        if "..." in s:
            n = v.rank - (len(s) - 3)
            if n < 0:
                raise ctx.fail(f"operand {s!r} does not fit rank {v.rank}")
            s = s.replace("...", "".join(ell[len(ell) - n:]))
        if len(s) != v.rank or not all(c.isalpha() for c in s):
            raise ctx.fail(f"operand {s!r} does not fit rank {v.rank}")
        specs.append(list(s))
    if arrow:
        out = list(rhs.replace("...", "".join(ell)))
    else:
        counts = Counter(c for s in specs for c in s if c not in ell)
        out = ell + sorted(c for c, n in counts.items() if n == 1)
    if len(set(out)) != len(out) or any(not any(c in s for s in specs) for c in out):
        raise ctx.fail(f"output {rhs!r} of equation {eq!r} is not valid")
    terms = [_t_diagonal(ctx, _Term(ctx.src(i), s, v.shape)) for i, (s, v) in enumerate(zip(specs, values))]
    # letters no other operand and not the output needs are summed out first
    for i, t in enumerate(terms):
        others = {c for j, u in enumerate(terms) if j != i for c in u.letters} | set(out)
        terms[i] = _t_sum(ctx, t, [c for c in t.letters if c not in others])
    while len(terms) > 1:
        a, b = terms.pop(0), terms.pop(0)
        keep = set(out) | {c for t in terms for c in t.letters}
        terms.insert(0, _contract(ctx, a, b, keep))
    result = _t_transpose(ctx, terms[0], out)
    ctx.bind(0, result.name)
