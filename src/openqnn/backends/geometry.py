"""Geometry shared by the cpu kernels and the htp integer kernels: pooling windows (:class:`PoolGeometry`,
:func:`window_sum`) and ONNX Resize's coordinate mapping (:func:`resize_plan`), so both backends read
the same taps and resize exactly alike.

Resize is separable: for every resized axis, once, either the source index of each output position
(nearest) or an interpolation matrix ``[out, in]`` (linear, cubic, antialiased filters). The coordinate
arithmetic follows ONNX Runtime's CPU kernel step for step (float32 coordinates, the same rounding and
edge rules), so the results match it, not just the ONNX text.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from openqnn.backends.base import Unsupported
from openqnn.ir.graph import Graph, Node

__all__ = ["PoolGeometry", "ResizeAxis", "resize_plan", "spatial_index", "to_channel_first", "to_channel_last",
           "window_sum"]

_AVG_POOL: dict[int, Callable[..., torch.Tensor]] = {2: F.avg_pool2d, 3: F.avg_pool3d}
_F32 = np.float32


# -- pooling windows ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class PoolGeometry:
    """Windows of an n-D pool: filter, stride, dilation, declared pads, and the sizes they imply."""

    k: tuple[int, ...]
    s: tuple[int, ...]
    d: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]  # declared [begin, end] per spatial axis
    in_size: tuple[int, ...]
    out_size: tuple[int, ...]

    @staticmethod
    def of(node: Node, graph: Graph) -> PoolGeometry:
        n = len(node.attrs["filter_size"])
        return PoolGeometry(
            tuple(node.attrs["filter_size"]), tuple(node.attrs["stride"]), tuple(node.attrs["dilation"]),
            tuple((int(a), int(b)) for a, b in node.attrs["pad_amount"]),
            tuple(graph.tensors[node.inputs[0]].shape[1:1 + n]), tuple(graph.tensors[node.outputs[0]].shape[1:1 + n]))

    @property
    def n(self) -> int:
        return len(self.k)

    @property
    def end_pads(self) -> tuple[int, ...]:
        """Padding after each axis that the last window reads (beyond the input; may exceed the declared end pad in ceil mode)."""
        return tuple(max(0, (o - 1) * s + d * (k - 1) + 1 - i - p[0])
                     for o, s, d, k, i, p in zip(self.out_size, self.s, self.d, self.k, self.in_size, self.pads))

    @property
    def padded_size(self) -> tuple[int, ...]:
        return tuple(p[0] + i + e for p, i, e in zip(self.pads, self.in_size, self.end_pads))

    @property
    def f_pad(self) -> tuple[int, ...]:
        """The explicit padding as ``F.pad`` takes it (last axis first)."""
        return tuple(v for p, e in zip(reversed(self.pads), reversed(self.end_pads)) for v in (p[0], e))

    def crop(self, y: torch.Tensor) -> torch.Tensor:
        """The first ``out_size`` windows of a channel-first result."""
        return y[spatial_index(slice(0, o) for o in self.out_size)]


def spatial_index(slices: Iterable[slice]) -> tuple[Any, ...]:
    """An index selecting ``slices`` on the trailing (spatial) axes of a channel-first tensor."""
    return (Ellipsis, *slices)


def to_channel_first(x: torch.Tensor) -> torch.Tensor:
    n = x.dim() - 2
    return x.permute(0, n + 1, *range(1, n + 1))


def to_channel_last(x: torch.Tensor) -> torch.Tensor:
    n = x.dim() - 2
    return x.permute(0, *range(2, n + 2), 1)


def window_sum(x: torch.Tensor, g: PoolGeometry) -> torch.Tensor:
    """Per-window sums of a padded channel-first tensor, ``out_size`` windows per axis, any dilation."""
    if g.d == (1,) * g.n and x.dtype.is_floating_point:
        return g.crop(_AVG_POOL[g.n](x, g.k, g.s, 0, divisor_override=1))
    total: torch.Tensor | None = None
    for taps in itertools.product(*(range(k) for k in g.k)):
        sl = tuple(slice(t * d, t * d + (o - 1) * s + 1, s) for t, d, o, s in zip(taps, g.d, g.out_size, g.s))
        part = x[spatial_index(sl)]
        total = part if total is None else total + part
    assert total is not None
    return total


# -- Resize ------------------------------------------------------------------------------------------

def _original_coords(mode: str, n_out: int, n_in: int, scale: np.float32, length: float,
                     roi: tuple[float, float]) -> np.ndarray:
    """Source coordinate of every output index: float32 arithmetic as ONNX Runtime does it, except
    align_corners and pytorch_half_pixel, which follow ONNX and use the resized length ``length``
    (scale * input length when the model gave scales, which ORT and PyTorch replace by the rounded
    output length)."""
    x = np.arange(n_out, dtype=_F32)
    s = _F32(scale)
    half = _F32(0.5)
    if mode == "asymmetric":
        return x / s
    if mode == "half_pixel":
        return (x + half) / s - half
    if mode == "pytorch_half_pixel":
        return (x + half) / s - half if length != 1 else np.full(n_out, -0.5, _F32)
    if mode == "tf_half_pixel_for_nn":
        return (x + half) / s
    if mode == "align_corners":
        if length == 1:
            return np.zeros(n_out)
        return np.arange(n_out, dtype=np.float64) * (n_in - 1) / (length - 1)
    if mode == "half_pixel_symmetric":
        out_width = s * _F32(n_in)
        adjustment = _F32(n_out) / out_width
        offset = (_F32(n_in) / _F32(2)) * (_F32(1) - adjustment)
        return (np.float64(offset) + (x.astype(np.float64) + 0.5) / np.float64(s) - 0.5).astype(_F32)
    if mode == "tf_crop_and_resize":
        r0, r1 = _F32(roi[0]), _F32(roi[1])
        if n_out > 1:
            return r0 * _F32(n_in - 1) + (x * (r1 - r0) * _F32(n_in - 1)) / _F32(n_out - 1)
        return np.full(n_out, 0.5 * (float(r0) + float(r1)) * (n_in - 1), dtype=_F32)
    raise Unsupported(f"Resize transformation_mode {mode!r}")


def _nearest_index(x: np.ndarray, mode: str, downsample: bool) -> np.ndarray:
    v = x.astype(np.float64)  # exact: every float32 is a float64, and v + 0.5 stays exact
    if mode == "simple":
        idx = np.ceil(v) if downsample else np.trunc(v)
    elif mode == "round_prefer_floor":
        away = np.sign(v) * np.floor(np.abs(v) + 0.5)  # std::round: halves away from zero
        idx = np.where(v == np.trunc(v) + 0.5, np.floor(v), away)
    elif mode == "round_prefer_ceil":
        idx = np.sign(v) * np.floor(np.abs(v) + 0.5)
    elif mode == "floor":
        idx = np.floor(v)
    elif mode == "ceil":
        idx = np.ceil(v)
    else:
        raise Unsupported(f"Resize nearest_mode {mode!r}")
    return idx.astype(np.int64)


def _cubic(a: float) -> Callable[[np.ndarray], np.ndarray]:
    def f(d: np.ndarray) -> np.ndarray:
        d = np.abs(d)
        near = ((a + 2) * d - (a + 3)) * d * d + 1
        far = ((d - 5) * d + 8) * d * a - 4 * a
        return np.where(d < 1, near, np.where(d < 2, far, 0.0))

    return f


def _linear(d: np.ndarray) -> np.ndarray:
    return np.clip(1.0 - np.abs(d), 0.0, None)


def _filter_matrix(x: np.ndarray, n_in: int, interp: str, cubic_a: float, exclude_outside: bool) -> np.ndarray:
    """[out, in] weights of linear (2 taps) or cubic (4 taps) interpolation at source coords x;
    taps outside the input read the edge, or get weight 0 (renormalized) with exclude_outside."""
    v = x.astype(np.float64)
    if interp == "linear" and not exclude_outside:
        v = np.clip(v, 0.0, n_in - 1)  # ORT clamps the coordinate, then blends its two neighbours
    base = np.floor(v).astype(np.int64)
    offsets = np.arange(0, 2) if interp == "linear" else np.arange(-1, 3)
    taps = base[:, None] + offsets[None, :]
    kern = _linear if interp == "linear" else _cubic(cubic_a)
    w = kern(taps - v[:, None])
    inside = (taps >= 0) & (taps < n_in)
    if exclude_outside:
        w = np.where(inside, w, 0.0)
        total = w.sum(axis=1, keepdims=True)
        w = np.divide(w, total, out=np.zeros_like(w), where=total != 0)
    m = np.zeros((len(v), n_in))
    rows = np.broadcast_to(np.arange(len(v))[:, None], taps.shape)
    np.add.at(m, (rows, np.clip(taps, 0, n_in - 1)), w)
    return m


def _antialias_matrix(n_out: int, n_in: int, scale: np.float32, x: np.ndarray, identity: bool, interp: str,
                      cubic_a: float, exclude_outside: bool) -> np.ndarray:
    """[out, in] weights of ORT's antialiasing filter (Pillow-style): a linear or cubic kernel
    stretched by 1/scale when downsampling, a bounded window per output, weights normalized over the
    whole window, taps outside the input folded onto the edge (or dropped with exclude_outside)."""
    if n_out == n_in:  # ORT leaves an axis of unchanged size alone, whatever its scale
        return np.eye(n_in)
    kern = _linear if interp == "linear" else _cubic(cubic_a)
    support_size = _F32(2.0 if interp == "linear" else 4.0)
    inv = _F32(1) / _F32(scale)  # ORT's "scale": input pixels per output pixel
    support = support_size * _F32(0.5) * inv if inv >= 1 else support_size * _F32(0.5)
    inv_scale = _F32(1) / inv if inv >= 1 else _F32(1)
    window = int(np.ceil(support)) * 2 + 1
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        center = _F32(0.5) + (_F32(i) if identity else x[i])
        lo = int(np.floor(center - support + _F32(0.5)))
        hi = lo + min(max(int(np.floor(center + support + _F32(0.5))) - lo, 0), window)
        if max(lo, 0) >= min(hi, n_in):
            continue
        if exclude_outside:
            lo, hi = max(lo, 0), min(hi, n_in)
        taps = np.arange(lo, hi)
        d = (taps.astype(_F32) - center + _F32(0.5)) * inv_scale
        w = kern(d.astype(np.float64))
        total = w.sum()
        if total != 0:
            w = w / total
        np.add.at(m[i], np.clip(taps, 0, n_in - 1), w)
    return m


@dataclass(frozen=True)
class ResizeAxis:
    """How one resized axis is computed: gather ``index`` (nearest) or multiply by ``matrix`` [out, in]."""

    axis: int
    index: np.ndarray | None
    matrix: np.ndarray | None


def resize_plan(attrs: dict, in_shape: tuple[int, ...], out_shape: tuple[int, ...]
                ) -> tuple[list[ResizeAxis], np.ndarray | None]:
    """Per resized axis, ONNX's exact coordinate mapping as an index or an interpolation matrix (float64),
    and the broadcastable bool mask of outputs that take ``extrapolation_value`` (tf_crop_and_resize).
    Shared by the cpu kernel and the htp integer kernel, so both resize exactly alike."""
    a = attrs
    rank = len(in_shape)
    interp, mode = a["interpolation_mode"], a["transformation_mode"]
    given = bool(a["scales"])  # the model gave scales (not sizes): the resized length is scale * input length
    scales = [_F32(s) for s in a["scales"]] or [_F32(o) / _F32(i) if i else _F32(1) for o, i in zip(out_shape, in_shape)]
    roi = list(a["roi"]) or [0.0] * rank + [1.0] * rank
    extrapolate = mode == "tf_crop_and_resize"
    antialias = a["antialias"] and interp != "nearest"
    plan: list[ResizeAxis] = []
    mask: np.ndarray | None = None
    for ax in range(rank):
        n_in, n_out, s = in_shape[ax], out_shape[ax], scales[ax]
        identity = s == _F32(1)
        if identity and n_in == n_out:
            continue
        length = float(s) * n_in if given else float(n_out)
        x = (np.arange(n_out, dtype=_F32) if identity
             else _original_coords(mode, n_out, n_in, s, length, (roi[ax], roi[rank + ax])))
        if interp == "nearest":
            plan.append(ResizeAxis(ax, np.clip(_nearest_index(x, a["nearest_mode"], bool(s < 1)), 0, n_in - 1), None))
        elif antialias:
            m = _antialias_matrix(n_out, n_in, s, x, identity, interp, a["cubic_coeff"], a["exclude_outside"])
            plan.append(ResizeAxis(ax, None, m))
        else:
            plan.append(ResizeAxis(ax, None, _filter_matrix(x, n_in, interp, a["cubic_coeff"], a["exclude_outside"])))
        if extrapolate and not identity:
            out_of_range = (x < 0) | (x > _F32(n_in - 1))
            if out_of_range.any():
                shape = [1] * rank
                shape[ax] = n_out
                mk = out_of_range.reshape(shape)
                mask = mk if mask is None else (mask | mk)
    return plan, mask
