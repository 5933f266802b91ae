"""The model QNN is given: openqnn's QDQ export of a quantized graph, with quantized inputs and outputs.

:func:`~openqnn.quantization.qdq.export.graph_to_onnx` keeps a graph's inputs and outputs float: each input
meets a QuantizeLinear, each output leaves a DequantizeLinear. Given that, QNN would quantize inputs and
dequantize outputs itself (on the HTP, with its own rounding) and its context binaries would take floats.
QNN's own flow exchanges quantized integers with the application, as openqnn's htp backend does, so here
those edge nodes are taken off::

    input (float) -> QuantizeLinear -> q -> DequantizeLinear ...     input (uint8) -> DequantizeLinear ...
    ... QuantizeLinear -> q -> DequantizeLinear -> output (float)    ... QuantizeLinear -> output (uint8)

and QNN's graph inputs and outputs become fixed-point tensors with the graph's encodings. An input or output
where that does not apply (no encoding, a per-axis or restricted one, an input that is also an output) keeps
its float form and its QuantizeLinear / DequantizeLinear.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from openqnn.ir.graph import Graph
from openqnn.ir.tensor import Encoding

__all__ = ["IoCodes", "qnn_model"]


@dataclass(frozen=True)
class IoCodes:
    """A graph input or output QNN exchanges as quantized integers (``dtype``: their numpy type)."""

    name: str
    encoding: Encoding
    dtype: np.dtype


def _plain(enc: Encoding | None) -> bool:
    """A per-tensor 8/16-bit encoding on its full range: one QuantizeLinear / DequantizeLinear pair in the export."""
    return (enc is not None and enc.axis is None and enc.bitwidth in (8, 16) and enc.qmin is None
            and not enc.per_block)


def _elem(model: onnx.ModelProto, zero_point: str) -> int | None:
    init = next((t for t in model.graph.initializer if t.name == zero_point), None)
    return None if init is None else int(init.data_type)


def _rename_uses(model: onnx.ModelProto, old: str, new: str) -> None:
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new


def qnn_model(graph: Graph) -> tuple[onnx.ModelProto, dict[str, IoCodes]]:
    """The QDQ ONNX model of quantized ``graph`` for QNN, and the inputs and outputs it exchanges as codes."""
    from openqnn.quantization.qdq.export import graph_to_onnx

    model = graph_to_onnx(graph)
    g = model.graph
    codes: dict[str, IoCodes] = {}
    both = set(graph.inputs) & set(graph.outputs)
    for value in g.input:
        name, enc = value.name, graph.tensors[value.name].encoding
        users = [n for n in g.node if name in n.input]
        if name in both or not _plain(enc) or len(users) != 1 or users[0].op_type != "QuantizeLinear":
            continue
        quant = users[0]
        elem = _elem(model, quant.input[2]) if len(quant.input) > 2 else None
        if elem is None or quant.input[0] != name:
            continue
        g.node.remove(quant)
        _rename_uses(model, quant.output[0], name)
        value.type.tensor_type.elem_type = elem
        assert enc is not None
        codes[name] = IoCodes(name, enc, np.dtype(helper.tensor_dtype_to_np_dtype(elem)))
    for value in g.output:
        name, enc = value.name, graph.tensors[value.name].encoding
        producer = next((n for n in g.node if name in n.output), None)
        if name in both or not _plain(enc) or producer is None:
            continue
        last = producer
        if producer.op_type == "Identity":  # the output's value computed under another name
            last = next((n for n in g.node if producer.input[0] in n.output), producer)
        if last.op_type != "DequantizeLinear" or len(last.input) < 3:
            continue
        elem = _elem(model, last.input[2])
        if elem is None:
            continue
        q = last.input[0]
        quantizer = next((n for n in g.node if q in n.output), None)
        if quantizer is None:  # the codes are an initializer: a constant output stays as it is
            continue
        if last is producer:
            # the codes become the output; the DequantizeLinear stays only for readers inside the graph
            taken = {v for n in g.node for v in (*n.input, *n.output)} | {t.name for t in g.initializer}
            inner = f"{name}_dequantized"
            while inner in taken:
                inner += "_"
            _rename_uses(model, name, inner)
            last.output[0] = inner
            quantizer.output[0] = name
            _rename_uses(model, q, name)
            if not any(inner in n.input for n in g.node):
                g.node.remove(last)
        else:
            producer.input[0] = q  # Identity of the codes
        value.type.tensor_type.elem_type = elem
        assert enc is not None
        codes[name] = IoCodes(name, enc, np.dtype(helper.tensor_dtype_to_np_dtype(elem)))
    onnx.checker.check_model(model)
    return model, codes

