"""htp integer kernels: data movement, requantization, Concat, Pad, Resize, Cast (see registry.py).

Movement ops move integers unchanged. Where an op's output encoding differs from its input's, the
values are requantized first (TFLite's Requantize, the DESIGN's "explicit requantize")::

    q_out = clamp(z_out + mbqm(q_in - z_in, M, shift))      (M, shift) = quantize_multiplier(s_in / s_out)

(z = -offset; the identity when the two encodings are equal). Concat requantizes each input to the
output encoding that way. Tensors without an encoding and of a non-float dtype (indices, token ids,
shapes) are moved as they are; a float tensor without an encoding is Unsupported (the node falls
back to cpu). Static operands are read in their encodings and requantized at build time (per-axis
static encodings too, one multiplier per channel).

Pad's constant is ``pad_constant_value`` quantized (round half to even, clamped) in the output
encoding. Resize nearest is pure movement. Resize linear / cubic (and antialias) use fixed-point
separable filters: per resized axis the float interpolation matrix (the cpu kernel's, ORT's
coordinates) is quantized to Q.20 weights whose rows keep their exact sums, values carry 8 extra
fraction bits (v = (q - z_in) << 8), each axis computes v = rdbpot(sum_t W_t * v[idx_t], 20) in
int64, and the result is requantized once: q_out = clamp(z_out + mbqm(v, quantize_multiplier(s_in /
(s_out * 2^8)))).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from openqnn.backends.cpu.kernels.registry import torch_dtype
from openqnn.backends.htp.fixedpoint import mbqm_np, mbqm_t, quantize_multiplier, rdbpot_np, rdbpot_t
from openqnn.backends.htp.kernels.registry import (
    HtpBuildContext,
    HtpStep,
    QParams,
    Unsupported,
    htp_kernel,
    storage_dtype,
)
from openqnn.ir.graph import Node
from openqnn.ops.shape import CRD, PAD_CONSTANT, PAD_EDGE, PAD_MIRROR_REFLECT, PAD_MIRROR_SYMMETRIC

__all__ = [
    "Flow",
    "Requant",
    "act_q",
    "c_array",
    "flow",
    "requantize_np",
    "requantize_t",
    "static_value",
    "to_storage",
]


# -- encodings and requantization -----------------------------------------------------------------

def act_q(ctx: HtpBuildContext, name: str) -> QParams | None:
    """The encoding of an activation, or None for an unquantized integer (or bool) tensor.

    Unsupported: a float tensor without encoding, per-axis or signed run-time encodings, bitwidths
    other than 8 and 16.
    """
    t = ctx.graph.tensors[name]
    if t.encoding is None:
        if t.dtype.is_float:
            raise Unsupported(f"tensor '{name}' has no encoding (the model is not quantized there)")
        return None
    q = QParams.of(t.encoding)
    if not t.is_static:
        if q.axis is not None:
            raise Unsupported(f"tensor '{name}' has a per-axis encoding")
        if q.signed or q.bitwidth not in (8, 16):
            raise Unsupported(f"tensor '{name}': {q.bitwidth}-bit{' signed' if q.signed else ''} activations")
    return q


def _same(a: QParams, b: QParams) -> bool:
    return (a.bitwidth == b.bitwidth and a.axis == b.axis and np.array_equal(a.scale, b.scale)
            and np.array_equal(a.offset, b.offset))


def c_array(a: Any) -> np.ndarray:
    """A C-contiguous numpy array (0-d stays 0-d, unlike np.ascontiguousarray)."""
    return np.asarray(a, order="C")


def to_storage(x: torch.Tensor, bitwidth: int) -> torch.Tensor:
    """Integers (any dtype) -> the fast path's storage dtype of a bitwidth."""
    dt = storage_dtype(bitwidth)
    return x if x.dtype == dt else x.to(dt)


