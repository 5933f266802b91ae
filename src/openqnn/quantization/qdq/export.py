"""The QDQ export's graph walk and file writing: :func:`graph_to_onnx`, :func:`export_qdq`."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import onnx
from onnx import helper

from openqnn.errors import UnsupportedOpError
from openqnn.ir.graph import Graph
from openqnn.ir.tensor import TensorKind
from openqnn.quantization.qdq import ops_compute, ops_shape  # noqa: F401  (importing them fills HANDLERS)
from openqnn.quantization.qdq.builder import HANDLERS, _Exporter, _onnx_type, _Unsupported

OPSET = 21  # QuantizeLinear / DequantizeLinear with uint16, int16 and int4
IR_VERSION = 10  # the oldest IR version that opset 21 allows
_EXTERNAL_DATA_BYTES = 1 << 30  # larger initializers go to a <model>.onnx.data file (protobuf's 2 GB limit)


def graph_to_onnx(graph: Graph) -> onnx.ModelProto:
    """The ONNX model (opset 21) of an IR graph; encodings become QuantizeLinear / DequantizeLinear."""
    from openqnn._version import __version__

    ex = _Exporter(graph)
    inputs = []
    for name in graph.inputs:
        t = graph.tensors[name]
        inputs.append(helper.make_tensor_value_info(name, _onnx_type(t.dtype), list(t.shape)))
        ex.defined.add(name)
        ex.value[name] = name
        if ex.needs_qdq(name):
            assert t.encoding is not None
            ex.value[name] = ex.qdq(name, name, t.encoding, t.dtype, ex.fresh(f"{name}_qdq"))
    for node in graph.nodes:
        handler = HANDLERS.get(node.op_type)
        if handler is None:
            raise UnsupportedOpError(f"cannot export node '{node.name}' ({node.op_type}) to ONNX: export-onnx has no "
                                     f"ONNX mapping for the IR op {node.op_type}")
        ex.scope = node.name
        outs = ex.outputs_of(node)
        try:
            handler(ex, node, outs)
        except _Unsupported as e:
            raise UnsupportedOpError(f"cannot export node '{node.name}' ({node.op_type}) to ONNX: {e}") from None
        ex.settle(node, outs)
    outputs = []
    for name in graph.outputs:
        t = graph.tensors[name]
        if t.kind is TensorKind.STATIC:
            ex.value[name] = ex.v(name)
        if ex.value[name] != name and name not in graph.inputs:
            ex.one("Identity", [ex.value[name]], ex.claim(name))
        outputs.append(helper.make_tensor_value_info(name, _onnx_type(t.dtype), list(t.shape)))
    onnx_graph = helper.make_graph(ex.nodes, graph.name, inputs, outputs, ex.inits)
    model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="openqnn", producer_version=__version__)
    model.ir_version = IR_VERSION
    quant = graph.metadata.get("quantization")
    model.doc_string = ("openqnn export: QuantizeLinear/DequantizeLinear express the model's encodings" if quant
                        else "openqnn export of a float model")
    if quant:
        helper.set_model_props(model, {"openqnn.quantization": json.dumps(quant, sort_keys=True)})
    return model


def export_qdq(graph: Graph, path: str | os.PathLike[str]) -> Path:
    """Write ``graph`` (quantized or float) as an ONNX model at ``path``; returns the path.

    The file is written under a temporary name and renamed, so a failure leaves no half-written
    model. Models whose initializers pass 1 GiB keep them in ``<path>.data`` beside it.
    """
    out = Path(path)
    model = graph_to_onnx(graph)
    out.parent.mkdir(parents=True, exist_ok=True)
    big = sum(t.nbytes for t in graph.static_tensors()) > _EXTERNAL_DATA_BYTES
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
        tmp_model = Path(tmp) / out.name
        if big:
            data_name = f"{out.name}.data"
            onnx.save_model(model, str(tmp_model), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=data_name, size_threshold=1024)
            os.replace(Path(tmp) / data_name, out.parent / data_name)
        else:
            tmp_model.write_bytes(model.SerializeToString())
        os.replace(tmp_model, out)
    return out
