"""Plan-level fusions of the cpu backend: which IR nodes run as one step.

* :func:`fuse_epilogues`: a convolution / FullyConnected with the element-wise ops that only it
  feeds -- ``ElementWiseAdd`` of a same-shape tensor, then ``Relu`` or ``ReluMinMax`` -- which
  oneDNN applies as post-ops while the result is still in cache;
* :func:`share_gemms`: FullyConnected nodes reading one input (attention's query, key and value
  projections) as one GEMM over the stacked weights;
* :func:`fuse_pointwise_depthwise`: a 1x1 convolution [+ clamp] and the depthwise convolution [+ clamp] it
  alone feeds (MobileNets' expansion) as one native kernel that never writes the expanded tensor out;
* :func:`fuse_attention`: ``MatMul(Q, K^T) -> scale -> + mask -> Softmax -> MatMul(., V)`` as PyTorch's fused
  ``scaled_dot_product_attention`` (the scores are never written out whole).

The math is the same; only intermediates are never written out and calls are saved. These run at
prepare time only: the groups are recorded in the cpu step plans (:mod:`openqnn.backends.cpu.steps`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from openqnn.backends.cpu import native
from openqnn.backends.cpu.kernels import KERNELS, BuildContext, Step
from openqnn.backends.cpu.kernels.conv import (
    Epilogue,
    build_conv2d,
    depthwise_operands,
    gemm_panels,
    native_ok,
)
from openqnn.backends.cpu.kernels.linear import (
    build_fully_connected,
    build_fully_connected_siblings,
    can_share_gemm,
)
from openqnn.backends.cpu.kernels.normalization import native_layer_norm, row_norm_size
from openqnn.backends.cpu.kernels.registry import KernelFn
from openqnn.errors import ContextError
from openqnn.ir.dtype import DType
from openqnn.ir.graph import Graph, Node

_REMEDY = "prepare the context again with qnn-context-binary-generator (this openqnn writes cpu steps it can read)"

__all__ = ["EPILOGUE_BUILDERS", "Attention", "Fusion", "PointwiseDepthwise", "SharedGemm", "attention_views", "fuse_attention",
           "fuse_epilogues", "fuse_pointwise_depthwise", "share_gemms"]

# op types whose kernels take an Epilogue, and their builders
EPILOGUE_BUILDERS = {"Conv2d": build_conv2d, "DepthWiseConv2d": build_conv2d,
                     "FullyConnected": build_fully_connected}


@dataclass
class Fusion:
    """``head`` (a convolution / FullyConnected) runs ``epilogue`` in place of the ``absorbed`` nodes.

    Its step runs where the last absorbed node ran: every input (the add's other operand too)
    exists by then.
    """

    head: Node
    absorbed: list[Node]
    epilogue: Epilogue

    @property
    def nodes(self) -> list[Node]:
        return [self.head, *self.absorbed]

    @property
    def at(self) -> str:
        return self.absorbed[-1].name

    @property
    def op_type(self) -> str:
        return "+".join(n.op_type for n in self.nodes)

    def build(self, ctx: BuildContext) -> Step:
        norm = self.absorbed[-1] if self.absorbed[-1].op_type == "LayerNorm" else None
        step = EPILOGUE_BUILDERS[self.head.op_type](self.head, ctx, self.epilogue)
        if norm is not None:
            step = _then_norm(step, norm, ctx)
        step.outputs = list(self.absorbed[-1].outputs)
        return step


def _then_norm(step: Step, ln: Node, ctx: BuildContext) -> Step:
    """``step`` followed by LayerNorm ``ln`` on its fresh output: in place with the native kernel, else the
    LayerNorm kernel's own step on it."""
    norm = native_layer_norm(ln, ctx) if step.path == "native" else None
    if norm is not None:
        def then_norm(first: KernelFn) -> KernelFn:  # (the step's function, and its form written over its residual)
            def fused(*xs: torch.Tensor) -> torch.Tensor:
                y = first(*xs)
                return norm.run(y, out=y)

            return fused

        return Step(then_norm(step.fn), step.inputs, path="native",
                    over=then_norm(step.over) if step.over is not None else None)
    after = KERNELS["LayerNorm"](ln, ctx)
    head, extra, count = step.fn, after.inputs[1:], len(step.inputs)

    def then(*xs: torch.Tensor) -> torch.Tensor:
        return after.fn(head(*xs[:count]), *xs[count:])

    return Step(then, [*step.inputs, *extra], path=step.path)


@dataclass
class SharedGemm:
    """FullyConnected nodes reading the same input, run as one GEMM where the first one ran."""

    nodes: list[Node]

    @property
    def at(self) -> str:
        return self.nodes[0].name

    @property
    def op_type(self) -> str:
        return f"FullyConnected*{len(self.nodes)}"

    def build(self, ctx: BuildContext) -> Step:
        step = build_fully_connected_siblings(self.nodes, ctx)
        step.outputs = [n.outputs[0] for n in self.nodes]
        return step


def fuse_epilogues(graph: Graph, exclude: Collection[str] = ()) -> list[Fusion]:
    """Each convolution / FullyConnected with the element-wise ops that only it feeds.

    A node is absorbed only when it is the sole reader of the previous output and that output is
    not a graph output, so nothing else ever needed the intermediates.
    """
    sole_reader = _sole_reader(graph)
    fusions = []
    absorbed_anywhere: set[str] = set(exclude)  # an Add of two convolutions' outputs joins the first one only
    for node in graph.nodes:
        if node.op_type not in EPILOGUE_BUILDERS or len(node.outputs) != 1 or node.name in absorbed_anywhere:
            continue
        y = graph.tensors[node.outputs[0]]
        if not y.dtype.is_float:
            continue
        absorbed: list[Node] = []
        add = ""
        nxt = sole_reader(y.name)
        if nxt is not None and nxt.name in absorbed_anywhere:
            continue
        if (nxt is not None and nxt.op_type == "Gelu" and node.op_type == "FullyConnected"
                and nxt.name not in exclude):  # (a GELU alone: then the next layer)
            act = "gelu_tanh" if nxt.attrs.get("approximate") == "tanh" else "gelu"
            absorbed_anywhere.add(nxt.name)
            fusions.append(Fusion(node, [nxt], Epilogue(act=act)))
            continue
        if nxt is not None and nxt.op_type == "ElementWiseAdd" and len(nxt.inputs) == 2:
            other = nxt.inputs[1] if nxt.inputs[0] == y.name else nxt.inputs[0]
            t = graph.tensors[other]
            if other != y.name and t.shape == y.shape and t.dtype is y.dtype:
                add = other
                absorbed.append(nxt)
                nxt = sole_reader(nxt.outputs[0])
        clamp = _clamp_of(nxt) if nxt is not None else None
        if nxt is not None and clamp is not None:
            absorbed.append(nxt)
            nxt = sole_reader(nxt.outputs[0])
        if (node.op_type == "FullyConnected" and absorbed and nxt is not None and nxt.op_type == "LayerNorm"
                and _row_norm(graph, nxt)):  # (BERT's post-LN: FullyConnected + residual Add + LayerNorm)
            absorbed.append(nxt)
        if absorbed and not any(n.name in exclude for n in absorbed):
            absorbed_anywhere.update(n.name for n in absorbed)
            fusions.append(Fusion(node, absorbed, Epilogue(add, clamp)))
    return fusions


def _row_norm(graph: Graph, ln: Node) -> bool:
    """Whether LayerNorm ``ln`` normalizes float32 rows as the native kernel takes them in place on a GEMM's output
    (:func:`~openqnn.backends.cpu.kernels.normalization.row_norm_size`)."""
    return graph.tensors[ln.inputs[0]].dtype is DType.FLOAT_32 and row_norm_size(ln, BuildContext(graph)) > 0


def _sole_reader(graph: Graph) -> Callable[[str], Node | None]:
    """``sole_reader(name)``: the one node that reads tensor ``name``, a node of one output, where ``name`` is
    not a graph output (so nothing else ever needs it), else None."""
    consumers = graph.consumers()
    outputs = set(graph.outputs)

    def sole_reader(name: str) -> Node | None:
        readers = consumers.get(name, [])
        if name in outputs or len(readers) != 1 or len(readers[0].outputs) != 1:
            return None
        return readers[0]

    return sole_reader


def _clamp_of(node: Node) -> tuple[float, float] | None:
    """The (lo, hi) bounds of a Relu / ReluMinMax node, None for other ops."""
    if node.op_type == "Relu":
        return 0.0, math.inf
    if node.op_type == "ReluMinMax":
        return float(node.attrs["min_value"]), float(node.attrs["max_value"])
    return None


def share_gemms(graph: Graph, ctx: BuildContext, exclude: Collection[str] = ()) -> list[SharedGemm]:
    """Groups of two or more FullyConnected nodes (not in ``exclude``) with one input and static weights."""
    by_input: dict[str, list[Node]] = {}
    for node in graph.nodes:
        if node.name not in exclude and can_share_gemm(node, ctx):
            by_input.setdefault(node.inputs[0], []).append(node)
    return [SharedGemm(nodes) for nodes in by_input.values() if len(nodes) > 1]


@dataclass
class Attention:
    """``softmax(Q K^T s + mask) V`` as one step: the scores MatMul, an optional ElementWiseDivide /
    ElementWiseMultiply by a static scalar, an optional ElementWiseAdd of a mask, the Softmax, optionally
    ``Where(IsNaN(p), 0, p)`` (PyTorch's exported SDPA) and the context MatMul, run where the group's last node
    ran. ``pre`` counts the Reshape / Transpose nodes (and, on Q's and K's way, multiplications by a static scalar)
    before them that split Q, K and V into heads (``nodes`` starts with Q's, then K's, then V's), ``post`` those
    after the context MatMul that merge the heads back (``nodes`` ends with them): the step reads the
    projections' rows and writes the merged output where they lie, as strided views."""

    nodes: list[Node]
    pre: tuple[int, int, int] = (0, 0, 0)
    post: int = 0

    @property
    def at(self) -> str:
        return self.nodes[-1].name

    @property
    def op_type(self) -> str:
        return "Attention"

    @property
    def core(self) -> list[Node]:
        """The scores MatMul through the context MatMul."""
        return self.nodes[sum(self.pre):len(self.nodes) - self.post]

    def build(self, ctx: BuildContext) -> Step:
        core = self.core
        at = next(i for i, n in enumerate(core) if n.op_type == "Softmax")
        scores, mid, guard, context = core[0], core[1:at], core[at + 1:-1], core[-1]
        scale_node = next((n for n in mid if n.op_type != "ElementWiseAdd"), None)
        add = next((n for n in mid if n.op_type == "ElementWiseAdd"), None)
        a, b, c3 = self.pre
        chains = [self.nodes[:a], self.nodes[a:a + b], self.nodes[a + b:a + b + c3]]
        scale = 1.0  # (not SDPA's default, 1 / sqrt(E)): the scores' scale times Q's and K's
        for n in [*chains[0], *chains[1], *([] if scale_node is None else [scale_node])]:
            if n.op_type in ("ElementWiseMultiply", "ElementWiseDivide"):
                c = float(ctx.static_np(n.inputs[1]).reshape(-1)[0])
                scale *= 1.0 / c if n.op_type == "ElementWiseDivide" else c
        zero_empty = bool(guard)  # Where(IsNaN(p), 0, p): a row of -inf scores gives zeros
        post = self.nodes[len(self.nodes) - self.post:]
        links = [(chain, x) for chain, x in zip(chains, (scores.inputs[0], scores.inputs[1], context.inputs[1]))]
        if not all(_linked([*chain], x) for chain, x in links) or not _linked([context, *post], None):
            raise ContextError(f"attention at node '{context.name}': its head split and merge nodes do not read one "
                               f"another's outputs in turn; {_REMEDY}")
        heads = [chain[0].inputs[0] if chain else x
                 for chain, x in zip(chains, (scores.inputs[0], scores.inputs[1], context.inputs[1]))]
        runtime = list(heads)
        if add is not None:  # the mask: the add's input the chain does not make
            runtime.append(_other(add, (scale_node or scores).outputs[0]))
        ta, tb = scores.attrs["transpose_in0"], scores.attrs["transpose_in1"]
        tv = context.attrs["transpose_in1"]
        views = attention_views(ctx, chains, post, (ta, not tb, tv), heads, context.outputs[0])
        out_name = (post[-1] if post else context).outputs[0]
        if views is None:  # (the fusion only absorbs what these views express: a plan from elsewhere)
            raise ContextError(f"attention at node '{context.name}': its head split is not a strided view; {_REMEDY}")
        (qv, kv, vv), (o_size, o_stride) = views
        out_shape = ctx.shape(out_name)
        direct = not any(self.pre) and not self.post

        def run(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *mask: torch.Tensor) -> torch.Tensor:
            if direct:  # the operands as given (views of any layout)
                q = q.transpose(-1, -2) if ta else q
                k = k if tb else k.transpose(-1, -2)
                v = v.transpose(-1, -2) if tv else v
            else:
                q, k, v = (x.contiguous().as_strided(*view) for x, view in zip((q, k, v), (qv, kv, vv)))
            m = mask[0] if mask else None
            if m is not None and m.dim() < 2:  # (a scalar or a row: SDPA takes masks of rank 2 and more)
                m = m.reshape((1,) * (2 - m.dim()) + tuple(m.shape))
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=m, scale=scale)
            if zero_empty:
                o = torch.nan_to_num(o, nan=0.0, posinf=math.inf, neginf=-math.inf)
            if direct:
                return o
            y = torch.empty(out_shape, dtype=o.dtype, device=o.device)
            y.as_strided(o_size, o_stride).copy_(o)
            return y

        dims = _native_dims(qv[0], kv[0], vv[0])
        if dims is not None and o_stride[-1] == 1 and native_ok(ctx, heads[0]) and all(
                ctx.dtype(x) is DType.FLOAT_32 for x in runtime):
            att = native.Attention(dims, scale, _four(qv[1]), _four(kv[1]), _four(vv[1]), _four(o_stride), out_shape,
                                   zero_empty)
            layouts: dict[tuple[int, tuple[int, ...]], native.Strides | None] = {}

            def layout(i: int, x: torch.Tensor) -> native.Strides | None:
                """Operand i's strides where x is a view of a wider tensor (a stacked projection's columns)."""
                key = (i, x.stride())
                if key not in layouts:
                    view = _chain_view(tuple(x.shape), chains[i], (ta, not tb, tv)[i], x.stride())
                    layouts[key] = None if view is None else _four(view[1])
                return layouts[key]

            def run_native(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *mask: torch.Tensor) -> torch.Tensor:
                if q.dtype is not torch.float32:  # (another dtype handed to the step: PyTorch's kernel)
                    return run(q, k, v, *mask)
                m = mask[0] if mask else None
                if m is not None and m.dtype is not torch.float32:
                    m = m.float()
                if q.is_contiguous() and k.is_contiguous() and v.is_contiguous():
                    return att.run(q, k, v, m)
                xs = [q, k, v]
                st = [layout(i, x) for i, x in enumerate(xs)]
                for i, x in enumerate(xs):
                    if st[i] is None:  # (a layout no view of which is the operand: copied)
                        xs[i], st[i] = x.contiguous(), _four((qv, kv, vv)[i][1])
                return att.run(xs[0], xs[1], xs[2], m, (st[0], st[1], st[2]))  # type: ignore[arg-type]

            step = Step(run_native, runtime, path="native")
            step.outputs = [out_name]
            return step

        step = Step(run, runtime, path="sdpa")
        step.outputs = [out_name]
        return step


