"""``<stem>_net.json`` + ``<stem>.bin``: the converter's model files.

The JSON reads like QNN's converter output: tensors (id, type, data type, dims, axis formats,
quantization parameters) and nodes (package, type, scalar and tensor params, input and output
names). Static tensor data lives in ``<stem>.bin``, a safetensors file (no pickle; sizes checked).
Files are written to a temporary name and renamed, so a failure leaves no half-written model.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from openqnn._version import __version__
from openqnn.errors import InvalidConfigError, InvalidModelError
from openqnn.ir.dtype import DType
from openqnn.ir.graph import Graph, Node
from openqnn.ir.tensor import Encoding, Tensor, TensorKind

__all__ = ["FORMAT_VERSION", "from_json_safe", "graph_from_doc", "graph_to_json", "load_model", "model_paths", "node_to_json", "nodes_from_json",
           "save_model", "tensor_to_json", "to_json_safe"]

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


def _param(value: Any, exact: bool = False) -> tuple[str, Any]:
    """('scalar', v) or ('tensor', {...}) for one attribute value (float tensors as float32 unless ``exact``)."""
    if isinstance(value, DType):
        return "scalar", value.value
    if isinstance(value, tuple):
        arr = np.asarray(value)
        if arr.dtype.kind == "f" and not exact:
            arr = arr.astype(np.float32)
        kind = ("QNN_DATATYPE_INT_32" if arr.dtype.kind != "f" else
                "QNN_DATATYPE_FLOAT_64" if exact else "QNN_DATATYPE_FLOAT_32")
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


def tensor_to_json(t: Tensor, index: int = 0) -> dict[str, Any]:
    """One entry of ``graph.tensors``: id, kind, data type, dims, quant_params, axis formats (no data)."""
    entry: dict[str, Any] = {
        "id": index,
        "type": t.kind.value,
        "data_type": t.dtype.value,
        "dims": list(t.shape),
        "quant_params": _encoding_json(t.encoding, t.shape),
    }
    if t.src_axis_format:
        entry["src_axis_format"] = t.src_axis_format
    if t.axis_format:
        entry["axis_format"] = t.axis_format
    return entry


def node_to_json(n: Node, exact: bool = False) -> dict[str, Any]:
    """One entry of ``graph.nodes``. Float tensor params are written as float32 (QNN's type) unless
    ``exact``, which keeps them as Python floats (what a prepared plan needs to run exactly as prepared)."""
    scalar: dict[str, Any] = {}
    tensor: dict[str, Any] = {}
    for k, v in n.attrs.items():
        kind, val = _param(v, exact)
        (scalar if kind == "scalar" else tensor)[k] = val
    return {"package": n.package, "type": n.op_type, "input_names": list(n.inputs), "output_names": list(n.outputs),
            "scalar_params": scalar, "tensor_params": tensor}


def graph_to_json(graph: Graph, bin_name: str = "") -> dict[str, Any]:
    tensors = {t.name: tensor_to_json(t, i) for i, t in enumerate(graph.tensors.values())}
    nodes = {n.name: node_to_json(n) for n in graph.nodes}
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
    text = json.dumps(graph_to_json(graph, bin_path.name), indent=1)
    fresh_bin = not bin_path.exists()
    try:
        for p in (json_path, bin_path):
            if p.is_dir():
                raise IsADirectoryError(21, "a folder has that name", str(p))
        # both written to temporary names; the .bin is renamed into place first, the _net.json last
        with atomic_write(json_path) as fj, atomic_write(bin_path, "wb") as fb:
            fb.write(data)
            fj.write(text)
    except OSError as e:
        if fresh_bin and bin_path.is_file() and not json_path.is_file():
            bin_path.unlink()  # the _net.json could not be written: no lone .bin either
        raise InvalidConfigError(f"cannot write the model to {json_path} / {bin_path.name}: {e.strerror or e}; give "
                                 "an --output_path in a folder you can write to") from None
    return json_path, bin_path


# -- reading: every field is checked where the file is read ----------------------------------------

LEGAL_BITWIDTHS = (4, 8, 16, 32)
MAX_RANK = 16
MAX_ELEMENTS = 2**31 - 1  # QNN's dims are uint32; no tensor openqnn can run comes near this
_REGENERATE = "regenerate the model with qnn-onnx-converter"
_KINDS = [k.value for k in TensorKind]
_DTYPES = [d.value for d in DType]


class _Reader:
    """Typed access to the parsed JSON: every failure is an InvalidModelError naming the file and the
    field (``graph.tensors['x'].dims``) and saying what to do."""

    def __init__(self, path: Path | str, remedy: str = _REGENERATE):
        self.path, self.remedy = path, remedy

    def fail(self, where: str, msg: str) -> InvalidModelError:
        return InvalidModelError(f"{self.path}: {where}: {msg}; {self.remedy}")

    def obj(self, v: Any, where: str) -> dict[str, Any]:
        if not isinstance(v, dict):
            raise self.fail(where, f"expected an object, found {_kind(v)}")
        return v

    def key(self, d: dict[str, Any], key: str, where: str) -> Any:
        if key not in d:
            raise self.fail(where, f"missing key '{key}'")
        return d[key]

    def str_(self, v: Any, where: str) -> str:
        if not isinstance(v, str):
            raise self.fail(where, f"expected a string, found {_kind(v)}")
        return v

    def strs(self, v: Any, where: str) -> list[str]:
        if not isinstance(v, list):
            raise self.fail(where, f"expected a list of names, found {_kind(v)}")
        return [self.str_(x, f"{where}[{i}]") for i, x in enumerate(v)]

    def bool_(self, v: Any, where: str) -> bool:
        if not isinstance(v, bool):
            raise self.fail(where, f"expected true or false, found {_kind(v)}")
        return v

    def int_(self, v: Any, where: str, lo: int | None = None, hi: int | None = None) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(where, f"expected an integer, found {_kind(v)}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise self.fail(where, f"{v} is outside [{'' if lo is None else lo}, {'' if hi is None else hi}]")
        return v

    def scale(self, v: Any, where: str) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
            raise self.fail(where, f"scale {v!r} must be a finite positive number")
        return float(v)

    def enum(self, v: Any, where: str, values: list[str]) -> str:
        if v not in values:
            raise self.fail(where, f"{v!r} is not one of {', '.join(values)}")
        return str(v)


def _kind(v: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(v), f"the number {v!r}" if isinstance(v, int | float) else type(v).__name__)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d: dict[str, Any] = {}
    for k, v in pairs:
        if k in d:
            raise ValueError(f"key {k!r} appears twice in one object")
        d[k] = v
    return d


_ENCODINGS = ["QNN_QUANTIZATION_ENCODING_SCALE_OFFSET", "QNN_QUANTIZATION_ENCODING_AXIS_SCALE_OFFSET",
              "QNN_QUANTIZATION_ENCODING_BLOCK", "QNN_QUANTIZATION_ENCODING_BLOCKWISE_EXPANSION"]


def _read_encoding(r: _Reader, d: Any, where: str, shape: tuple[int, ...], static: bool) -> Encoding | None:
    """A tensor's quant_params: its layout, legal bitwidths, finite positive scales, offsets in range,
    and the fit of per-axis / per-block values to the tensor's shape."""
    d = r.obj(d, where)
    definition = d.get("definition", "QNN_DEFINITION_UNDEFINED")
    r.enum(definition, f"{where}.definition", ["QNN_DEFINITION_DEFINED", "QNN_DEFINITION_UNDEFINED",
                                               "QNN_DEFINITION_IMPL_GENERATED"])
    if definition != "QNN_DEFINITION_DEFINED":
        return None
    kind = r.enum(r.key(d, "encoding", where), f"{where}.encoding", _ENCODINGS)
    bw = r.key(d, "bitwidth", where)
    if bw not in LEGAL_BITWIDTHS or isinstance(bw, bool):
        raise r.fail(f"{where}.bitwidth", f"{bw!r} is not a legal bitwidth ({', '.join(map(str, LEGAL_BITWIDTHS))})")
    sym = r.bool_(d.get("symmetric", False), f"{where}.symmetric")
    signed = r.bool_(d.get("is_signed", False), f"{where}.is_signed")
    limit = 1 << bw

    def scale_offsets(v: Any, at: str) -> tuple[tuple[float, ...], tuple[int, ...]]:
        if not isinstance(v, list) or not v:
            raise r.fail(at, f"expected a non-empty list of {{scale, offset}}, found {_kind(v)}")
        items = [r.obj(x, f"{at}[{i}]") for i, x in enumerate(v)]
        return (tuple(r.scale(r.key(x, "scale", f"{at}[{i}]"), f"{at}[{i}].scale") for i, x in enumerate(items)),
                tuple(r.int_(r.key(x, "offset", f"{at}[{i}]"), f"{at}[{i}].offset", -limit, limit)
                      for i, x in enumerate(items)))

    rank = max(len(shape), 1)
    restrict: dict[str, Any] = {}
    if "qmin" in d or "qmax" in d:
        restrict = {"qmin": r.int_(r.key(d, "qmin", where), f"{where}.qmin", -limit, limit),
                    "qmax": r.int_(r.key(d, "qmax", where), f"{where}.qmax", -limit, limit)}
    try:
        if kind == "QNN_QUANTIZATION_ENCODING_SCALE_OFFSET":
            so = r.obj(r.key(d, "scale_offset", where), f"{where}.scale_offset")
            enc = Encoding(bw, (r.scale(r.key(so, "scale", f"{where}.scale_offset"), f"{where}.scale_offset.scale"),),
                           (r.int_(r.key(so, "offset", f"{where}.scale_offset"), f"{where}.scale_offset.offset",
                                   -limit, limit),), None, sym, signed, **restrict)
        elif kind == "QNN_QUANTIZATION_ENCODING_AXIS_SCALE_OFFSET":
            at = f"{where}.axis_scale_offset"
            aso = r.obj(r.key(d, "axis_scale_offset", where), at)
            scales, offsets = scale_offsets(r.key(aso, "scale_offsets", at), f"{at}.scale_offsets")
            enc = Encoding(bw, scales, offsets, r.int_(r.key(aso, "axis", at), f"{at}.axis", 0, rank - 1), sym,
                           signed, **restrict)
        elif kind == "QNN_QUANTIZATION_ENCODING_BLOCK":
            at = f"{where}.block_scale_offset"
            bso = r.obj(r.key(d, "block_scale_offset", where), at)
            scales, offsets = scale_offsets(r.key(bso, "scale_offsets", at), f"{at}.scale_offsets")
            enc = Encoding(bw, scales, offsets, r.int_(r.key(bso, "axis", at), f"{at}.axis", 0, rank - 1), sym, signed,
                           r.int_(r.key(bso, "block_size", at), f"{at}.block_size", 1, MAX_ELEMENTS),
                           r.int_(r.key(bso, "block_axis", at), f"{at}.block_axis", 0, rank - 1), **restrict)
        else:
            at = f"{where}.blockwise_expansion"
            be = r.obj(r.key(d, "blockwise_expansion", where), at)
            scales, offsets = scale_offsets(r.key(be, "scale_offsets", at), f"{at}.scale_offsets")
            blocks = r.int_(r.key(be, "num_blocks_per_axis", at), f"{at}.num_blocks_per_axis", 1, MAX_ELEMENTS)
            sbw = r.int_(r.key(be, "block_scale_bitwidth", at), f"{at}.block_scale_bitwidth", 1, 16)
            raw = r.key(be, "block_scales", at)
            if not isinstance(raw, list) or len(raw) != len(scales) * blocks:
                raise r.fail(f"{at}.block_scales", f"expected {len(scales)} channels x {blocks} blocks = "
                             f"{len(scales) * blocks} integers, found {len(raw) if isinstance(raw, list) else _kind(raw)}")
            ints = [r.int_(k, f"{at}.block_scales[{i}]", 1, 1 << sbw) for i, k in enumerate(raw)]
            expanded = Encoding.expand_lpbq(np.asarray(scales), np.asarray(ints, dtype=np.int64).reshape(-1, blocks))
            enc = Encoding(bw, expanded, tuple(o for o in offsets for _ in range(blocks)),
                           r.int_(r.key(be, "axis", at), f"{at}.axis", 0, rank - 1), sym, signed,
                           r.int_(r.key(be, "block_size", at), f"{at}.block_size", 1, MAX_ELEMENTS),
                           r.int_(r.key(be, "block_axis", at), f"{at}.block_axis", 0, rank - 1), sbw, **restrict)
    except ValueError as e:  # the Encoding's own invariants (scale/offset counts, block layout, restricted range)
        raise r.fail(where, str(e)) from None
    problem = enc.shape_error(shape)
    if problem is None and enc.per_block and not static:
        problem = "per-block encodings are for static weights"
    if problem is not None:
        raise r.fail(where, f"the encoding does not fit the tensor: {problem}")
    return enc


def _read_param(r: _Reader, v: Any, where: str, tensor: bool) -> Any:
    """A node's scalar param (number, bool, string, QNN data type) or tensor param ({dims, data})."""
    if not tensor:
        if isinstance(v, str) and v.startswith("QNN_DATATYPE_"):
            return DType(r.enum(v, where, _DTYPES))
        if isinstance(v, float) and not math.isfinite(v):
            return v  # e.g. a clip bound of inf; the op decides
        if not isinstance(v, bool | int | float | str):
            raise r.fail(where, f"expected a number, boolean or string, found {_kind(v)}")
        if isinstance(v, int) and not -(2**63) <= v < 2**63:
            raise r.fail(where, f"{v} does not fit in 64 bits")
        return v
    v = r.obj(v, where)
    dims = r.key(v, "dims", where)
    if not isinstance(dims, list) or len(dims) > 2:
        raise r.fail(f"{where}.dims", f"expected a list of at most 2 dims, found {_kind(dims)}")
    dims = [r.int_(x, f"{where}.dims[{i}]", 0, MAX_ELEMENTS) for i, x in enumerate(dims)]
    data = r.key(v, "data", where)
    flat = data if isinstance(data, list) and (len(dims) < 2) else (
        [x for row in data for x in (row if isinstance(row, list) else [row])] if isinstance(data, list) else None)
    if flat is None or any(isinstance(x, bool) or not isinstance(x, int | float) for x in flat):
        raise r.fail(f"{where}.data", f"expected {'rows of ' if len(dims) == 2 else 'a list of '}numbers")
    if any(isinstance(x, int) and not -(2**63) <= x < 2**63 for x in flat):
        raise r.fail(f"{where}.data", "a value does not fit in 64 bits")
    n = int(np.prod(dims, dtype=np.int64)) if dims else 1
    if len(flat) != n or (len(dims) == 2 and any(not isinstance(row, list) or len(row) != dims[1] for row in data)):
        raise r.fail(f"{where}.data", f"holds {len(flat)} values, its dims {dims} need {n}")
    arr = np.asarray(flat)
    if len(dims) == 2:
        return tuple(tuple(row) for row in arr.reshape(dims).tolist())
    return tuple(arr.tolist())


def _bin_path(r: _Reader, doc: dict[str, Any], json_path: Path) -> Path:
    """The weights file: a plain file name beside the _net.json (never a path out of its folder)."""
    name = doc.get("model.bin") or model_paths(json_path)[1].name
    name = r.str_(name, "model.bin")
    if name in (".", "..") or "/" in name or "\\" in name or "\0" in name or Path(name).is_absolute():
        raise r.fail("model.bin", f"{name!r} must be a file name in the model's folder (no directories, no '..')")
    return json_path.with_name(name)


def _read_tensor(r: _Reader, name: str, t: Any, blobs: Mapping[str, np.ndarray], bin_path: Path | str) -> Tensor:
    where = f"graph.tensors[{name!r}]"
    t = r.obj(t, where)
    kind = TensorKind(r.enum(r.key(t, "type", where), f"{where}.type", _KINDS))
    dtype = DType(r.enum(r.key(t, "data_type", where), f"{where}.data_type", _DTYPES))
    dims = r.key(t, "dims", where)
    if not isinstance(dims, list) or len(dims) > MAX_RANK:
        raise r.fail(f"{where}.dims", f"expected a list of at most {MAX_RANK} dims, found {_kind(dims)}")
    shape = tuple(r.int_(d, f"{where}.dims[{i}]", 0, MAX_ELEMENTS) for i, d in enumerate(dims))
    if math.prod(shape) > MAX_ELEMENTS:
        raise r.fail(f"{where}.dims", f"{list(shape)} holds {math.prod(shape)} elements, more than {MAX_ELEMENTS}")
    data = None
    if kind is TensorKind.STATIC:
        if name not in blobs:
            raise InvalidModelError(f"{bin_path}: no data for static tensor '{name}'; {r.remedy}")
        data = blobs[name]
        if tuple(data.shape) != shape or data.dtype != dtype.numpy:
            raise InvalidModelError(f"{bin_path}: tensor '{name}' holds {data.shape}/{data.dtype}, the model says "
                                    f"{shape}/{dtype.name}; {r.remedy}")
    enc = _read_encoding(r, t.get("quant_params", {}), f"{where}.quant_params", shape, kind is TensorKind.STATIC)
    formats = []
    for key in ("src_axis_format", "axis_format"):
        v = t.get(key)
        formats.append(None if v is None else r.str_(v, f"{where}.{key}"))
    return Tensor(name, shape, dtype, kind, data, enc, formats[0], formats[1])


def _read_node(r: _Reader, name: str, n: Any, graph: Graph) -> Node:
    from openqnn.ops.schema import get_schema

    where = f"graph.nodes[{name!r}]"
    n = r.obj(n, where)
    op_type = r.str_(r.key(n, "type", where), f"{where}.type")
    try:
        schema = get_schema(op_type)
    except InvalidModelError:
        from openqnn.ops.schema import OPS

        raise r.fail(f"{where}.type", f"unknown op type {op_type!r} (known: {', '.join(sorted(OPS))})") from None
    ios = []
    for key in ("input_names", "output_names"):
        names = r.strs(r.key(n, key, where), f"{where}.{key}")
        for i, x in enumerate(names):
            if (x or key == "output_names") and x not in graph.tensors:
                raise r.fail(f"{where}.{key}[{i}]", f"'{x}' is not a tensor in graph.tensors")
        ios.append(names)
    attrs: dict[str, Any] = {}
    for key, tensor in (("scalar_params", False), ("tensor_params", True)):
        params = r.obj(n.get(key, {}), f"{where}.{key}")
        for k, v in params.items():
            if k in attrs:
                raise r.fail(f"{where}.{key}.{k}", "given both as a scalar and as a tensor param")
            attrs[k] = _read_param(r, v, f"{where}.{key}.{k}", tensor)
    try:
        attrs = schema.normalize_attrs(name, attrs)  # defaults filled, kinds checked, unknown names refused
    except InvalidModelError as e:
        raise InvalidModelError(f"{r.path}: {e}; {r.remedy}") from None
    package = r.str_(n.get("package", "qti.aisw"), f"{where}.package")
    return Node(name, op_type, ios[0], ios[1], attrs, package)


def load_model(path: str | os.PathLike[str]) -> Graph:
    """Read a model written by :func:`save_model` (the path of the ``_net.json``).

    Every field is checked here, once: the JSON's layout and types, tensor kinds, data types and dims,
    encodings (legal bitwidths, finite positive scales, offsets in range, per-axis counts), the weights
    file (a name beside the JSON; each static tensor's shape and dtype), node params against the op
    schemas, and the graph (inputs, outputs, shape inference). Anything wrong is an InvalidModelError
    naming the file and the field, node or tensor."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    json_path = Path(path)
    if not json_path.is_file():
        raise InvalidModelError(f"{json_path}: no such model file (expected a <stem>_net.json from the converter)")
    r = _Reader(json_path)
    try:
        doc = json.loads(json_path.read_bytes().decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:  # JSONDecodeError is a ValueError
        msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise InvalidModelError(f"{json_path}: not an openqnn _net.json model ({type(e).__name__}: {msg}); "
                                f"{_REGENERATE}") from None
    except OSError as e:
        raise InvalidModelError(f"{json_path}: cannot read the model ({e.strerror or e})") from None
    if not isinstance(doc, dict) or doc.get("format") != "openqnn_net":
        raise InvalidModelError(f"{json_path}: not an openqnn _net.json model (its \"format\" is not \"openqnn_net\"); "
                                f"{_REGENERATE}")
    bin_path = None
    if isinstance(doc.get("graph"), dict) and isinstance(doc["graph"].get("tensors"), dict):
        statics = [t for t in doc["graph"]["tensors"].values()
                   if isinstance(t, dict) and t.get("type") == TensorKind.STATIC.value]
        if statics:
            bin_path = _bin_path(r, doc, json_path)
    blobs: dict[str, np.ndarray] = {}
    if bin_path is not None:
        if not bin_path.is_file():
            raise InvalidModelError(f"{json_path}: its weights file {bin_path} is missing; keep the .bin beside "
                                    "the _net.json")
        try:
            blobs = load(bin_path.read_bytes())
        except (SafetensorError, ValueError, OSError, OverflowError, MemoryError) as e:
            raise InvalidModelError(f"{bin_path}: weights file is corrupt ({str(e)[:200]}); {_REGENERATE}") from None
    return graph_from_doc(doc, blobs, json_path, bin_path or json_path)


def graph_from_doc(doc: Any, blobs: Mapping[str, np.ndarray], where: Path, weights_path: Path,
                   remedy: str = _REGENERATE) -> Graph:
    """The graph of a ``_net.json`` document already parsed (:func:`load_model`, or a model library's
    composition), static tensors' data from ``blobs`` by name; checked field by field and verified. Errors
    name ``where`` (the file) and ``weights_path`` (where the data came from) and end with ``remedy``."""
    json_path = where
    r = _Reader(json_path, remedy)
    if not isinstance(doc, dict) or doc.get("format") != "openqnn_net":
        raise InvalidModelError(f"{json_path}: not an openqnn _net.json model (its \"format\" is not \"openqnn_net\"); "
                                f"{remedy}")
    version = r.int_(doc.get("format_version", 0), "format_version", 0)
    if version > FORMAT_VERSION:
        raise InvalidModelError(f"{json_path}: model format {version} is newer than this openqnn "
                                f"({__version__}) reads ({FORMAT_VERSION}); upgrade openqnn")
    g = r.obj(r.key(doc, "graph", "the file"), "graph")
    tensors = r.obj(r.key(g, "tensors", "graph"), "graph.tensors")
    nodes = r.obj(r.key(g, "nodes", "graph"), "graph.nodes")
    inputs = r.strs(r.key(g, "inputs", "graph"), "graph.inputs")
    outputs = r.strs(r.key(g, "outputs", "graph"), "graph.outputs")
    if not outputs:
        raise r.fail("graph.outputs", "the graph has no outputs")
    graph = Graph(r.str_(doc.get("graph_name", json_path.stem), "graph_name"))
    graph.metadata = dict(r.obj(doc.get("metadata", {}), "metadata"))
    command = r.str_(doc.get("converter_command", ""), "converter_command")
    if command:
        graph.metadata["converter_command"] = command
    for name, t in tensors.items():
        graph.add_tensor(_read_tensor(r, name, t, blobs, weights_path))
    for name, n in nodes.items():
        graph.add_node(_read_node(r, name, n, graph))
    _set_io(r, graph, inputs, outputs, "graph")
    from openqnn.ir.verifier import verify

    try:
        verify(graph)
    except InvalidModelError as e:
        raise InvalidModelError(f"{json_path}: {e}; {remedy}") from None
    return graph


def _set_io(r: _Reader, graph: Graph, inputs: list[str], outputs: list[str], where: str) -> None:
    """Check that the inputs and outputs name tensors of ``graph``, once each, and set them."""
    for field_, names in (("inputs", inputs), ("outputs", outputs)):
        for i, x in enumerate(names):
            if x not in graph.tensors:
                raise r.fail(f"{where}.{field_}[{i}]", f"'{x}' is not a tensor in {where}.tensors")
        if len(set(names)) != len(names):
            raise r.fail(f"{where}.{field_}", "a name appears twice")
    graph.inputs, graph.outputs = list(inputs), list(outputs)


def io_graph_from_json(doc: Any, path: Path) -> Graph:
    """The inputs-and-outputs graph of a prepared graph (``graph_to_json`` of one with no nodes), checked as
    :func:`load_model` checks a model; errors name ``path`` (the context binary) and the field."""
    r = _Reader(path)
    doc = r.obj(doc, "io")
    g = r.obj(r.key(doc, "graph", "io"), "io.graph")
    tensors = r.obj(r.key(g, "tensors", "io.graph"), "io.graph.tensors")
    inputs = r.strs(r.key(g, "inputs", "io.graph"), "io.graph.inputs")
    outputs = r.strs(r.key(g, "outputs", "io.graph"), "io.graph.outputs")
    if not outputs:
        raise r.fail("io.graph.outputs", "the graph has no outputs")
    graph = Graph(r.str_(doc.get("graph_name", path.stem), "io.graph_name"))
    for name, t in tensors.items():
        if isinstance(t, dict) and t.get("type") == TensorKind.STATIC.value:
            raise r.fail(f"io.graph.tensors[{name!r}]", "a static tensor among the inputs and outputs")
        graph.add_tensor(_read_tensor(r, name, t, {}, path))
    _set_io(r, graph, inputs, outputs, "io.graph")
    return graph


def nodes_from_json(doc: Any, arrays: Mapping[str, np.ndarray], where: str, remedy: str) -> Graph:
    """A fragment of a graph (a prepared step's nodes): ``{"tensors": [...], "nodes": [...]}``, entries of
    :func:`tensor_to_json` and :func:`node_to_json` each with its ``"name"`` (names may hold any character),
    static tensors' data from ``arrays`` by name. Checked as :func:`load_model` checks them, with no inputs or
    outputs set and no verification. Errors name ``where`` and end with ``remedy``."""
    r = _Reader(where, remedy)
    doc = r.obj(doc, "graph")
    graph = Graph(where)
    for field_ in ("tensors", "nodes"):
        entries = r.key(doc, field_, "graph")
        if not isinstance(entries, list):
            raise r.fail(f"graph.{field_}", f"expected a list, found {_kind(entries)}")
        for i, entry in enumerate(entries):
            entry = r.obj(entry, f"graph.{field_}[{i}]")
            name = r.str_(r.key(entry, "name", f"graph.{field_}[{i}]"), f"graph.{field_}[{i}].name")
            if field_ == "tensors":
                graph.add_tensor(_read_tensor(r, name, entry, arrays, where))
            else:
                graph.add_node(_read_node(r, name, entry, graph))
    return graph


_NONFINITE = "$nonfinite"  # the key of the object standing for an infinite or NaN float


def to_json_safe(value: Any) -> Any:
    """``value`` (JSON values, tuples, numpy scalars, nested) with each infinite or NaN float as
    ``{"$nonfinite": "inf"}`` (or "-inf", "nan"): strict JSON, which a prepared plan must be.
    :func:`from_json_safe` undoes it."""
    if isinstance(value, np.generic):  # a numpy scalar a pass left in an attribute: its Python value
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return {_NONFINITE: "nan" if math.isnan(value) else "inf" if value > 0 else "-inf"}
    if isinstance(value, dict):
        return {k: to_json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_safe(v) for v in value]
    return value


def from_json_safe(value: Any) -> Any:
    """The values of :func:`to_json_safe` back (lists stay lists)."""
    if type(value) is dict:
        if len(value) == 1 and _NONFINITE in value:
            return float(value[_NONFINITE]) if value[_NONFINITE] in ("inf", "-inf", "nan") else value
        return {k: from_json_safe(v) if type(v) in _CONTAINERS else v for k, v in value.items()}
    if type(value) is list:
        return [from_json_safe(v) if type(v) in _CONTAINERS else v for v in value]
    return value


_CONTAINERS = (dict, list)
