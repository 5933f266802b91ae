"""``<stem>_net.json`` + ``<stem>.bin``: the converter's model files.

The JSON reads like QNN's converter output: tensors (id, type, data type, dims, axis formats,
quantization parameters) and nodes (package, type, scalar and tensor params, input and output
names). Static tensor data lives in ``<stem>.bin``, a safetensors file (no pickle; sizes checked).
Files are written to a temporary name and renamed, so a failure leaves no half-written model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from openqnn import __version__
from openqnn.errors import InvalidModelError
from openqnn.ir.dtype import DType
from openqnn.ir.graph import Graph, Node
from openqnn.ir.tensor import Encoding, Tensor, TensorKind

__all__ = ["FORMAT_VERSION", "load_model", "model_paths", "save_model"]

FORMAT_VERSION = 1


def model_paths(output_path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(<stem>_net.json, <stem>.bin)`` for ``--output_path`` (its extension, e.g. .cpp, dropped)."""
    p = Path(output_path)
    stem = p.with_suffix("") if p.suffix else p
    if stem.name.endswith("_net"):
        stem = stem.with_name(stem.name[: -len("_net")])
    return stem.with_name(stem.name + "_net.json"), stem.with_name(stem.name + ".bin")


@contextmanager
def atomic_write(path: Path, mode: str = "w") -> Iterator[Any]:
    """Write to ``path`` through a temporary file renamed into place on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, mode) as f:
            yield f
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _param(value: Any) -> tuple[str, Any]:
    """('scalar', v) or ('tensor', {...}) for one attribute value."""
    if isinstance(value, DType):
        return "scalar", value.value
    if isinstance(value, tuple):
        arr = np.asarray(value)
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float32)
        kind = "QNN_DATATYPE_FLOAT_32" if arr.dtype.kind == "f" else "QNN_DATATYPE_INT_32"
        return "tensor", {"dims": list(arr.shape), "data": arr.tolist(), "data_type": kind}
    return "scalar", value


def _encoding_json(enc: Encoding | None, shape: tuple[int, ...] | None = None) -> dict[str, Any]:
    """QNN-style quant_params: SCALE_OFFSET, AXIS_SCALE_OFFSET, BLOCK (per-block: [channels, blocks]
    scale_offsets row-major) or BLOCKWISE_EXPANSION (LPBQ: per-channel scale_offsets and integer
    block_scales; needs ``shape``). Restricted encodings add ``qmin`` / ``qmax``."""
    if enc is None:
        return {"definition": "QNN_DEFINITION_UNDEFINED", "encoding": "QNN_QUANTIZATION_ENCODING_UNDEFINED"}
    out: dict[str, Any]
    if enc.axis is None:
        out = {"definition": "QNN_DEFINITION_DEFINED", "encoding": "QNN_QUANTIZATION_ENCODING_SCALE_OFFSET",
               "bitwidth": enc.bitwidth, "scale_offset": {"scale": enc.scale[0], "offset": enc.offset[0]}}
    elif enc.block_size is not None and enc.block_scale_bitwidth is not None and shape is not None:
        channel_scale, ints, offsets = enc.lpbq_factors(shape)
        out = {"definition": "QNN_DEFINITION_DEFINED", "encoding": "QNN_QUANTIZATION_ENCODING_BLOCKWISE_EXPANSION",
               "bitwidth": enc.bitwidth, "blockwise_expansion": {
                   "axis": enc.axis, "block_axis": enc.block_axis, "block_size": enc.block_size,
                   "num_blocks_per_axis": int(ints.shape[1]), "block_scale_bitwidth": enc.block_scale_bitwidth,
                   "scale_offsets": [{"scale": float(s), "offset": int(o)} for s, o in zip(channel_scale, offsets)],
                   "block_scales": [int(k) for k in ints.reshape(-1)]}}
    elif enc.block_size is not None:
        out = {"definition": "QNN_DEFINITION_DEFINED", "encoding": "QNN_QUANTIZATION_ENCODING_BLOCK",
               "bitwidth": enc.bitwidth, "block_scale_offset": {
                   "axis": enc.axis, "block_axis": enc.block_axis, "block_size": enc.block_size,
                   "scale_offsets": [{"scale": s, "offset": o} for s, o in zip(enc.scale, enc.offset)]}}
    else:
        out = {"definition": "QNN_DEFINITION_DEFINED", "encoding": "QNN_QUANTIZATION_ENCODING_AXIS_SCALE_OFFSET",
               "bitwidth": enc.bitwidth, "axis_scale_offset": {"axis": enc.axis, "scale_offsets": [
                   {"scale": s, "offset": o} for s, o in zip(enc.scale, enc.offset)]}}
    out["symmetric"], out["is_signed"] = enc.symmetric, enc.is_signed
    if enc.qmin is not None:
        out["qmin"], out["qmax"] = enc.qmin, enc.qmax
    return out


def _encoding_from(d: dict[str, Any]) -> Encoding | None:
    if d.get("definition") != "QNN_DEFINITION_DEFINED":
        return None
    bw, sym, signed = int(d["bitwidth"]), bool(d.get("symmetric", False)), bool(d.get("is_signed", False))
    restrict: dict[str, Any] = {"qmin": int(d["qmin"]), "qmax": int(d["qmax"])} if "qmin" in d else {}
    if "axis_scale_offset" in d:
        aso = d["axis_scale_offset"]
        return Encoding(bw, tuple(float(x["scale"]) for x in aso["scale_offsets"]),
                        tuple(int(x["offset"]) for x in aso["scale_offsets"]), int(aso["axis"]), sym, signed,
                        **restrict)
    if "block_scale_offset" in d:
        bso = d["block_scale_offset"]
        return Encoding(bw, tuple(float(x["scale"]) for x in bso["scale_offsets"]),
                        tuple(int(x["offset"]) for x in bso["scale_offsets"]), int(bso["axis"]), sym, signed,
                        int(bso["block_size"]), int(bso["block_axis"]), **restrict)
    if "blockwise_expansion" in d:
        be = d["blockwise_expansion"]
        blocks = int(be["num_blocks_per_axis"])
        channel_scale = np.asarray([float(x["scale"]) for x in be["scale_offsets"]], dtype=np.float64)
        ints = np.asarray(be["block_scales"], dtype=np.int64)
        if ints.size != channel_scale.size * blocks:
            raise ValueError(f"{ints.size} block_scales for {channel_scale.size} channels x {blocks} blocks")
        offsets = tuple(int(x["offset"]) for x in be["scale_offsets"] for _ in range(blocks))
        return Encoding(bw, Encoding.expand_lpbq(channel_scale, ints.reshape(-1, blocks)), offsets, int(be["axis"]),
                        sym, signed, int(be["block_size"]), int(be["block_axis"]), int(be["block_scale_bitwidth"]),
                        **restrict)
    so = d["scale_offset"]
    return Encoding(bw, (float(so["scale"]),), (int(so["offset"]),), None, sym, signed, **restrict)


def _checked_encoding(name: str, d: dict[str, Any], shape: tuple[int, ...], static: bool) -> Encoding | None:
    """:func:`_encoding_from`, checked against the tensor's shape (per-axis counts, per-block layout)."""
    enc = _encoding_from(d)
    if enc is None:
        return None
    problem = enc.shape_error(shape)
    if problem is None and enc.per_block and not static:
        problem = "per-block encodings are for static weights"
    if problem is not None:
        raise InvalidModelError(f"tensor '{name}': its encoding does not fit: {problem}")
    return enc


