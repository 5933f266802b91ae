"""Data movement kernels."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from openqnn.backends.cpu.kernels.registry import BuildContext, Step, Unsupported, kernel, simple
from openqnn.ir.graph import Node
from openqnn.ops.shape import CRD, PAD_CONSTANT, PAD_EDGE, PAD_MIRROR_REFLECT, PAD_MIRROR_SYMMETRIC


@kernel("Reshape")
def reshape(node: Node, ctx: BuildContext) -> Step:
    shape = tuple(node.attrs["shape"])
    return simple(lambda x: x.reshape(shape), node)


@kernel("Transpose")
def transpose(node: Node, ctx: BuildContext) -> Step:
    perm = tuple(node.attrs["perm"])
    return simple(lambda x: x.permute(perm), node)


@kernel("Concat")
def concat(node: Node, ctx: BuildContext) -> Step:
    axis = node.attrs["axis"]
    return simple(lambda *xs: torch.cat(xs, axis), node)


@kernel("Split")
def split(node: Node, ctx: BuildContext) -> Step:
    axis = node.attrs["axis"]
    size = ctx.shape(node.inputs[0])[axis]
    bounds = [0, *node.attrs["split_index"], size]
    sizes = [b - a for a, b in itertools.pairwise(bounds)]
    return simple(lambda x: torch.split(x, sizes, axis), node)


@kernel("StridedSlice")
def strided_slice(node: Node, ctx: BuildContext) -> Step:
    ranges = node.attrs["ranges"]
    if all(s > 0 for _, _, s in ranges):
        index = tuple(slice(b, e, s) for b, e, s in ranges)
        return simple(lambda x: x[index], node)
    # negative strides: flip those dims, then slice forward
    flips = tuple(i for i, (_, _, s) in enumerate(ranges) if s < 0)
    shape = ctx.shape(node.inputs[0])
    fwd = []
    for i, (b, e, s) in enumerate(ranges):
        if s > 0:
            fwd.append(slice(b, e, s))
        else:
            n = shape[i]
            fwd.append(slice(n - 1 - b, n - 1 - e, -s))
    index = tuple(fwd)
    return simple(lambda x: torch.flip(x, flips)[index], node)


def _index(t: torch.Tensor, size: int) -> torch.Tensor:
    t = t.to(torch.int64)
    return torch.where(t < 0, t + size, t)


@kernel("Gather")
def gather(node: Node, ctx: BuildContext) -> Step:
    axis = node.attrs["axis"]
    size = ctx.shape(node.inputs[0])[axis]
    out_shape = ctx.shape(node.outputs[0])

    def run(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        flat = _index(idx, size).reshape(-1)
        return torch.index_select(x, axis, flat).reshape(out_shape)

    if ctx.is_static(node.inputs[1]):
        idx_static = _index(ctx.static(node.inputs[1]), size).reshape(-1)
        if ctx.is_static(node.inputs[0]) is False:
            return Step(lambda x: torch.index_select(x, axis, idx_static).reshape(out_shape), [node.inputs[0]])
    if ctx.is_static(node.inputs[0]) and len(ctx.shape(node.inputs[0])) == 2 and axis == 0:
        table = ctx.static(node.inputs[0])  # embedding lookup

        def lookup(idx: torch.Tensor) -> torch.Tensor:
            try:  # (one op for indices in range, the common case; negative ones are wrapped first)
                return F.embedding(idx, table)
            except (IndexError, RuntimeError):
                return F.embedding(_index(idx, size), table)

        return Step(lookup, [node.inputs[1]])
    return simple(run, node)


@kernel("GatherElements")
def gather_elements(node: Node, ctx: BuildContext) -> Step:
    axis = node.attrs["axis"]
    size = ctx.shape(node.inputs[0])[axis]
    return simple(lambda x, idx: torch.gather(x, axis, _index(idx, size)), node)


def _prod(dims) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return n


def _linear_index(idx: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
    """[..., k] index tuples into dims ``sizes`` -> [...] row-major linear indices (negatives wrapped)."""
    idx = idx.to(torch.int64)
    lin = torch.zeros(idx.shape[:-1], dtype=torch.int64, device=idx.device)
    for j, n in enumerate(sizes):
        col = idx[..., j]
        lin = lin * n + torch.where(col < 0, col + n, col)
    return lin


@kernel("GatherNd")
def gather_nd(node: Node, ctx: BuildContext) -> Step:
    b = node.attrs["batch_dims"]
    xs = ctx.shape(node.inputs[0])
    out_shape = ctx.shape(node.outputs[0])
    idx_shape = ctx.shape(node.inputs[1])
    k = idx_shape[-1]
    batch, inner, rest = _prod(xs[:b]), tuple(xs[b:b + k]), tuple(xs[b + k:])
    m = _prod(idx_shape[b:-1])

    def run(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        xf = x.reshape(batch, _prod(inner), *rest)  # [batch, positions, ...rest]
        lin = _linear_index(idx.reshape(batch, m, k), inner)  # [batch, m]
        bi = torch.arange(batch, device=x.device).view(-1, 1).expand_as(lin)
        return xf[bi, lin].reshape(out_shape)

    return simple(run, node)


@kernel("ScatterElements")
def scatter_elements(node: Node, ctx: BuildContext) -> Step:
    axis, red = node.attrs["axis"], node.attrs["reduction"]
    size = ctx.shape(node.inputs[0])[axis]
    reduce = {"none": None, "add": "sum", "mul": "prod", "max": "amax", "min": "amin"}[red]

    def run(x: torch.Tensor, idx: torch.Tensor, upd: torch.Tensor) -> torch.Tensor:
        idx = _index(idx, size)
        if reduce is None:
            return x.scatter(axis, idx, upd)
        return x.scatter_reduce(axis, idx, upd, reduce, include_self=True)

    return simple(run, node)


@kernel("ScatterNd")
def scatter_nd(node: Node, ctx: BuildContext) -> Step:
    red = node.attrs["reduction"]
    xs = ctx.shape(node.inputs[0])
    idx_shape = ctx.shape(node.inputs[1])
    k, n_upd = idx_shape[-1], _prod(idx_shape[:-1])
    inner, rest = tuple(xs[:k]), tuple(xs[k:])
    reduce = {"mul": "prod", "max": "amax", "min": "amin"}.get(red, "")

    def run(x: torch.Tensor, idx: torch.Tensor, upd: torch.Tensor) -> torch.Tensor:
        lin = _linear_index(idx.reshape(n_upd, k), inner)
        out = x.reshape(_prod(inner), *rest).clone()
        u = upd.reshape(n_upd, *rest).to(out.dtype)
        if red == "none":
            out.index_copy_(0, lin, u)
        elif red == "add":
            out.index_add_(0, lin, u)
        else:
            where = lin.view(-1, *[1] * len(rest)).expand_as(u)
            out.scatter_reduce_(0, where, u, reduce, include_self=True)
        return out.reshape(xs)

    return simple(run, node)


@kernel("Pad")
def pad(node: Node, ctx: BuildContext) -> Step:
    pads = node.attrs["pad_amount"]
    scheme, value = node.attrs["scheme"], node.attrs["pad_constant_value"]
    flat: list[int] = []
    for before, after in reversed(pads):
        flat += [before, after]
    if scheme == PAD_CONSTANT:
        return simple(lambda x: F.pad(x, flat, value=value if x.dtype.is_floating_point else int(value)), node)
    padded_dims = [i for i, p in enumerate(pads) if p != (0, 0)]

    def run(x: torch.Tensor) -> torch.Tensor:
        # torch's reflect/replicate pad the trailing 1-3 dims of a batched tensor; move padded dims last
        for i in padded_dims:
            before, after = pads[i]
            if scheme == PAD_EDGE:
                idx = torch.clamp(torch.arange(-before, x.shape[i] + after), 0, x.shape[i] - 1)
            elif scheme == PAD_MIRROR_REFLECT:
                n = x.shape[i]
                r = torch.arange(-before, n + after).abs()
                period = 2 * (n - 1) if n > 1 else 1
                r = r % period
                idx = torch.where(r >= n, period - r, r)
            elif scheme == PAD_MIRROR_SYMMETRIC:
                n = x.shape[i]
                r = torch.arange(-before, n + after)
                r = torch.where(r < 0, -r - 1, r) % (2 * n)
                idx = torch.where(r >= n, 2 * n - 1 - r, r)
            else:
                raise AssertionError(scheme)
            x = torch.index_select(x, i, idx)
        return x

    return simple(run, node)


@kernel("Tile")
def tile(node: Node, ctx: BuildContext) -> Step:
    reps = tuple(node.attrs["multiples"])
    return simple(lambda x: x.repeat(reps), node)


@kernel("DepthToSpace", "SpaceToDepth")
def depth_space(node: Node, ctx: BuildContext) -> Step:
    bh, bw = node.attrs["block_size"]
    mode = node.attrs["mode"]
    n, h, w, c = ctx.shape(node.inputs[0])
    if node.op_type == "DepthToSpace":
        oc = c // (bh * bw)

        def d2s(x: torch.Tensor) -> torch.Tensor:
            if mode == CRD:  # channel index = oc_i * bh * bw + by * bw + bx
                y = x.reshape(n, h, w, oc, bh, bw).permute(0, 1, 4, 2, 5, 3)
            else:  # DCR: channel index = (by * bw + bx) * oc + oc_i
                y = x.reshape(n, h, w, bh, bw, oc).permute(0, 1, 3, 2, 4, 5)
            return y.reshape(n, h * bh, w * bw, oc)

        return simple(d2s, node)
    if mode == CRD:
        raise Unsupported("SpaceToDepth in CRD mode")

    def s2d(x: torch.Tensor) -> torch.Tensor:
        y = x.reshape(n, h // bh, bh, w // bw, bw, c).permute(0, 1, 3, 2, 4, 5)
        return y.reshape(n, h // bh, w // bw, bh * bw * c)

    return simple(s2d, node)
