"""Fusion passes: BatchNorm folded into the convolution or FullyConnected before it."""

from __future__ import annotations

import numpy as np

from openqnn.ir.graph import Graph
from openqnn.ir.tensor import TensorKind
from openqnn.passes.cleanup import bypass
from openqnn.passes.manager import graph_pass

# op type -> axis of the filter that indexes output channels
_CHANNEL_AXIS = {"Conv2d": 3, "DepthWiseConv2d": 3, "TransposeConv2d": 3, "FullyConnected": 0}


@graph_pass("fold_batchnorm")
def fold_batchnorm(graph: Graph) -> tuple[Graph, bool]:
    """Batchnorm after a convolution (static filter, no other reader) folds into its filter and bias.

    before: %c = Conv2d(%x, %w, %b);  %y = Batchnorm(%c, %scale, %shift)
    after:  %y = Conv2d(%x, %w * scale, %b * scale + shift)
    """
    changed = False
    producers, consumers = graph.producers(), graph.consumers()
    for bn in list(graph.nodes):
        if bn.op_type != "Batchnorm":
            continue
        prev = producers.get(bn.inputs[0])
        if prev is None or prev.op_type not in _CHANNEL_AXIS or len(consumers.get(bn.inputs[0], [])) != 1:
            continue
        if bn.inputs[0] in graph.outputs:
            continue
        w_t, scale_t, shift_t = graph.tensors[prev.inputs[1]], graph.tensors[bn.inputs[1]], graph.tensors[bn.inputs[2]]
        if not all(t.kind is TensorKind.STATIC for t in (w_t, scale_t, shift_t)):
            continue
        if prev.op_type == "TransposeConv2d" and prev.attrs.get("group", 1) != 1:
            continue
        assert w_t.data is not None and scale_t.data is not None and shift_t.data is not None
        axis = _CHANNEL_AXIS[prev.op_type]
        cout = w_t.shape[axis]
        scale = np.broadcast_to(scale_t.data.astype(np.float64).reshape(-1), (cout,))
        shift = np.broadcast_to(shift_t.data.astype(np.float64).reshape(-1), (cout,))
        bshape = [1] * w_t.rank
        bshape[axis] = cout
        w_new = (w_t.data.astype(np.float64) * scale.reshape(bshape)).astype(w_t.dtype.numpy)
        b_old = graph.tensors[prev.inputs[2]].data if len(prev.inputs) > 2 and prev.inputs[2] else None
        b_new = ((np.zeros(cout) if b_old is None else b_old.astype(np.float64)) * scale + shift).astype(w_t.dtype.numpy)
        w_name = _set_static(graph, consumers, prev.inputs[1], w_new)
        has_bias = len(prev.inputs) > 2 and bool(prev.inputs[2])
        b_name = _set_static(graph, consumers, prev.inputs[2], b_new) if has_bias else graph.add_constant(
            f"{prev.name}_bias", b_new).name
        prev.inputs = [prev.inputs[0], w_name, b_name]
        # the convolution now produces what the Batchnorm produced
        if bypass(graph, bn, bn.inputs[0]):
            changed = True
        else:  # the Batchnorm output is a graph output: the convolution takes over its name
            out = bn.outputs[0]
            graph.nodes.remove(bn)
            old = prev.outputs[0]
            del graph.tensors[out]
            t = graph.tensors.pop(old)
            t.name = out
            graph.tensors[out] = t
            prev.outputs = [out]
            changed = True
    if changed:
        graph.remove_unused()
    return graph, changed


def _set_static(graph: Graph, consumers: dict, name: str, data: np.ndarray) -> str:
    """Give static tensor ``name`` new data: in place when only one node reads it (the name, which
    encodings files refer to, is kept), else as a new tensor."""
    if len(consumers.get(name, [])) == 1:
        t = graph.tensors[name]
        t.data, t.shape = data, tuple(data.shape)
        return name
    return graph.add_constant(name, data).name