@dataclass(frozen=True)
class Requant:
    """Per-tensor requantization q_out = clamp(z_out + mbqm(q_in - z_in, multiplier, shift))."""

    z_in: int
    z_out: int
    multiplier: int
    shift: int
    qmin: int
    qmax: int
    bitwidth: int  # the output's
    identity: bool

    @staticmethod
    def between(qin: QParams, qout: QParams) -> Requant:
        m, sh = quantize_multiplier(float(qin.scale[0]) / float(qout.scale[0]))
        return Requant(int(qin.zero_point[0]), int(qout.zero_point[0]), m, sh, qout.qmin, qout.qmax,
                       qout.bitwidth, _same(qin, qout))

    def np(self, q: np.ndarray) -> np.ndarray:
        q = np.asarray(q, dtype=np.int64)
        if self.identity:
            return q
        return np.clip(self.z_out + mbqm_np(q - self.z_in, self.multiplier, self.shift), self.qmin, self.qmax)

    def t(self, q: torch.Tensor) -> torch.Tensor:
        if self.identity:
            return to_storage(q, self.bitwidth)
        y = mbqm_t(q.to(torch.int64) - self.z_in, self.multiplier, self.shift) + self.z_out
        return to_storage(torch.clamp(y, self.qmin, self.qmax), self.bitwidth)


def requantize_np(q: np.ndarray, qin: QParams, qout: QParams) -> np.ndarray:
    """The spec of a requantization between per-tensor encodings (int64 in, int64 out)."""
    return Requant.between(qin, qout).np(q)


def requantize_t(q: torch.Tensor, qin: QParams, qout: QParams) -> torch.Tensor:
    """The same on the fast path (storage dtype out)."""
    return Requant.between(qin, qout).t(q)


@dataclass(frozen=True)
class Flow:
    """How values travel from an op's input to one of its outputs: raw (no encodings: moved as they
    are) or quantized (requantized when the encodings differ)."""

    rq: Requant | None
    raw_dtype: Any = None  # numpy dtype of a raw output
    raw_torch: torch.dtype | None = None

    @property
    def quantized(self) -> bool:
        return self.rq is not None

    def np(self, x: np.ndarray) -> np.ndarray:
        if self.rq is None:
            return np.asarray(x).astype(self.raw_dtype, copy=False)
        return self.rq.np(x)

    def t(self, x: torch.Tensor) -> torch.Tensor:
        if self.rq is None:
            return x if self.raw_torch is None or x.dtype == self.raw_torch else x.to(self.raw_torch)
        return self.rq.t(x)


def flow(ctx: HtpBuildContext, src: str, dst: str) -> Flow:
    """The flow from run-time tensor ``src`` to tensor ``dst`` (Unsupported when only one is quantized)."""
    qi, qo = act_q(ctx, src), act_q(ctx, dst)
    if qi is None and qo is None:
        dt = ctx.graph.tensors[dst].dtype
        return Flow(None, dt.numpy, torch_dtype(dt))
    if qi is None or qo is None:
        raise Unsupported(f"'{src}' -> '{dst}' mixes a quantized and an unquantized tensor")
    if qi.axis is not None or qo.axis is not None:
        raise Unsupported(f"'{src}' -> '{dst}': per-axis encoding")
    return Flow(Requant.between(qi, qo))


def static_value(ctx: HtpBuildContext, name: str, dst: str) -> np.ndarray:
    """A static operand as it flows into ``dst``: integers in ``dst``'s encoding (requantized from the
    static's own encoding, per channel for a per-axis one), or raw values when neither is quantized."""
    t = ctx.graph.tensors[name]
    assert t.data is not None, name
    qs, qo = act_q(ctx, name), act_q(ctx, dst)
    if qs is None and qo is None:
        return np.asarray(t.data).astype(ctx.graph.tensors[dst].dtype.numpy)
    if qs is None or qo is None:
        raise Unsupported(f"'{name}' -> '{dst}' mixes a quantized and an unquantized tensor")
    q = ctx.static_q(name)
    if _same(qs, qo):
        return q
    shape = [1] * q.ndim
    if qs.axis is not None and q.ndim:
        shape[qs.axis] = qs.scale.size
    pairs = [quantize_multiplier(float(s) / float(qo.scale[0])) for s in qs.scale]
    m = np.array([p[0] for p in pairs], dtype=np.int64).reshape(shape)
    sh = np.array([p[1] for p in pairs], dtype=np.int64).reshape(shape)
    z = qs.zero_point.reshape(shape)
    return np.clip(int(qo.zero_point[0]) + mbqm_np(q - z, m, sh), qo.qmin, qo.qmax)