def _linked(chain: Sequence[Node], last: str | None) -> bool:
    """Whether each node of ``chain`` reads the one before's output, and the last one's is ``last`` (if given)."""
    if any(n.inputs[0] != m.outputs[0] for m, n in itertools.pairwise(chain)):
        return False
    return last is None or not chain or chain[-1].outputs[0] == last


View = tuple[tuple[int, ...], tuple[int, ...]]  # (size, stride) of a strided view of a contiguous tensor


def _chain_view(shape: tuple[int, ...], chain: Sequence[Node], transpose: bool,
                strides: tuple[int, ...] | None = None) -> View | None:
    """The view a tensor of ``shape`` (contiguous, or of ``strides``) becomes through ``chain`` (Reshape / Transpose
    nodes, and scales by a scalar, which move nothing), its last two axes swapped if ``transpose``; None where a
    Reshape would need a copy."""
    t = torch.empty(shape, device="meta") if strides is None else torch.empty_strided(shape, strides, device="meta")
    try:
        for n in chain:
            if n.op_type in _MOVES:  # (a scale by a scalar moves nothing)
                t = t.view(tuple(n.attrs["shape"])) if n.op_type == "Reshape" else t.permute(tuple(n.attrs["perm"]))
    except RuntimeError:
        return None
    if transpose:
        t = t.transpose(-1, -2)
    return tuple(t.shape), tuple(t.stride())