def graph_to_json(graph: Graph, bin_name: str = "") -> dict[str, Any]:
    tensors: dict[str, Any] = {}
    for i, t in enumerate(graph.tensors.values()):
        entry: dict[str, Any] = {
            "id": i,
            "type": t.kind.value,
            "data_type": t.dtype.value,
            "dims": list(t.shape),
            "quant_params": _encoding_json(t.encoding, t.shape),
        }
        if t.src_axis_format:
            entry["src_axis_format"] = t.src_axis_format
        if t.axis_format:
            entry["axis_format"] = t.axis_format
        tensors[t.name] = entry
    nodes: dict[str, Any] = {}
    for n in graph.nodes:
        scalar: dict[str, Any] = {}
        tensor: dict[str, Any] = {}
        for k, v in n.attrs.items():
            kind, val = _param(v)
            (scalar if kind == "scalar" else tensor)[k] = val
        nodes[n.name] = {"package": n.package, "type": n.op_type, "input_names": list(n.inputs),
                         "output_names": list(n.outputs), "scalar_params": scalar, "tensor_params": tensor}
    n_params = sum(t.size for t in graph.static_tensors())
    return {
        "format": "openqnn_net",
        "format_version": FORMAT_VERSION,
        "openqnn_version": __version__,
        "model.bin": bin_name,
        "graph_name": graph.name,
        "converter_command": graph.metadata.get("converter_command", ""),
        "metadata": {k: v for k, v in graph.metadata.items() if k != "converter_command"},
        "op_types": graph.op_types(),
        "Total parameters": f"{n_params} ({n_params * 4 / 2**20:.2f} MB assuming single precision float)",
        "graph": {"inputs": list(graph.inputs), "outputs": list(graph.outputs), "tensors": tensors, "nodes": nodes},
    }