def _const_t(v: np.ndarray, fl_quantized: bool, bitwidth: int, raw_torch: torch.dtype | None,
             device: torch.device) -> torch.Tensor:
    t = torch.from_numpy(c_array(v))
    if fl_quantized:
        t = to_storage(t, bitwidth)
    elif raw_torch is not None:
        t = t.to(raw_torch)
    return t.to(device)


def _out_bits(ctx: HtpBuildContext, name: str) -> int:
    q = act_q(ctx, name)
    return q.bitwidth if q is not None else 0


def _step(node: Node, ref: Callable[..., Any], fast: Callable[..., Any], inputs: Sequence[str]) -> HtpStep:
    return HtpStep(ref, fast, list(inputs), list(node.outputs), node.name, node.op_type)


def _const_step(node: Node, ctx: HtpBuildContext, values: Sequence[np.ndarray]) -> HtpStep:
    """A node whose inputs are all static: its outputs, computed at build time by the spec."""
    ts = []
    for name, v in zip(node.outputs, values):
        fl_q = act_q(ctx, name) is not None
        ts.append(_const_t(v, fl_q, _out_bits(ctx, name), torch_dtype(ctx.graph.tensors[name].dtype), ctx.device))
    refs = [np.asarray(v) for v in values]
    if len(refs) == 1:
        return _step(node, lambda: refs[0].copy(), lambda: ts[0], [])
    return _step(node, lambda: tuple(r.copy() for r in refs), lambda: tuple(ts), [])


def movement(node: Node, ctx: HtpBuildContext, move_np: Callable[[np.ndarray], np.ndarray],
             move_t: Callable[[torch.Tensor], torch.Tensor]) -> HtpStep:
    """A one-input, one-output movement op: requantize (when the encodings differ), then move."""
    x, y = node.inputs[0], node.outputs[0]
    if ctx.is_static(x):
        return _const_step(node, ctx, [c_array(move_np(static_value(ctx, x, y)))])
    fl = flow(ctx, x, y)

    def reference(a: np.ndarray) -> np.ndarray:
        return c_array(move_np(fl.np(a)))

    def fast(a: torch.Tensor) -> torch.Tensor:
        return move_t(fl.t(a)).contiguous()

    return _step(node, reference, fast, [x])


# -- pure movement -------------------------------------------------------------------------------

@htp_kernel("Reshape")
def reshape(node: Node, ctx: HtpBuildContext) -> HtpStep:
    shape = tuple(ctx.shape(node.outputs[0]))
    return movement(node, ctx, lambda a: a.reshape(shape), lambda t: t.reshape(shape))


@htp_kernel("Transpose")
def transpose(node: Node, ctx: HtpBuildContext) -> HtpStep:
    perm = tuple(int(p) for p in node.attrs["perm"])
    return movement(node, ctx, lambda a: np.transpose(a, perm), lambda t: t.permute(perm))


@htp_kernel("Tile")
def tile(node: Node, ctx: HtpBuildContext) -> HtpStep:
    reps = tuple(int(r) for r in node.attrs["multiples"])
    return movement(node, ctx, lambda a: np.tile(a, reps), lambda t: t.repeat(reps))