def _merge_view(out_shape: tuple[int, ...], chain: Sequence[Node], shapes: Sequence[tuple[int, ...]]) -> View | None:
    """Where the elements of ``chain``'s input lie in its contiguous output of ``out_shape``: the chain undone
    from the output back (``shapes``: each node's input shape), as a view; None where that needs a copy."""
    t = torch.empty(out_shape, device="meta")
    try:
        for n, shape in zip(reversed(chain), reversed(shapes)):
            if n.op_type == "Reshape":
                t = t.view(shape)
            else:
                perm = tuple(n.attrs["perm"])
                t = t.permute(tuple(sorted(range(len(perm)), key=perm.__getitem__)))
    except RuntimeError:
        return None
    return tuple(t.shape), tuple(t.stride())


def attention_views(ctx: BuildContext, chains: Sequence[Sequence[Node]], post: Sequence[Node],
                    transposes: tuple[bool, bool, bool], heads: Sequence[str], context_out: str
                    ) -> tuple[tuple[View, View, View], View] | None:
    """Q, K and V as strided views of the tensors ``heads`` (contiguous) through their ``chains`` and the MatMuls'
    transposes (K as [..., keys, d]), and the context output's place in the contiguous output of ``post``."""
    views = []
    for head, chain, tr in zip(heads, chains, transposes):
        view = _chain_view(ctx.shape(head), chain, tr)
        if view is None:
            return None
        views.append(view)
    if post:
        out = _merge_view(ctx.shape(post[-1].outputs[0]), post, [ctx.shape(n.inputs[0]) for n in post])
    else:
        out = _chain_view(ctx.shape(context_out), (), False)
    if out is None:
        return None
    return (views[0], views[1], views[2]), out