def save_model(graph: Graph, output_path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``<stem>_net.json`` and ``<stem>.bin``; returns their paths."""
    from safetensors.numpy import save

    json_path, bin_path = model_paths(output_path)
    blobs = {t.name: np.asarray(t.data, order="C") for t in graph.static_tensors() if t.data is not None}
    data = save(blobs, metadata={"format": "openqnn_weights", "graph": graph.name}) if blobs else save(
        {"__empty__": np.zeros(0, np.float32)})
    doc = graph_to_json(graph, bin_path.name)
    with atomic_write(bin_path, "wb") as f:
        f.write(data)
    with atomic_write(json_path) as f:
        json.dump(doc, f, indent=1)
    return json_path, bin_path


def _param_value(v: Any) -> Any:
    if isinstance(v, dict) and "dims" in v:
        arr = np.asarray(v["data"])
        if arr.ndim == 2:
            return tuple(tuple(r) for r in arr.tolist())
        return tuple(arr.reshape(-1).tolist())
    if isinstance(v, str) and v.startswith("QNN_DATATYPE_"):
        return DType(v)
    return v


def load_model(path: str | os.PathLike[str]) -> Graph:
    """Read a model written by :func:`save_model` (the path of the ``_net.json``)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    json_path = Path(path)
    if not json_path.is_file():
        raise InvalidModelError(f"{json_path}: no such model file (expected a <stem>_net.json from the converter)")
    try:
        doc = json.loads(json_path.read_text())
        g = doc["graph"]
        if doc.get("format") != "openqnn_net":
            raise KeyError("format")
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise InvalidModelError(f"{json_path}: not an openqnn _net.json model ({type(e).__name__}: {e})") from None
    if int(doc.get("format_version", 0)) > FORMAT_VERSION:
        raise InvalidModelError(f"{json_path}: model format {doc['format_version']} is newer than this openqnn "
                                f"({__version__}) reads ({FORMAT_VERSION}); upgrade openqnn")
    bin_path = json_path.with_name(doc.get("model.bin") or model_paths(json_path)[1].name)
    statics = [n for n, t in g["tensors"].items() if t["type"] == TensorKind.STATIC.value]
    blobs: dict[str, np.ndarray] = {}
    if statics:
        if not bin_path.is_file():
            raise InvalidModelError(f"{json_path}: its weights file {bin_path} is missing")
        try:
            blobs = load(bin_path.read_bytes())
        except (SafetensorError, ValueError) as e:
            raise InvalidModelError(f"{bin_path}: weights file is corrupt ({e})") from None
    graph = Graph(doc.get("graph_name", json_path.stem))
    graph.metadata = dict(doc.get("metadata", {}))
    if doc.get("converter_command"):
        graph.metadata["converter_command"] = doc["converter_command"]
    try:
        for name, t in g["tensors"].items():
            kind, dtype, shape = TensorKind(t["type"]), DType(t["data_type"]), tuple(int(d) for d in t["dims"])
            data = None
            if kind is TensorKind.STATIC:
                if name not in blobs:
                    raise InvalidModelError(f"{bin_path}: no data for static tensor '{name}'")
                data = blobs[name]
                if tuple(data.shape) != shape or data.dtype != dtype.numpy:
                    raise InvalidModelError(
                        f"{bin_path}: tensor '{name}' holds {data.shape}/{data.dtype}, the model says {shape}/{dtype.name}")
            enc = _checked_encoding(name, t.get("quant_params", {}), shape, kind is TensorKind.STATIC)
            graph.add_tensor(Tensor(name, shape, dtype, kind, data, enc, t.get("src_axis_format"), t.get("axis_format")))
        for name, n in g["nodes"].items():
            attrs = {k: _param_value(v) for k, v in {**n["scalar_params"], **n["tensor_params"]}.items()}
            graph.add_node(Node(name, n["type"], list(n["input_names"]), list(n["output_names"]), attrs,
                                n.get("package", "qti.aisw")))
        graph.inputs, graph.outputs = list(g["inputs"]), list(g["outputs"])
    except (KeyError, ValueError, TypeError) as e:
        raise InvalidModelError(f"{json_path}: malformed model ({type(e).__name__}: {e})") from None
    from openqnn.ir.verifier import verify

    verify(graph)
    return graph