@htp_kernel("StridedSlice")
def strided_slice(node: Node, ctx: HtpBuildContext) -> HtpStep:
    ranges = [tuple(int(v) for v in r) for r in node.attrs["ranges"]]
    shape = ctx.shape(node.inputs[0])
    # numpy: negative steps directly (an end of -1 runs past index 0)
    np_index = tuple(slice(b, None if (s < 0 and e < 0) else e, s) for b, e, s in ranges)
    # torch has no negative steps: flip those dims, then slice forward
    flips = tuple(i for i, (_, _, s) in enumerate(ranges) if s < 0)
    t_index = tuple(slice(b, e, s) if s > 0 else slice(n - 1 - b, n - 1 - e, -s)
                    for (b, e, s), n in zip(ranges, shape))

    def move_t(t: torch.Tensor) -> torch.Tensor:
        return (torch.flip(t, flips) if flips else t)[t_index]

    return movement(node, ctx, lambda a: a[np_index], move_t)


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
    return movement(node, ctx, lambda a: np.transpose(a.reshape(split), perm).reshape(final),
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
    pads = [(int(a), int(b)) for a, b in node.attrs["pad_amount"]]
    scheme, value = node.attrs["scheme"], float(node.attrs["pad_constant_value"])
    if scheme == PAD_CONSTANT:
        qo = act_q(ctx, node.outputs[0])
        if qo is None:
            fill: int | float = int(value)
        else:
            fill = int(np.clip(np.round(value / float(qo.scale[0])) - int(qo.offset[0]), qo.qmin, qo.qmax))
        flat = [v for a, b in reversed(pads) for v in (a, b)]
        return movement(node, ctx, lambda a: np.pad(a, pads, constant_values=fill),
                        lambda t: F.pad(t, flat, value=fill))
    shape = ctx.shape(node.inputs[0])
    plan = [(i, _pad_index(scheme, shape[i], a, b)) for i, (a, b) in enumerate(pads) if (a, b) != (0, 0)]
    if any(shape[i] == 0 for i, _ in plan):
        raise Unsupported("Pad of an empty dim with a non-constant scheme")
    plan_t = [(i, torch.from_numpy(idx).to(ctx.device)) for i, idx in plan]

    def move_np(a: np.ndarray) -> np.ndarray:
        for i, idx in plan:
            a = np.take(a, idx, axis=i)
        return a

    def move_t(t: torch.Tensor) -> torch.Tensor:
        for i, idx in plan_t:
            t = torch.index_select(t, i, idx)
        return t

    return movement(node, ctx, move_np, move_t)


@htp_kernel("Cast")
def cast(node: Node, ctx: HtpBuildContext) -> HtpStep:
    """Quantized float -> quantized float: a requantization; integer -> integer: a plain conversion.
    Between a quantized float and an integer type: Unsupported (falls back to cpu)."""
    src, dst = ctx.graph.tensors[node.inputs[0]], ctx.graph.tensors[node.outputs[0]]
    if src.dtype.is_float != dst.dtype.is_float:
        raise Unsupported(f"Cast from {src.dtype.name} to {dst.dtype.name} leaves the quantized domain")
    return movement(node, ctx, lambda a: a, lambda t: t)


# -- several inputs or outputs -------------------------------------------------------------------

@htp_kernel("Split")
def split(node: Node, ctx: HtpBuildContext) -> HtpStep:
    x = node.inputs[0]
    rank = len(ctx.shape(x))
    axis = int(node.attrs["axis"]) % rank
    bounds = [0, *(int(v) for v in node.attrs["split_index"]), ctx.shape(x)[axis]]
    cuts = list(itertools.pairwise(bounds))

    def piece(a: Any, lo: int, hi: int) -> Any:
        return a[(slice(None),) * axis + (slice(lo, hi),)]

    if ctx.is_static(x):
        return _const_step(node, ctx, [c_array(piece(static_value(ctx, x, o), lo, hi))
                                       for o, (lo, hi) in zip(node.outputs, cuts)])
    flows = [flow(ctx, x, o) for o in node.outputs]

    def reference(a: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(c_array(f.np(piece(a, lo, hi))) for f, (lo, hi) in zip(flows, cuts))

    def fast(t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(f.t(piece(t, lo, hi)).contiguous() for f, (lo, hi) in zip(flows, cuts))

    return _step(node, reference, fast, [x])


@htp_kernel("Concat")
def concat(node: Node, ctx: HtpBuildContext) -> HtpStep:
    """Each input requantized to the output encoding (when its own differs), then joined."""
    out = node.outputs[0]
    rank = len(ctx.shape(out))
    axis = int(node.attrs["axis"]) % rank if rank else 0
    ins = [x for x in node.inputs if x]
    bits = _out_bits(ctx, out)
    quantized = act_q(ctx, out) is not None
    raw_t = None if quantized else torch_dtype(ctx.graph.tensors[out].dtype)
    # per input: ("static", numpy, torch) or ("run", Flow)
    parts: list[tuple[np.ndarray, torch.Tensor] | Flow] = []
    for x in ins:
        if ctx.is_static(x):
            v = static_value(ctx, x, out)
            parts.append((v, _const_t(v, quantized, bits, raw_t, ctx.device)))
        else:
            parts.append(flow(ctx, x, out))
    runtime = [x for x in ins if not ctx.is_static(x)]
    if not runtime:
        return _const_step(node, ctx, [np.concatenate([p[0] for p in parts if isinstance(p, tuple)], axis)])

    def reference(*xs: np.ndarray) -> np.ndarray:
        it = iter(xs)
        vals = [p[0] if isinstance(p, tuple) else p.np(next(it)) for p in parts]
        return np.concatenate(vals, axis)

    def fast(*xs: torch.Tensor) -> torch.Tensor:
        it = iter(xs)
        vals = [p[1] if isinstance(p, tuple) else p.t(next(it)) for p in parts]
        return torch.cat(vals, axis)

    return _step(node, reference, fast, runtime)


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


def _two_input(node: Node, ctx: HtpBuildContext, ref_fn: Callable[[np.ndarray, np.ndarray], np.ndarray],
               fast_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> HtpStep:
    """Data (input 0) and integer indices (input 1), either possibly static."""
    x, idx, out = node.inputs[0], node.inputs[1], node.outputs[0]
    _indices(ctx, idx)
    quantized = act_q(ctx, out) is not None
    bits, raw_t = _out_bits(ctx, out), None if quantized else torch_dtype(ctx.graph.tensors[out].dtype)
    idx_static = ctx.is_static(idx)
    idx_np = np.asarray(ctx.graph.tensors[idx].data) if idx_static else None
    if ctx.is_static(x):
        data_np = static_value(ctx, x, out)
        if idx_np is not None:
            return _const_step(node, ctx, [c_array(ref_fn(data_np, idx_np))])
        data_t = _const_t(data_np, quantized, bits, raw_t, ctx.device)
        return _step(node, lambda i: c_array(ref_fn(data_np, np.asarray(i))),
                     lambda i: fast_fn(data_t, i).contiguous(), [idx])
    fl = flow(ctx, x, out)
    if idx_np is not None:
        idx_t = torch.from_numpy(c_array(idx_np)).to(ctx.device)
        return _step(node, lambda a: c_array(ref_fn(fl.np(a), idx_np)),
                     lambda a: fast_fn(fl.t(a), idx_t).contiguous(), [x])
    return _step(node, lambda a, i: c_array(ref_fn(fl.np(a), np.asarray(i))),
                 lambda a, i: fast_fn(fl.t(a), i).contiguous(), [x, idx])


@htp_kernel("Gather")
def gather(node: Node, ctx: HtpBuildContext) -> HtpStep:
    rank = len(ctx.shape(node.inputs[0]))
    axis = int(node.attrs["axis"]) % rank
    size = ctx.shape(node.inputs[0])[axis]
    out_shape = tuple(ctx.shape(node.outputs[0]))

    def ref_fn(a: np.ndarray, i: np.ndarray) -> np.ndarray:
        return np.take(a, _normalize_np(i, size), axis=axis).reshape(out_shape)

    def fast_fn(a: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return torch.index_select(a, axis, _normalize_t(i, size).reshape(-1)).reshape(out_shape)

    return _two_input(node, ctx, ref_fn, fast_fn)


@htp_kernel("GatherElements")
def gather_elements(node: Node, ctx: HtpBuildContext) -> HtpStep:
    rank = len(ctx.shape(node.inputs[0]))
    axis = int(node.attrs["axis"]) % rank
    size = ctx.shape(node.inputs[0])[axis]

    def ref_fn(a: np.ndarray, i: np.ndarray) -> np.ndarray:
        return np.take_along_axis(a, _normalize_np(i, size), axis=axis)

    def fast_fn(a: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return torch.gather(a, axis, _normalize_t(i, size))

    return _two_input(node, ctx, ref_fn, fast_fn)


# -- Resize --------------------------------------------------------------------------------------

RESIZE_WEIGHT_BITS = 20  # fraction bits of the fixed-point interpolation weights
RESIZE_EXTRA_BITS = 8  # fraction bits values carry between the axes of a filtered resize
_MAX_TAPS = 16


def _round_half_away(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def _fixed_rows(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An [out, in] float filter matrix -> (idx [out, T], W [out, T]) with Q.20 integer weights; each
    row's integer sum is its float sum rounded (the largest weight takes the difference)."""
    one = 1 << RESIZE_WEIGHT_BITS
    nz = m != 0
    taps = max(1, int(nz.sum(axis=1).max()))
    if taps > _MAX_TAPS:
        raise Unsupported(f"Resize filter of {taps} taps (at most {_MAX_TAPS})")
    n_out = m.shape[0]
    idx = np.zeros((n_out, taps), dtype=np.int64)
    w = np.zeros((n_out, taps), dtype=np.int64)
    for r in range(n_out):
        cols = np.nonzero(nz[r])[0]
        wf = m[r, cols]
        wq = _round_half_away(wf * one).astype(np.int64)
        if cols.size:
            target = int(_round_half_away(np.array(wf.sum() * one)))
            wq[int(np.argmax(np.abs(wf)))] += target - int(wq.sum())
        idx[r, :cols.size] = cols
        w[r, :cols.size] = wq
    return idx, w


@htp_kernel("Resize")
def resize(node: Node, ctx: HtpBuildContext) -> HtpStep:
    from openqnn.backends.cpu.kernels.spatial import (
        _antialias_matrix,
        _filter_matrix,
        _nearest_index,
        _original_coords,
    )

    a = node.attrs
    x, out = node.inputs[0], node.outputs[0]
    in_shape, out_shape = ctx.shape(x), tuple(int(v) for v in a["output_shape"])
    rank = len(in_shape)
    interp, mode = a["interpolation_mode"], a["transformation_mode"]
    if interp not in ("nearest", "linear", "cubic"):
        raise Unsupported(f"Resize interpolation_mode {interp!r}")
    if ctx.is_static(x):
        raise Unsupported("Resize of a static tensor")
    fl = flow(ctx, x, out)
    if tuple(in_shape) == out_shape:
        return movement(node, ctx, lambda v: v, lambda t: t)
    if interp != "nearest" and not fl.quantized:
        raise Unsupported(f"Resize {interp} of an unquantized {ctx.graph.tensors[x].dtype.name} tensor")
    given = bool(a["scales"])
    f32 = np.float32
    scales = [f32(s) for s in a["scales"]] or [f32(o) / f32(i) if i else f32(1) for o, i in zip(out_shape, in_shape)]
    roi = list(a["roi"]) or [0.0] * rank + [1.0] * rank
    extrapolate = mode == "tf_crop_and_resize"
    antialias = a["antialias"] and interp != "nearest"
    plan: list[tuple[int, np.ndarray, np.ndarray | None]] = []  # (axis, idx [out] or [out, T], W or None)
    mask: np.ndarray | None = None
    for ax in range(rank):
        n_in, n_out, s = in_shape[ax], out_shape[ax], scales[ax]
        identity = s == f32(1)
        if identity and n_in == n_out:
            continue
        length = float(s) * n_in if given else float(n_out)
        coords = (np.arange(n_out, dtype=f32) if identity
                  else _original_coords(mode, n_out, n_in, s, length, (roi[ax], roi[rank + ax])))
        if interp == "nearest":
            plan.append((ax, np.clip(_nearest_index(coords, a["nearest_mode"], bool(s < 1)), 0, n_in - 1), None))
        else:
            m = (_antialias_matrix(n_out, n_in, s, coords, identity, interp, a["cubic_coeff"], a["exclude_outside"])
                 if antialias else _filter_matrix(coords, n_in, interp, a["cubic_coeff"], a["exclude_outside"]))
            idx, w = _fixed_rows(m)
            plan.append((ax, idx, w))
        if extrapolate and not identity:
            oob = (coords < 0) | (coords > f32(n_in - 1))
            if oob.any():
                shape = [1] * rank
                shape[ax] = n_out
                mk = oob.reshape(shape)
                mask = mk if mask is None else (mask | mk)

    qi, qo = act_q(ctx, x), act_q(ctx, out)
    fill: int | float = 0
    if mask is not None:
        value = float(a["extrapolation_value"])
        fill = (int(np.clip(np.round(value / float(qo.scale[0])) - int(qo.offset[0]), qo.qmin, qo.qmax))
                if qo is not None else value)
    mask_t = torch.from_numpy(c_array(mask)).to(ctx.device) if mask is not None else None

    if interp == "nearest":
        plan_t = [(ax, torch.from_numpy(idx).to(ctx.device)) for ax, idx, _ in plan]

        def move_np(v: np.ndarray) -> np.ndarray:
            for ax, idx, _ in plan:
                v = np.take(v, idx, axis=ax)
            return np.where(mask, fill, v).astype(v.dtype) if mask is not None else v

        def move_t(t: torch.Tensor) -> torch.Tensor:
            for ax, idx_t in plan_t:
                t = torch.index_select(t, ax, idx_t)
            return torch.where(mask_t, torch.tensor(fill, dtype=t.dtype, device=t.device), t) if mask_t is not None else t

        return movement(node, ctx, move_np, move_t)

    # filtered: fixed-point separable filter in the (q - z_in) << 8 domain, one requantization
    assert qi is not None and qo is not None
    z_in, z_out = int(qi.zero_point[0]), int(qo.zero_point[0])
    mult, shift = quantize_multiplier(float(qi.scale[0]) / (float(qo.scale[0]) * (1 << RESIZE_EXTRA_BITS)))
    bound = (qi.qmax - qi.qmin) << RESIZE_EXTRA_BITS
    for _, _, wq in plan:
        assert wq is not None
        bound = int(bound * max(1.0, float(np.abs(wq).sum(axis=1).max()) / (1 << RESIZE_WEIGHT_BITS))) + 1
    if bound >= 1 << 31:
        raise Unsupported("Resize filter overshoot too large for a 32-bit requantization")
    plan_w = [(ax, torch.from_numpy(idx).to(ctx.device), torch.from_numpy(w).to(ctx.device))
              for ax, idx, w in plan if w is not None]

    def bshape(ax: int, n_out: int) -> list[int]:
        sh = [1] * rank
        sh[ax] = n_out
        return sh

    def reference(q: np.ndarray) -> np.ndarray:
        v = (np.asarray(q, dtype=np.int64) - z_in) << RESIZE_EXTRA_BITS
        for ax, idx, w in plan:
            assert w is not None
            acc = np.zeros([idx.shape[0] if i == ax else d for i, d in enumerate(v.shape)], dtype=np.int64)
            for t in range(idx.shape[1]):
                acc = acc + np.take(v, idx[:, t], axis=ax) * w[:, t].reshape(bshape(ax, idx.shape[0]))
            v = rdbpot_np(acc, RESIZE_WEIGHT_BITS)
        y = np.clip(z_out + mbqm_np(v, mult, shift), qo.qmin, qo.qmax)
        if mask is not None:
            y = np.where(mask, fill, y)
        return c_array(y)

    def fast(q: torch.Tensor) -> torch.Tensor:
        v = (q.to(torch.int64) - z_in) << RESIZE_EXTRA_BITS
        for ax, idx_t, w_t in plan_w:
            wsh = bshape(ax, idx_t.shape[0])
            acc = torch.index_select(v, ax, idx_t[:, 0]) * w_t[:, 0].reshape(wsh)
            for t in range(1, idx_t.shape[1]):
                acc = acc + torch.index_select(v, ax, idx_t[:, t]) * w_t[:, t].reshape(wsh)
            v = rdbpot_t(acc, RESIZE_WEIGHT_BITS)
        y = torch.clamp(mbqm_t(v, mult, shift) + z_out, qo.qmin, qo.qmax)
        if mask_t is not None:
            y = torch.where(mask_t, torch.tensor(fill, dtype=y.dtype, device=y.device), y)
        return to_storage(y, qo.bitwidth).contiguous()

    return _step(node, reference, fast, [x])