def _four(strides: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Strides of [*batch, rows, cols] with one or two batch axes as (b, h, rows, cols)."""
    s = (0,) * (4 - len(strides)) + tuple(strides)
    return s[0], s[1], s[2], s[3]


def _native_dims(q: tuple[int, ...], k: tuple[int, ...], v: tuple[int, ...]) -> tuple[int, ...] | None:
    """(B, H, Sq, Sk, D, Dv) of Q [*batch, Sq, D], K [*batch, Sk, D], V [*batch, Sk, Dv] with one or two batch axes,
    all sizes positive; None otherwise (the native kernel does not take them)."""
    if not 3 <= len(q) <= 4 or not (q[:-2] == k[:-2] == v[:-2]) or k[-2] != v[-2] or q[-1] != k[-1]:
        return None
    batch = (1,) * (4 - len(q)) + tuple(q[:-2])
    dims = (*batch, q[-2], k[-2], q[-1], v[-1])
    return dims if min(dims) > 0 else None


def _other(node: Node, name: str) -> str:
    """The input of a two-input ``node`` that is not ``name``."""
    return node.inputs[1] if node.inputs[0] == name else node.inputs[0]


def fuse_attention(graph: Graph, exclude: Collection[str] = ()) -> list[Attention]:
    """Every float32 ``MatMul -> [scale] -> [+ mask] -> Softmax -> MatMul`` chain whose intermediates only the
    chain reads (none a graph output), none of its nodes in ``exclude``: Softmax over the last axis with beta 1,
    the scale a static scalar, the mask broadcasting to the scores' shape, Q, K and V of one batch shape."""
    producers = {o: n for n in graph.nodes for o in n.outputs}
    only_reader = _sole_reader(graph)
    consumers = graph.consumers()
    ctx = BuildContext(graph)

    found = []
    for sm in graph.nodes:
        if sm.op_type != "Softmax" or sm.attrs.get("beta", 1.0) != 1.0 or sm.name in exclude:
            continue
        scores_shape = graph.tensors[sm.inputs[0]].shape
        if sm.attrs.get("axis", -1) not in (-1, len(scores_shape) - 1) or len(scores_shape) < 3:
            continue
        chain: list[Node] = []
        x = sm.inputs[0]
        node = producers.get(x)
        if node is not None and node.op_type == "ElementWiseAdd" and only_reader(x) is sm and len(node.inputs) == 2:
            # the scores side is the one a MatMul / scale makes; the mask must broadcast to the scores' shape
            makers = [producers.get(i) for i in node.inputs]
            side = next((i for i, p in enumerate(makers) if p is not None and p.op_type in
                         ("MatMul", "ElementWiseDivide", "ElementWiseMultiply")), None)
            if side is None:
                continue
            mask = graph.tensors[node.inputs[1 - side]]
            if not _broadcasts(mask.shape, scores_shape) or not mask.dtype.is_float:
                continue
            chain.append(node)
            x = node.inputs[side]
            node = producers.get(x)
        if node is not None and node.op_type in ("ElementWiseDivide", "ElementWiseMultiply") and only_reader(x) in (
                sm, *chain) and len(node.inputs) == 2:
            c = node.inputs[1]
            if not (ctx.is_static(c) and int(np.prod(graph.tensors[c].shape)) == 1):
                continue
            chain.insert(0, node)
            x = node.inputs[0]
            node = producers.get(x)
        if node is None or node.op_type != "MatMul" or only_reader(x) not in (sm, *chain[:1]):
            continue
        scores = node
        guard = _nan_guard(graph, ctx, sm, only_reader, consumers)
        probs = (guard[-1] if guard else sm).outputs[0]
        ctx_mm = only_reader(probs)
        if (ctx_mm is None or ctx_mm.op_type != "MatMul" or ctx_mm.inputs[0] != probs
                or ctx_mm.attrs["transpose_in0"]):
            continue
        group = [scores, *chain, sm, *guard, ctx_mm]
        names = [scores.inputs[0], scores.inputs[1], ctx_mm.inputs[1],
                 *(n.outputs[0] for n in group if n.op_type != "ElementWiseIsNan")]
        if any(graph.tensors[t].dtype is not DType.FLOAT_32 for t in names):
            continue
        batch = {graph.tensors[t].shape[:-2] for t in names[:3]}
        if len(batch) != 1 or any(n.name in exclude for n in group):
            continue
        found.append(_with_head_split(graph, ctx, group, producers, only_reader, exclude))
    return found


def _nan_guard(graph: Graph, ctx: BuildContext, sm: Node, only_reader: Callable[[str], Node | None],
               consumers: dict[str, list[Node]]) -> list[Node]:
    """``[IsNaN, Where]`` where the Softmax's probabilities are read only by ``Where(IsNaN(p), 0, p)`` (PyTorch's
    exported scaled_dot_product_attention: a row whose scores are all -inf gives zeros, not NaN); else []."""
    readers = consumers.get(sm.outputs[0], [])
    if len(readers) != 2 or sm.outputs[0] in graph.outputs:
        return []
    isnan = next((n for n in readers if n.op_type == "ElementWiseIsNan"), None)
    where = next((n for n in readers if n.op_type == "ElementWiseSelect"), None)
    if isnan is None or where is None or only_reader(isnan.outputs[0]) is not where:
        return []
    cond, zero, p = where.inputs
    if cond != isnan.outputs[0] or p != sm.outputs[0] or not ctx.is_static(zero):
        return []
    z = ctx.static_np(zero)
    return [isnan, where] if z.size == 1 and float(z.reshape(-1)[0]) == 0.0 else []


_MOVES = ("Reshape", "Transpose")
_SCALE = "ElementWiseMultiply"  # by a static scalar, on Q's or K's way to the scores


def _scalar(ctx: BuildContext, node: Node) -> bool:
    """Whether ``node`` multiplies its first input by a static scalar (its second)."""
    return (node.op_type == _SCALE and len(node.inputs) == 2 and ctx.is_static(node.inputs[1])
            and math.prod(ctx.shape(node.inputs[1])) == 1 and not ctx.is_static(node.inputs[0]))


def _with_head_split(graph: Graph, ctx: BuildContext, group: list[Node], producers: dict[str, Node],
                     only_reader: Callable[[str], Node | None], exclude: Collection[str]) -> Attention:
    """``group`` with the Reshape / Transpose nodes (and Q's and K's scalar scales) that split its Q, K and V into
    heads and merge its output back, where only the attention reads what they make and each chain is a strided
    view of the projection's rows (a chain that is not stays apart)."""
    scores, context = group[0], group[-1]
    operands = (scores.inputs[0], scores.inputs[1], context.inputs[1])
    chains: list[list[Node]] = []
    for i, (x, reader) in enumerate(zip(operands, (scores, scores, context))):
        chain: list[Node] = []
        node: Node | None = producers.get(x)
        while (node is not None and (node.op_type in _MOVES or (i < 2 and _scalar(ctx, node)))
               and node.name not in exclude and only_reader(node.outputs[0]) is (chain[0] if chain else reader)
               and graph.tensors[node.inputs[0]].dtype is DType.FLOAT_32):
            chain.insert(0, node)
            node = producers.get(node.inputs[0])
        chains.append(chain)
    post: list[Node] = []
    after = only_reader(context.outputs[0])
    while after is not None and after.op_type in _MOVES and after.name not in exclude:
        post.append(after)
        after = only_reader(after.outputs[0])
    if len(set(operands)) < 3:
        return Attention(group)  # (one tensor read twice: its chain is not the attention's alone)
    # each chain joins where it is a strided view (a Reshape merging axes a Transpose has parted is not)
    ta, tb, tv = scores.attrs["transpose_in0"], scores.attrs["transpose_in1"], context.attrs["transpose_in1"]
    for i, tr in enumerate((ta, not tb, tv)):
        if chains[i] and _chain_view(ctx.shape(chains[i][0].inputs[0]), chains[i], tr) is None:
            chains[i] = []
    if post and _merge_view(ctx.shape(post[-1].outputs[0]), post, [ctx.shape(n.inputs[0]) for n in post]) is None:
        post = []
    heads = [chain[0].inputs[0] if chain else x for chain, x in zip(chains, operands)]
    if len(set(heads)) < 3:
        return Attention(group)
    return Attention([*chains[0], *chains[1], *chains[2], *group, *post],
                     (len(chains[0]), len(chains[1]), len(chains[2])), len(post))


def _broadcasts(shape: tuple[int, ...], to: tuple[int, ...]) -> bool:
    """Whether ``shape`` broadcasts to ``to`` (numpy's rules) without growing it."""
    if len(shape) > len(to):
        return False
    return all(a in (1, b) for a, b in zip(shape[::-1], to[::-1]))


@dataclass
class PointwiseDepthwise:
    """A 1x1 convolution, optionally a Relu / ReluMinMax, a depthwise convolution, optionally another clamp, and
    optionally the 1x1 convolution projecting the depthwise's output with the residual Add after it (``nodes``, in
    that order: an inverted residual block), each the sole reader of the one before, run as one step where the last
    one ran: the native kernel makes the expanded rows as the depthwise's windows reach them, and the projection
    reads the depthwise's rows while they are in cache. Without the native kernels (another device, float16), the
    convolutions run one after the other."""

    nodes: list[Node]

    @property
    def at(self) -> str:
        return self.nodes[-1].name

    @property
    def op_type(self) -> str:
        return "+".join(n.op_type for n in self.nodes)

    def parts(self) -> tuple[Node, tuple[float, float] | None, Node, tuple[float, float] | None, Node | None, str]:
        """The 1x1 convolution, its clamp, the depthwise convolution, its clamp, the projection (or None) and the
        residual the projection's Add reads ("" for none)."""
        pw, rest = self.nodes[0], self.nodes[1:]
        pw_clamp = _clamp_of(rest[0]) if rest[0].op_type != "DepthWiseConv2d" else None
        if pw_clamp is not None:
            rest = rest[1:]
        dw, rest = rest[0], rest[1:]
        clamp = _clamp_of(rest[0]) if rest else None
        if clamp is not None:
            rest = rest[1:]
        proj = rest[0] if rest else None
        residual = _other(rest[1], proj.outputs[0]) if proj is not None and len(rest) > 1 else ""
        return pw, pw_clamp, dw, clamp, proj, residual

    def build(self, ctx: BuildContext) -> Step:
        pw, pw_clamp, dw, clamp, proj, residual = self.parts()
        inputs = [pw.inputs[0]] + ([residual] if residual else [])
        if native_ok(ctx, pw.inputs[0]):
            n, h, w, cin = ctx.shape(pw.inputs[0])
            kh, kw, _, ce = ctx.shape(dw.inputs[1])
            (pt, _), (pl, _) = dw.attrs["pad_amount"]
            (sh, sw), oshape = dw.attrs["stride"], ctx.graph.tensors[dw.outputs[0]].shape
            bias = [node.inputs[2] if len(node.inputs) > 2 else "" for node in (pw, dw)]
            dw_w, dw_b = depthwise_operands(ctx, dw.inputs[1], bias[1])
            project = None
            if proj is not None:
                cout = ctx.shape(proj.inputs[1])[3]
                p_bias = proj.inputs[2] if len(proj.inputs) > 2 else ""
                project = native.Gemm.of_panels(gemm_panels(ctx, proj.inputs[1], p_bias, ce), ce, cout)
            fused = native.PointwiseDepthwise.of_panels(gemm_panels(ctx, pw.inputs[1], bias[0], cin), cin, pw_clamp,
                                                        dw_w, dw_b, (n, h, w, ce, kh, kw, sh, sw, 1, 1, pt, pl,
                                                                     oshape[1], oshape[2]), clamp, project)
            step = Step(fused.run, inputs, path="native")
        else:
            first = build_conv2d(pw, ctx, Epilogue(clamp=pw_clamp))
            second = build_conv2d(dw, ctx, Epilogue(clamp=clamp))
            if proj is None:
                step = Step(lambda x: second.fn(first.fn(x)), inputs, path=second.path)
            else:
                third = build_conv2d(proj, ctx, Epilogue(add=residual))
                step = Step(lambda x, *rest: third.fn(second.fn(first.fn(x)), *rest), inputs, path=third.path)
        step.outputs = list(self.nodes[-1].outputs)
        return step


def fuse_pointwise_depthwise(graph: Graph, exclude: Collection[str] = ()) -> list[PointwiseDepthwise]:
    """Every float32 ``Conv2d`` 1x1 (stride 1, unpadded, one group, static weights) [-> Relu / ReluMinMax] ->
    ``DepthWiseConv2d`` (one weight per channel, dilation 1, static weights) [-> clamp] [-> such a 1x1 ``Conv2d``
    (the projection; not one that feeds a depthwise convolution itself) [-> ``ElementWiseAdd`` of a float32 tensor
    of its shape]] chain whose intermediates only the chain reads (none a graph output), none of its nodes in
    ``exclude`` or in another chain."""
    sole_reader = _sole_reader(graph)
    ctx = BuildContext(graph)

    def static_operands(node: Node) -> bool:
        return all(ctx.is_static(x) for x in node.inputs[1:] if x)

    def pointwise(node: Node, x: str | None = None) -> bool:
        """A float32 1x1 convolution, stride 1, unpadded, one group, static weights (reading ``x``, if given)."""
        if (node.op_type != "Conv2d" or len(node.inputs) < 2 or not static_operands(node)
                or (x is not None and node.inputs[0] != x)):
            return False
        kh, kw = graph.tensors[node.inputs[1]].shape[:2]
        return ((kh, kw) == (1, 1) and tuple(node.attrs["stride"]) == (1, 1) and node.attrs["group"] == 1
                and not any(p for pad in node.attrs["pad_amount"] for p in pad)
                and graph.tensors[node.inputs[0]].dtype is DType.FLOAT_32)

    found: list[PointwiseDepthwise] = []
    taken: set[str] = set()
    for pw in graph.nodes:
        if pw.name in exclude or pw.name in taken or not pointwise(pw):
            continue
        ce = graph.tensors[pw.inputs[1]].shape[3]
        chain = [pw]
        nxt = sole_reader(pw.outputs[0])
        if nxt is not None and _clamp_of(nxt) is not None:
            chain.append(nxt)
            nxt = sole_reader(nxt.outputs[0])
        if (nxt is None or nxt.op_type != "DepthWiseConv2d" or nxt.inputs[0] != chain[-1].outputs[0]
                or not static_operands(nxt) or tuple(nxt.attrs["dilation"]) != (1, 1)
                or graph.tensors[nxt.inputs[1]].shape[2:] != (1, ce)):
            continue
        chain.append(nxt)
        last = sole_reader(nxt.outputs[0])
        if last is not None and _clamp_of(last) is not None:
            chain.append(last)
            last = sole_reader(last.outputs[0])
        # the projection [+ the residual Add]; not a 1x1 convolution that expands for a depthwise one itself
        after = sole_reader(last.outputs[0]) if last is not None else None
        if (last is not None and pointwise(last, chain[-1].outputs[0])
                and not (after is not None and after.op_type == "DepthWiseConv2d")):
            chain.append(last)
            y, add = last.outputs[0], sole_reader(last.outputs[0])
            if add is not None and add.op_type == "ElementWiseAdd" and len(add.inputs) == 2 and add.inputs.count(y) == 1:
                residual = graph.tensors[_other(add, y)]
                if residual.shape == graph.tensors[y].shape and residual.dtype is DType.FLOAT_32:
                    chain.append(add)
        if not any(n.name in exclude or n.name in taken for n in chain):
            found.append(PointwiseDepthwise(chain))
            taken.update(n.name for n in chain)
    return found
