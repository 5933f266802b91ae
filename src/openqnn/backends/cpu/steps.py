"""The cpu backend's prepared steps as data (:class:`~openqnn.backends.plan.StepPlan`), which a context binary holds.

cpu prepare decides which IR nodes run as one step -- an epilogue fusion (:class:`Fusion`), a shared GEMM
(:class:`SharedGemm`), an attention (:class:`Attention`) or one node alone -- and, for a quantized graph, that every encoded activation is
quantize-dequantized (so no step fuses anything). :func:`plan_steps` records those decisions; :func:`bind_step`
turns one back into a kernel call without analysing the graph again::

    kernel   cpu.node | cpu.fused | cpu.shared_gemm | cpu.attention | cpu.pw_dw   (a binder in BINDERS)
    attrs    {"graph": {"tensors": [...], "nodes": [...]},  the step's nodes and every tensor they touch, in
              "epilogue": {"add": "r", "clamp": [0, inf]}}  the _net.json's form (+ "name"); cpu.fused: epilogue
    arrays   {tensor name: data} of the static inputs       (raw; encoded ones are fake-quantized on bind)
             and the prepared operands attrs["prepared"]    (the native kernels' packed weights: binding takes
             names, which replace the tensors they hold       them as they are; see kernels/prepared.py)

A binder reads that fragment of the graph back and calls the kernel builders, so a step read from a file
runs the very code a freshly prepared one does (:class:`~openqnn.backends.cpu.plan.Plan` binds both).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from openqnn.backends.cpu.fusion import (
    Attention,
    Fusion,
    PointwiseDepthwise,
    SharedGemm,
    fuse_attention,
    fuse_epilogues,
    fuse_pointwise_depthwise,
    share_gemms,
)
from openqnn.backends.cpu.kernels import KERNELS, BuildContext, Step, Unsupported
from openqnn.backends.cpu.kernels.conv import Epilogue
from openqnn.backends.plan import StepPlan
from openqnn.errors import ContextError, InvalidModelError, UnsupportedOpError
from openqnn.ir.graph import Graph, Node
from openqnn.ir.tensor import TensorKind
from openqnn.serialization.netjson import (
    from_json_safe,
    node_to_json,
    nodes_from_json,
    tensor_to_json,
    to_json_safe,
)

__all__ = ["BINDERS", "bind_step", "binder", "build_step", "check_round_trip", "plan_node", "plan_steps", "read_step",
           "simulates_quantization", "step_nodes", "with_prepared"]

_REMEDY = "prepare the context again with qnn-context-binary-generator (this openqnn writes cpu steps it can read)"

StepBinder = Callable[[list[Node], Mapping[str, Any], BuildContext], Step]
BINDERS: dict[str, StepBinder] = {}


def binder(kernel: str) -> Callable[[StepBinder], StepBinder]:
    """Register the decorated function as the binder of cpu step plans named ``kernel``."""

    def register(fn: StepBinder) -> StepBinder:
        if kernel in BINDERS:
            raise RuntimeError(f"cpu step binder {kernel} registered twice")
        BINDERS[kernel] = fn
        return fn

    return register


def build_step(node: Node, ctx: BuildContext) -> Step:
    """The prepared step of ``node``; raises Unsupported with the reason when no kernel fits."""
    builder = KERNELS.get(node.op_type)
    if builder is None:
        raise Unsupported(f"no kernel for {node.op_type}")
    step = builder(node, ctx)
    step.outputs = list(node.outputs)
    step.node, step.op_type = node.name, node.op_type
    return step


@binder("cpu.node")
def _bind_node(nodes: list[Node], doc: Mapping[str, Any], ctx: BuildContext) -> Step:
    if len(nodes) != 1:
        raise ContextError(f"a cpu.node step holds {len(nodes)} nodes, not one; {_REMEDY}")
    return build_step(nodes[0], ctx)


@binder("cpu.fused")
def _bind_fused(nodes: list[Node], doc: Mapping[str, Any], ctx: BuildContext) -> Step:
    epi = doc.get("epilogue")
    clamp = epi.get("clamp") if isinstance(epi, dict) else None
    if (len(nodes) < 2 or not isinstance(epi, dict) or not isinstance(epi.get("add"), str)
            or not (clamp is None or (isinstance(clamp, list) and len(clamp) == 2))):
        raise ContextError(f"a cpu.fused step needs a head, absorbed nodes and an epilogue {{add, clamp}}; {_REMEDY}")
    bounds = None if clamp is None else (float(clamp[0]), float(clamp[1]))
    act = epi.get("act", "")
    if act not in ("", "gelu", "gelu_tanh"):
        raise ContextError(f"a cpu.fused step's activation is '', 'gelu' or 'gelu_tanh', not {act!r}; {_REMEDY}")
    return Fusion(nodes[0], nodes[1:], Epilogue(epi["add"], bounds, act)).build(ctx)


@binder("cpu.shared_gemm")
def _bind_shared_gemm(nodes: list[Node], doc: Mapping[str, Any], ctx: BuildContext) -> Step:
    if len(nodes) < 2 or any(n.op_type != "FullyConnected" for n in nodes):
        raise ContextError(f"a cpu.shared_gemm step holds two or more FullyConnected nodes; {_REMEDY}")
    return SharedGemm(nodes).build(ctx)


@binder("cpu.attention")
def _bind_attention(nodes: list[Node], doc: Mapping[str, Any], ctx: BuildContext) -> Step:
    split = doc.get("heads", {"pre": [0, 0, 0], "post": 0})  # (plans written before the head split was fused)
    pre: Any = split.get("pre") if isinstance(split, dict) else None
    post: Any = split.get("post") if isinstance(split, dict) else None
    moves = ("Reshape", "Transpose")
    ok = (isinstance(pre, list) and len(pre) == 3 and isinstance(post, int)
          and all(isinstance(n, int) and n >= 0 for n in [*pre, post]) and sum(pre) + post + 3 <= len(nodes))
    ops = [n.op_type for n in nodes]
    core = ops[sum(pre):len(ops) - post] if ok else []
    guard = ["ElementWiseIsNan", "ElementWiseSelect"] if core[-3:-1] == ["ElementWiseIsNan", "ElementWiseSelect"] else []
    tail = ["Softmax", *guard, "MatMul"]
    if (not ok or len(core) < len(tail) + 1 or core[0] != "MatMul" or core[-len(tail):] != tail
            or any(o not in ("ElementWiseDivide", "ElementWiseMultiply", "ElementWiseAdd") for o in core[1:-len(tail)])
            or any(o not in (*moves, "ElementWiseMultiply") for o in ops[:pre[0] + pre[1]])
            or any(o not in moves for o in ops[pre[0] + pre[1]:sum(pre)] + ops[len(ops) - post:])):
        raise ContextError("a cpu.attention step holds [Reshape / Transpose / scale...], MatMul, [scale], [mask add], "
                           f"Softmax, [IsNaN, Where], MatMul, [Reshape / Transpose...]; {_REMEDY}")
    return Attention(nodes, (pre[0], pre[1], pre[2]), post).build(ctx)


@binder("cpu.pw_dw")
def _bind_pointwise_depthwise(nodes: list[Node], doc: Mapping[str, Any], ctx: BuildContext) -> Step:
    ops = [n.op_type for n in nodes]
    clamps = ("Relu", "ReluMinMax")
    at = ops.index("DepthWiseConv2d") if "DepthWiseConv2d" in ops else -1
    head, tail = ops[1:at], ops[at + 1:]
    if tail and tail[0] in clamps:
        tail = tail[1:]
    if (at < 1 or ops[0] != "Conv2d" or ops.count("DepthWiseConv2d") != 1 or len(head) > 1
            or any(o not in clamps for o in head) or tail not in ([], ["Conv2d"], ["Conv2d", "ElementWiseAdd"])):
        raise ContextError(f"a cpu.pw_dw step holds Conv2d, [clamp], DepthWiseConv2d, [clamp], [Conv2d, "
                           f"[ElementWiseAdd]]; {_REMEDY}")
    return PointwiseDepthwise(nodes).build(ctx)


def simulates_quantization(graph: Graph) -> bool:
    """Whether ``graph`` runs as a quantization simulation: some float activation carries an encoding."""
    return any(t.encoding is not None and t.dtype.is_float and t.kind is not TensorKind.STATIC
               for t in graph.tensors.values())


def plan_steps(graph: Graph, fuse: bool = True) -> list[StepPlan]:
    """``graph``'s cpu steps in execution order, as data: the fusions chosen and each step's nodes.

    A fused step runs where its last node ran (every input exists by then), a shared GEMM where its
    first node ran. Anything that is not data fails here, naming the node.
    """
    groups: list[Fusion | SharedGemm | Attention | PointwiseDepthwise] = []
    # a quantized graph runs as a simulation: every encoded activation is quantize-dequantized,
    # so no step may hide an intermediate inside a fused kernel
    if fuse and not simulates_quantization(graph):
        groups += fuse_attention(graph)
        groups += fuse_pointwise_depthwise(graph, {n.name for g in groups for n in g.nodes})
        groups += fuse_epilogues(graph, {n.name for g in groups for n in g.nodes})
        groups += share_gemms(graph, BuildContext(graph), {n.name for g in groups for n in g.nodes})
    grouped = {n.name for g in groups for n in g.nodes}
    at = {g.at: g for g in groups}
    plans = []
    for node in graph.nodes:
        group = at.get(node.name)
        if group is None and node.name in grouped:
            continue  # runs inside a fused step
        if group is None:
            plans.append(_step_plan(graph, "cpu.node", node.name, node.op_type, [node], node.outputs))
        elif isinstance(group, Fusion):
            epilogue = {"add": group.epilogue.add, "clamp": None if group.epilogue.clamp is None
                        else list(group.epilogue.clamp), "act": group.epilogue.act}
            plans.append(_step_plan(graph, "cpu.fused", group.head.name, group.op_type, group.nodes,
                                    group.absorbed[-1].outputs, {"epilogue": epilogue}))
        elif isinstance(group, Attention):
            plans.append(_step_plan(graph, "cpu.attention", group.nodes[0].name, group.op_type, group.nodes,
                                    group.nodes[-1].outputs, {"heads": {"pre": list(group.pre), "post": group.post}}))
        elif isinstance(group, PointwiseDepthwise):
            plans.append(_step_plan(graph, "cpu.pw_dw", group.nodes[0].name, group.op_type, group.nodes,
                                    group.nodes[-1].outputs))
        else:
            plans.append(_step_plan(graph, "cpu.shared_gemm", group.nodes[0].name, group.op_type, group.nodes,
                                    [n.outputs[0] for n in group.nodes]))
    return plans


def plan_node(graph: Graph, node: Node) -> StepPlan:
    """One node of ``graph`` as a cpu step plan on its own (``cpu.node``: another backend's fallback)."""
    return _step_plan(graph, "cpu.node", node.name, node.op_type, [node], node.outputs)


def _step_plan(graph: Graph, kernel: str, name: str, op_type: str, nodes: Sequence[Node], outputs: Sequence[str],
               extra: Mapping[str, Any] | None = None) -> StepPlan:
    touched = list(dict.fromkeys(x for n in nodes for x in (*n.inputs, *n.outputs) if x))
    made = {o for n in nodes for o in n.outputs}
    tensors = [graph.tensors[x] for x in touched]
    # lists of named entries: a name may hold any character ('/' too), so names are no keys
    node_docs = [{"name": n.name, **node_to_json(n, exact=True)} for n in nodes]
    doc = {"graph": {"tensors": [{"name": t.name, **tensor_to_json(t, i)} for i, t in enumerate(tensors)],
                     "nodes": node_docs, "nonfinite": False},
           **to_json_safe(dict(extra or {}))}  # an epilogue's bounds may be infinite
    arrays = {t.name: t.data for t in tensors if t.kind is TensorKind.STATIC and t.data is not None}
    runtime = tuple(t.name for t in tensors if t.name not in made and t.kind is not TensorKind.STATIC)
    try:
        return StepPlan(kernel, name, op_type, runtime, tuple(outputs), doc, arrays)
    except (TypeError, ValueError):  # an attribute is infinite or NaN (or a numpy scalar): tag it, try again
        doc["graph"]["nodes"] = to_json_safe(node_docs)
        doc["graph"]["nonfinite"] = True  # (read back through from_json_safe; untagged nodes are read as they are)
    try:
        return StepPlan(kernel, name, op_type, runtime, tuple(outputs), doc, arrays)
    except (TypeError, ValueError) as e:
        raise UnsupportedOpError(f"node '{name}' ({op_type}): its cpu step is not JSON data ({e}); "
                                 "it cannot go in a context binary") from None


def step_nodes(plan: StepPlan) -> list[str]:
    """The names of the nodes a step plan runs, in order."""
    graph = plan.attrs.get("graph")
    nodes = graph.get("nodes") if isinstance(graph, dict) else None
    if not isinstance(nodes, list) or not all(isinstance(n, dict) and isinstance(n.get("name"), str) for n in nodes):
        raise ContextError(f"step '{plan.node}' holds no list of named nodes; {_REMEDY}")
    return [n["name"] for n in nodes]


def read_step(plan: StepPlan, device: torch.device | str = "cpu", float_dtype: torch.dtype | None = None
              ) -> tuple[list[Node], BuildContext]:
    """A step plan's nodes and a build context over its fragment of the graph (the tensors they touch, static
    data from the plan's arrays) holding the step's prepared operands, read back from the plan as a context holds
    it; checked as a _net.json is."""
    graph = plan.attrs.get("graph")
    if isinstance(graph, dict) and "nodes" in graph and graph.get("nonfinite", True) is not False:
        graph = {**graph, "nodes": from_json_safe(graph["nodes"])}  # (plans written before the tag: always)
    arrays, stored, sources = _prepared(plan)
    stand_ins = {}
    tensors = graph.get("tensors") if isinstance(graph, dict) and sources else None
    declared = {t.get("name"): t for t in tensors if isinstance(t, dict)} if isinstance(tensors, list) else {}
    for name in sources:  # held only as a prepared operand: read back where asked for (BuildContext.static_np)
        dims = declared[name].get("dims") if name in declared else None
        if not isinstance(dims, list) or not all(isinstance(d, int) and d >= 0 for d in dims):
            raise ContextError(f"step '{plan.node}': prepared operand source '{name}' is none of its tensors; {_REMEDY}")
        stand_ins[name] = np.broadcast_to(np.zeros((), np.float32), dims)  # (its type and shape: no data)
    fragment = nodes_from_json(graph, {**arrays, **stand_ins} if stand_ins else arrays, f"cpu step '{plan.node}'",
                               _REMEDY)
    return list(fragment.nodes), BuildContext(fragment, device, float_dtype, stored, sources)


def _prepared(plan: StepPlan) -> tuple[Mapping[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
    """A step plan's static tensors' arrays, its prepared operands and the sources read back from them (the
    module docstring of :mod:`openqnn.backends.cpu.kernels.prepared`)."""
    doc = plan.attrs.get("prepared")
    if doc is None:
        return plan.arrays, {}, {}
    names = doc.get("arrays") if isinstance(doc, dict) else None
    sources = doc.get("sources", {}) if isinstance(doc, dict) else None
    if (not isinstance(names, list) or not all(isinstance(n, str) and n in plan.arrays for n in names)
            or not isinstance(sources, dict)
            or not all(isinstance(s, dict) and s.get("of") in names for s in sources.values())):
        raise ContextError(f"step '{plan.node}': its prepared operands are not its arrays' names with the sources "
                           f"read back from them; {_REMEDY}")
    return ({k: v for k, v in plan.arrays.items() if k not in names}, {n: plan.arrays[n] for n in names},
            dict(sources))


def with_prepared(plan: StepPlan, made: Mapping[str, np.ndarray], sources: Mapping[str, Any]) -> StepPlan:
    """``plan`` holding the operands its binding laid out (:meth:`BuildContext.prepared`), so that binding it again
    (a context binary) takes them as they are; the static tensors they hold exactly (``sources``) it then keeps
    only in them. An operand named as one of its tensors is left out (laid out again on binding)."""
    made = {k: v for k, v in made.items() if k not in plan.arrays}
    if not made:
        return plan
    sources = {t: s for t, s in sources.items() if s["of"] in made}
    arrays = {k: v for k, v in plan.arrays.items() if k not in sources}
    return replace(plan, attrs={**plan.attrs, "prepared": {"arrays": sorted(made), "sources": dict(sources)}},
                   arrays={**arrays, **made})


def bind_step(plan: StepPlan, nodes: list[Node], ctx: BuildContext) -> Step:
    """The kernel call of one cpu step plan over its ``nodes`` (from :func:`read_step`, or the very nodes of the
    graph it was just planned from, with ``ctx`` over that graph). Raises Unsupported where a builder refuses."""
    bind = BINDERS.get(plan.kernel)
    if bind is None:
        raise ContextError(f"step '{plan.node}': '{plan.kernel}' is not a cpu step kernel (known: "
                           f"{', '.join(BINDERS)}); {_REMEDY}")
    step = bind(nodes, {k: from_json_safe(v) for k, v in plan.attrs.items() if k != "graph"}, ctx)
    step.node, step.op_type = plan.node, plan.op_type
    return step


def check_round_trip(graph: Graph, plans: Sequence[StepPlan]) -> None:
    """Each step plan, read back as a context holds it, gives the very nodes (op type, inputs, outputs,
    attributes) and tensor declarations (shape, data type, kind, encoding, layouts) it was made from
    ``graph``: anything JSON cannot carry fails here, at plan time, naming the node or tensor."""
    nodes = {n.name: n for n in graph.nodes}
    for plan in plans:
        try:
            read, ctx = read_step(plan)
        except InvalidModelError as e:
            raise UnsupportedOpError(f"step '{plan.node}' ({plan.op_type}) does not read back from JSON: {e}") from None
        for n in read:
            src = nodes[n.name]
            for key in dict.fromkeys([*src.attrs, *n.attrs]):
                if not _same(src.attrs.get(key), n.attrs.get(key)):
                    raise UnsupportedOpError(
                        f"node '{n.name}' ({n.op_type}): attribute {key}={src.attrs.get(key)!r} reads back from JSON "
                        f"as {n.attrs.get(key)!r}; it cannot go in a context binary")
            if (n.op_type, n.inputs, n.outputs) != (src.op_type, src.inputs, src.outputs):
                raise UnsupportedOpError(f"node '{n.name}' ({n.op_type}) does not read back from JSON as it is")
        for t in ctx.graph.tensors.values():
            s = graph.tensors[t.name]
            fields = ("shape", "dtype", "kind", "encoding", "src_axis_format", "axis_format")
            bad = [f for f in fields if not _same(getattr(s, f), getattr(t, f))]
            if bad:
                raise UnsupportedOpError(f"tensor '{t.name}': its {bad[0]} {getattr(s, bad[0])!r} reads back from "
                                         f"JSON as {getattr(t, bad[0])!r}; it cannot go in a context binary")


def _same(a: Any, b: Any) -> bool:
    """Equal values (NaN equal to NaN, a tuple to a list of the same items)."""
    try:
        return bool(to_json_safe(a) == to_json_safe(b))
    except (TypeError, ValueError):  # e.g. a numpy array left in an attribute
        return False
