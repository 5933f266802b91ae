"""Attention masks: the "minus infinity" of a mask becomes a finite value a fixed-point grid can hold."""

from __future__ import annotations

import logging

import numpy as np

from openqnn.ir.graph import Graph
from openqnn.passes.manager import graph_pass

log = logging.getLogger("openqnn.passes")

# What a masked score becomes. Softmax(x) over a row is unchanged in float32 when a masked entry goes
# from -inf (or torch.finfo(float32).min, or -1e9) to -MASK_VALUE: exp(-1e4 + max) underflows to 0 for any
# real score range. On a fixed-point grid it is what old BERT exports used ((1 - mask) * -10000), and it
# keeps the mask's encoding usable: a range of 1e4 puts the scores it is added to within the add's
# fixed-point multipliers, where -3.4e38 leaves them below the multiplier's resolution.
MASK_VALUE = 1e4

# ops a mask constant flows through on its way to a Softmax input: selects, mask arithmetic, data movement
_MASK_PATH = frozenset({
    "ElementWiseSelect", "ElementWiseAdd", "ElementWiseSubtract", "ElementWiseMultiply", "ElementWiseMinimum",
    "ElementWiseMaximum", "ElementWiseNeg", "Reshape", "Transpose", "Tile", "Concat", "StridedSlice", "Gather",
    "Cast", "Expand", "ElementWiseBroadcast",
})
_SOFTMAX = frozenset({"Softmax", "LogSoftmax"})


def _only_into_softmax(graph: Graph, name: str, consumers: dict) -> bool:
    """Whether ``name`` reaches a Softmax input and everything computed from it on the way does nothing
    else: no graph output and no consumer outside mask arithmetic (an Equal against finfo.min, a
    ReduceMin, ...) sees the values, so making them finite changes nothing but the Softmax's input."""
    seen: set[str] = set()
    stack = [name]
    reaches = False
    while stack:
        t = stack.pop()
        if t in seen:
            continue
        seen.add(t)
        if t in graph.outputs:
            return False
        for node in consumers.get(t, []):
            if node.op_type in _SOFTMAX and node.inputs[0] == t:
                reaches = True
            elif node.op_type in _MASK_PATH:
                stack.extend(o for o in node.outputs if o)
            else:
                return False
    return reaches


@graph_pass("finite_attention_masks")
def finite_attention_masks(graph: Graph) -> tuple[Graph, bool]:
    """Static float values beyond +-MASK_VALUE (+-inf, finfo.min, -1e9) that flow into a Softmax's input
    through mask arithmetic, and nowhere else, become +-MASK_VALUE.

    before: %bias = Select(%keep, 0.0, -inf);  %s = Add(%scores, %bias);  %p = Softmax(%s)
    after:  %bias = Select(%keep, 0.0, -10000.0);  ...
    (also (1 - mask) * finfo.min and masked_fill(mask, -inf) exports; NaN is left alone)
    """
    changed = False
    consumers = graph.consumers()
    for t in list(graph.static_tensors()):
        if t.data is None or not t.dtype.is_float or t.data.size == 0:
            continue
        data = np.asarray(t.data)
        big = np.abs(data) > MASK_VALUE  # False for NaN
        if not big.any() or not _only_into_softmax(graph, t.name, consumers):
            continue
        t.data = np.where(big, np.sign(data) * MASK_VALUE, data).astype(data.dtype)
        log.info("attention mask constant '%s': %d value(s) beyond +-%g (e.g. %g) set to +-%g", t.name,
                 int(big.sum()), MASK_VALUE, float(data[big].flat[0]), MASK_VALUE)
        changed = True
    return graph, changed
