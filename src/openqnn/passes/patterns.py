"""Pattern fusions: decomposed activations (as older exporters write them) back into one QNN op,
and cheap layout rewrites."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from openqnn.ir.graph import Graph, Node
from openqnn.ir.tensor import TensorKind
from openqnn.passes.manager import graph_pass


class _View:
    """Producer/consumer lookups over a graph that is being rewritten."""

    def __init__(self, graph: Graph):
        self.g = graph
        self.prod = graph.producers()
        self.cons = graph.consumers()

    def scalar(self, name: str) -> float | None:
        t = self.g.tensors.get(name)
        if t is None or t.kind is not TensorKind.STATIC or t.data is None or t.data.size != 1:
            return None
        return float(np.asarray(t.data).reshape(-1)[0])

    def only_user(self, name: str, op_type: str) -> Node | None:
        users = self.cons.get(name, [])
        if len(users) == 1 and users[0].op_type == op_type and name not in self.g.outputs:
            return users[0]
        return None

    def other_input(self, node: Node, name: str) -> str | None:
        if len(node.inputs) != 2 or name not in node.inputs:
            return None
        return node.inputs[1] if node.inputs[0] == name else node.inputs[0]


def _close(a: float | None, b: float, tol: float = 1e-4) -> bool:
    return a is not None and abs(a - b) <= tol * max(1.0, abs(b))


def _replace(graph: Graph, first: Node, dead: list[Node], op_type: str, x: str, out: str,
             attrs: dict | None = None) -> None:
    """Put one ``op_type(x) -> out`` node where the earliest matched node stood and drop the matched nodes
    (``first`` names the new node); everything the matched nodes fed comes after that place."""
    idx = min(graph.nodes.index(n) for n in [first, *dead])
    for n in dead:
        graph.nodes.remove(n)
    graph.add_node(Node(first.name, op_type, [x], [out], attrs or {}), min(idx, len(graph.nodes)))


def _rewrite_each(graph: Graph, rewrite: Callable[[Node, _View], bool]) -> tuple[Graph, bool]:
    """Offer every node (in the order before rewriting) to ``rewrite``, which returns whether it
    rewrote the graph there; lookups are rebuilt after each rewrite, dead tensors dropped at the end."""
    changed = False
    v = _View(graph)
    for node in list(graph.nodes):
        if rewrite(node, v):
            changed = True
            v = _View(graph)
    if changed:
        graph.remove_unused()
    return graph, changed


def _gelu_tail(v: _View, x: str, inner: str) -> tuple[list[Node], Node] | None:
    """``x * (1 + inner) * 0.5`` or ``(x * 0.5) * (1 + inner)`` after ``inner`` (erf / tanh output):
    (the nodes, the last one)."""
    add = v.only_user(inner, "ElementWiseAdd")
    if add is None or not _close(v.scalar(v.other_input(add, inner) or ""), 1.0):
        return None
    m1 = v.only_user(add.outputs[0], "ElementWiseMultiply")
    if m1 is None:
        return None
    other = v.other_input(m1, add.outputs[0])
    if other == x:  # x * (1 + inner) * 0.5
        m2 = v.only_user(m1.outputs[0], "ElementWiseMultiply")
        if m2 is None or not _close(v.scalar(v.other_input(m2, m1.outputs[0]) or ""), 0.5):
            return None
        return [add, m1, m2], m2
    half = v.prod.get(other or "")  # (x * 0.5) * (1 + inner)
    if half is None or half.op_type != "ElementWiseMultiply" or len(v.cons.get(half.outputs[0], [])) != 1:
        return None
    if v.other_input(half, x) is None or not _close(v.scalar(v.other_input(half, x) or ""), 0.5):
        return None
    return [add, m1, half], m1


def _single(v: _View, name: str, op_type: str) -> Node | None:
    """The producer of ``name`` when it is an ``op_type`` whose output has no other user."""
    node = v.prod.get(name)
    if node is None or node.op_type != op_type or len(v.cons.get(name, [])) != 1 or name in v.g.outputs:
        return None
    return node


def _cube_of(v: _View, name: str) -> tuple[str, list[Node]] | None:
    """``name`` = x^3 as Pow(x, 3), x * (x * x) or (x * x) * x: (x, the nodes)."""
    node = v.prod.get(name)
    if node is None or len(v.cons.get(name, [])) != 1:
        return None
    if node.op_type == "ElementWisePower" and _close(v.scalar(node.inputs[1]), 3.0):
        return node.inputs[0], [node]
    if node.op_type != "ElementWiseMultiply":
        return None
    for a, b in (node.inputs, node.inputs[::-1]):
        sq = _single(v, b, "ElementWiseMultiply")
        if sq is not None and sq.inputs == [a, a]:
            return a, [node, sq]
    return None


@graph_pass("fuse_gelu")
def fuse_gelu(graph: Graph) -> tuple[Graph, bool]:
    """GELU spelled out (erf form, and the tanh form of GPT-2's NewGELU / gelu_pytorch_tanh) becomes one Gelu.

    before: %a = ElementWiseDivide(%x, 1.4142); %b = ElementWiseErf(%a); %c = ElementWiseAdd(%b, 1)
            %d = ElementWiseMultiply(%x, %c);   %y = ElementWiseMultiply(%d, 0.5)
    after:  %y = Gelu(%x) {approximate="none"}

    before: %k = ElementWisePower(%x, 3) | x * x * x; %a = ElementWiseAdd(%x, ElementWiseMultiply(%k, 0.044715))
            %b = Tanh(ElementWiseMultiply(%a, 0.7978846)); then 0.5 * x * (1 + %b) as above
            (BLOOM: %b = Tanh((0.7978846 * x) * (1 + (0.044715 * x) * x)))
    after:  %y = Gelu(%x) {approximate="tanh"}
    """
    def erf_form(erf: Node, v: _View) -> bool:
        scale = v.prod.get(erf.inputs[0])
        if scale is None or len(v.cons.get(erf.inputs[0], [])) != 1:
            return False
        x: str | None = None
        if scale.op_type == "ElementWiseDivide" and _close(v.scalar(scale.inputs[1]), math.sqrt(2)):
            x = scale.inputs[0]
        elif scale.op_type == "ElementWiseMultiply":
            x = next((a for a, b in (scale.inputs, scale.inputs[::-1]) if _close(v.scalar(b), 1 / math.sqrt(2))), None)
        if x is None:
            return False
        tail = _gelu_tail(v, x, erf.outputs[0])
        if tail is None or graph.tensors[x].shape != graph.tensors[tail[1].outputs[0]].shape:
            return False
        _replace(graph, scale, [scale, erf, *tail[0]], "Gelu", x, tail[1].outputs[0], {"approximate": "none"})
        return True

    def _scaled(v: _View, name: str, c: float) -> str | None:
        """x when ``name`` = ElementWiseMultiply(x, c) (either order), its only use."""
        mul = _single(v, name, "ElementWiseMultiply")
        if mul is None:
            return None
        return next((a for a, b in (mul.inputs, mul.inputs[::-1]) if _close(v.scalar(b), c)), None)

    def bloom_form(tanh: Node, scale: Node, v: _View) -> bool:
        """BLOOM's: tanh((0.79788456 * x) * (1 + (0.044715 * x) * x))."""
        for a, b in (scale.inputs, scale.inputs[::-1]):
            x = _scaled(v, a, 0.79788456)
            one_plus = _single(v, b, "ElementWiseAdd")
            if x is None or one_plus is None:
                continue
            inner = v.other_input(one_plus, next((i for i in one_plus.inputs if _close(v.scalar(i), 1.0)), ""))
            quad = _single(v, inner or "", "ElementWiseMultiply")
            if quad is None or x not in quad.inputs:
                continue
            other = v.other_input(quad, x)
            if other is None or _scaled(v, other, 0.044715) != x:
                continue
            tail = _gelu_tail(v, x, tanh.outputs[0])
            if tail is None or graph.tensors[x].shape != graph.tensors[tail[1].outputs[0]].shape:
                return False
            dead = [v.prod[a], v.prod[other], quad, one_plus, scale, tanh, *tail[0]]
            _replace(graph, scale, dead, "Gelu", x, tail[1].outputs[0], {"approximate": "tanh"})
            return True
        return False

    def tanh_form(tanh: Node, v: _View) -> bool:
        scale = _single(v, tanh.inputs[0], "ElementWiseMultiply")
        if scale is None:
            return False
        a = next((a for a, b in (scale.inputs, scale.inputs[::-1]) if _close(v.scalar(b), math.sqrt(2 / math.pi))),
                 None)
        if a is None:
            return bloom_form(tanh, scale, v)
        add = _single(v, a or "", "ElementWiseAdd")
        if add is None:
            return False
        for x, k in (add.inputs, add.inputs[::-1]):
            mul = _single(v, k, "ElementWiseMultiply")
            if mul is None:
                continue
            cube_name = next((c for c, d in (mul.inputs, mul.inputs[::-1]) if _close(v.scalar(d), 0.044715)), None)
            cube = _cube_of(v, cube_name or "")
            if cube is None or cube[0] != x:
                continue
            tail = _gelu_tail(v, x, tanh.outputs[0])
            if tail is None or graph.tensors[x].shape != graph.tensors[tail[1].outputs[0]].shape:
                return False
            _replace(graph, cube[1][-1], [*cube[1], mul, add, scale, tanh, *tail[0]], "Gelu", x, tail[1].outputs[0],
                     {"approximate": "tanh"})
            return True
        return False

    def rewrite(node: Node, v: _View) -> bool:
        if node.op_type == "ElementWiseErf":
            return erf_form(node, v)
        if node.op_type == "Tanh":
            return tanh_form(node, v)
        return False

    return _rewrite_each(graph, rewrite)


@graph_pass("fuse_hardswish")
def fuse_hardswish(graph: Graph) -> tuple[Graph, bool]:
    """x * relu6(x + 3) / 6 and x * HardSigmoid(x; 1/6, 0.5) become one HardSwish.

    before: %a = ElementWiseAdd(%x, 3); %b = ReluMinMax(%a) {0, 6}; %c = ElementWiseMultiply(%x, %b)
            %y = ElementWiseDivide(%c, 6)
    after:  %y = HardSwish(%x)
    """
    def rewrite(node: Node, v: _View) -> bool:
        if node.op_type == "HardSigmoid" and _close(node.attrs["alpha"], 1 / 6) and _close(node.attrs["beta"], 0.5):
            x = node.inputs[0]
            mul = v.only_user(node.outputs[0], "ElementWiseMultiply")
            if mul is None or v.other_input(mul, node.outputs[0]) != x:
                return False
            _replace(graph, node, [node, mul], "HardSwish", x, mul.outputs[0])
            return True
        if node.op_type != "ReluMinMax" or node.attrs["min_value"] != 0.0 or node.attrs["max_value"] != 6.0:
            return False
        add = v.prod.get(node.inputs[0])
        if add is None or add.op_type != "ElementWiseAdd" or len(v.cons.get(add.outputs[0], [])) != 1:
            return False
        x3 = next((a for a, b in (add.inputs, add.inputs[::-1]) if _close(v.scalar(b), 3.0)), None)
        mul = v.only_user(node.outputs[0], "ElementWiseMultiply")
        if x3 is None or mul is None or v.other_input(mul, node.outputs[0]) != x3:
            return False
        div = v.only_user(mul.outputs[0], "ElementWiseDivide")
        last: Node | None = div if div is not None and _close(v.scalar(div.inputs[1]), 6.0) else None
        if last is None:
            last = v.only_user(mul.outputs[0], "ElementWiseMultiply")
            if last is None or not _close(v.scalar(v.other_input(last, mul.outputs[0]) or ""), 1 / 6):
                return False
        if graph.tensors[x3].shape != graph.tensors[last.outputs[0]].shape:
            return False
        _replace(graph, add, [add, node, mul, last], "HardSwish", x3, last.outputs[0])
        return True

    return _rewrite_each(graph, rewrite)


@graph_pass("fuse_rms_norm")
def fuse_rms_norm(graph: Graph) -> tuple[Graph, bool]:
    """RMSNorm as exporters spell it (Llama, Qwen, Mistral, Gemma, T5) becomes one RmsNorm (QNN's op).

    before: %p = ElementWisePower(%x, 2) | ElementWiseMultiply(%x, %x); %m = ReduceMean(%p) {axes=[-1], keep_dims}
            %e = ElementWiseAdd(%m, eps); %s = ElementWiseSquareRoot(%e)
            %n = ElementWiseMultiply(%x, ElementWiseDivide(1, %s) | ElementWiseReciprocal(%s)) | ElementWiseDivide(%x, %s)
            [%y = ElementWiseMultiply(%n, %gamma: STATIC [d])]
    after:  %y = RmsNorm(%x, %gamma) {axes=[-1], epsilon=eps}   (gamma all ones when the model has none)

    Quantized, the pieces need the reciprocal root as a tensor: a row of zeros (a padding token whose
    embedding is zero) makes it 1/sqrt(eps) and squeezes every other row onto a few levels.
    """
    def rewrite(sq: Node, v: _View) -> bool:
        if sq.op_type == "ElementWisePower" and _close(v.scalar(sq.inputs[1]), 2.0):
            x = sq.inputs[0]
        elif sq.op_type == "ElementWiseMultiply" and sq.inputs[0] == sq.inputs[1]:
            x = sq.inputs[0]
        else:
            return False
        shape = graph.tensors[x].shape
        if not shape or not graph.tensors[x].dtype.is_float:
            return False
        d = shape[-1]
        mean = v.only_user(sq.outputs[0], "ReduceMean")
        if mean is None or not mean.attrs.get("keep_dims") or [int(a) % len(shape) for a in mean.attrs["axes"]] != [
                len(shape) - 1]:
            return False
        add = v.only_user(mean.outputs[0], "ElementWiseAdd")
        eps = v.scalar(v.other_input(add, mean.outputs[0]) or "") if add is not None else None
        if add is None or eps is None or eps < 0:
            return False
        root = v.only_user(add.outputs[0], "ElementWiseSquareRoot")
        if root is None:
            return False
        users = v.cons.get(root.outputs[0], [])
        if len(users) != 1 or root.outputs[0] in graph.outputs:
            return False
        inv, dead = users[0], [sq, mean, add, root]
        if inv.op_type == "ElementWiseDivide" and inv.inputs == [x, root.outputs[0]]:
            norm = inv
        else:
            one = inv.op_type == "ElementWiseDivide" and inv.inputs[1] == root.outputs[0] and _close(
                v.scalar(inv.inputs[0]), 1.0, 1e-7)
            if not (one or inv.op_type == "ElementWiseReciprocal"):
                return False
            found = v.only_user(inv.outputs[0], "ElementWiseMultiply")
            if found is None or v.other_input(found, inv.outputs[0]) != x:
                return False
            norm, dead = found, [*dead, inv]
        dead.append(norm)
        out, gamma = norm.outputs[0], None
        scale = v.only_user(out, "ElementWiseMultiply")
        if scale is not None:
            gt = graph.tensors.get(v.other_input(scale, out) or "")
            if (gt is not None and gt.kind is TensorKind.STATIC and gt.data is not None and gt.data.size == d
                    and gt.shape[-1:] == (d,) and gt.rank <= len(shape)):
                gamma, out = np.asarray(gt.data).reshape(d), scale.outputs[0]
                dead.append(scale)
        if graph.tensors[out].shape != shape:
            return False
        g = graph.add_constant(f"{sq.name}_gamma", gamma if gamma is not None else np.ones(d, graph.tensors[x].dtype.numpy))
        idx = graph.nodes.index(sq)
        for n in dead:
            graph.nodes.remove(n)
        graph.add_node(Node(sq.name, "RmsNorm", [x, g.name], [out], {"axes": (len(shape) - 1,), "epsilon": eps}),
                       min(idx, len(graph.nodes)))
        return True

    return _rewrite_each(graph, rewrite)


@graph_pass("fuse_layer_norm")
def fuse_layer_norm(graph: Graph) -> tuple[Graph, bool]:
    """LayerNorm spelled out (opsets before 17 have no LayerNormalization: BERT-style exports at opset 14)
    becomes one LayerNorm; fuse_rms_norm has already folded its second half.

    before: %m = ReduceMean(%x) {axes=[-1], keep_dims}; %d = ElementWiseSubtract(%x, %m)
            %n = RmsNorm(%d, %gamma) {axes=[-1], epsilon}; [%y = ElementWiseAdd(%n, %beta: STATIC [d])]
    after:  %y = LayerNorm(%x, %gamma, %beta) {axes=[-1], epsilon}
    """
    def rewrite(rms: Node, v: _View) -> bool:
        if rms.op_type != "RmsNorm" or (len(rms.inputs) > 2 and rms.inputs[2]):
            return False
        sub = _single(v, rms.inputs[0], "ElementWiseSubtract")
        if sub is None:
            return False
        x, m = sub.inputs
        mean = _single(v, m, "ReduceMean")
        shape = graph.tensors[x].shape
        if mean is None or mean.inputs[0] != x or not mean.attrs.get("keep_dims") or not shape:
            return False
        axes = sorted(int(a) % len(shape) for a in rms.attrs["axes"])
        if sorted(int(a) % len(shape) for a in mean.attrs["axes"]) != axes or graph.tensors[rms.outputs[0]].shape != shape:
            return False
        dead, out, ins = [mean, sub, rms], rms.outputs[0], [x, rms.inputs[1] if len(rms.inputs) > 1 else ""]
        add = v.only_user(out, "ElementWiseAdd")
        norm_shape = tuple(shape[a] for a in axes)
        if add is not None:
            bt = graph.tensors.get(v.other_input(add, out) or "")
            if (bt is not None and bt.kind is TensorKind.STATIC and bt.data is not None
                    and bt.data.size == int(np.prod(norm_shape)) and graph.tensors[add.outputs[0]].shape == shape
                    and tuple(bt.shape[-len(norm_shape):]) == norm_shape and axes == list(range(len(shape) - len(axes), len(shape)))):
                ins.append(graph.add_constant(f"{rms.name}_beta", np.asarray(bt.data).reshape(norm_shape)).name)
                dead.append(add)
                out = add.outputs[0]
        idx = min(graph.nodes.index(n) for n in dead)
        for n in dead:
            graph.nodes.remove(n)
        graph.add_node(Node(rms.name, "LayerNorm", ins, [out], {"axes": tuple(axes), "epsilon": rms.attrs["epsilon"]}),
                       min(idx, len(graph.nodes)))
        return True

    return _rewrite_each(graph, rewrite)


@graph_pass("fold_fc_bias_add")
def fold_fc_bias_add(graph: Graph) -> tuple[Graph, bool]:
    """A constant vector added after a bias-less FullyConnected becomes its bias (MatMul + Add).

    before: %m = FullyConnected(%x, %w) {keep_dims}; %y = ElementWiseAdd(%m, %b: STATIC [units])
    after:  %y = FullyConnected(%x, %w, %b) {keep_dims}
    """
    def rewrite(fc: Node, v: _View) -> bool:
        if fc.op_type != "FullyConnected" or (len(fc.inputs) > 2 and fc.inputs[2]):
            return False
        add = v.only_user(fc.outputs[0], "ElementWiseAdd")
        if add is None:
            return False
        b = v.other_input(add, fc.outputs[0])
        units = graph.tensors[fc.inputs[1]].shape[0]
        bt = graph.tensors.get(b or "")
        if bt is None or bt.kind is not TensorKind.STATIC or bt.data is None or bt.data.size != units:
            return False
        if bt.shape[-1:] != (units,) or graph.tensors[add.outputs[0]].shape != graph.tensors[fc.outputs[0]].shape:
            return False
        bias = graph.add_constant(b or "bias", bt.data.reshape(units)).name if bt.rank != 1 else bt.name
        fc.inputs = [fc.inputs[0], fc.inputs[1], bias]
        out = add.outputs[0]
        graph.nodes.remove(add)
        del graph.tensors[fc.outputs[0]]
        fc.outputs = [out]
        return True

    return _rewrite_each(graph, rewrite)


@graph_pass("transpose_to_reshape")
def transpose_to_reshape(graph: Graph) -> tuple[Graph, bool]:
    """A Transpose that only moves size-1 dims is a Reshape (no data moves).

    before: %y = Transpose(%x: (1, 1, 1, 64)) {perm=[0, 3, 1, 2]} : (1, 64, 1, 1)
    after:  %y = Reshape(%x) {shape=[1, 64, 1, 1]}
    """
    changed = False
    for i, node in enumerate(graph.nodes):
        if node.op_type != "Transpose":
            continue
        shape = graph.tensors[node.inputs[0]].shape
        moved = [p for p in node.attrs["perm"] if shape[p] != 1]
        if moved == sorted(moved):
            out_shape = graph.tensors[node.outputs[0]].shape
            graph.nodes[i] = Node(node.name, "Reshape", node.inputs, node.outputs, {"shape": out_shape})
            changed = True
    return graph, changed
