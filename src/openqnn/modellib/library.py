"""Loading a model library: its ELF read first, then its graph composed through the C ABI's callbacks.

The library is judged before it is opened (``dlopen`` runs its constructors): an ELF shared library for
this machine's architecture that exports ``openqnn_model_abi_version`` and ``openqnn_compose``. Opened,
its ABI version must be the one this runtime speaks before anything else is called. The tensors and nodes
it declares become the document a ``_net.json`` holds, and the same reader builds and verifies the graph,
so a library and its ``_net.json`` give the same graph.
"""

from __future__ import annotations

import ctypes
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from openqnn._version import __version__
from openqnn.errors import InvalidModelError, ModelLibraryError
from openqnn.ir.graph import Graph
from openqnn.modellib.elf import ElfError, host_machine, read_elf
from openqnn.modellib.toolchain import host_target
from openqnn.serialization import graph_from_doc
from openqnn.serialization.netjson import FORMAT_VERSION
from openqnn.serialization.tensorfile import DTYPES, Entry, entries

__all__ = ["ABI_VERSION", "ENTRY_POINTS", "is_model_library", "library_info", "load_library"]

ABI_VERSION = 1  # OPENQNN_MODEL_ABI_VERSION in openqnn/model_api.h
ENTRY_POINTS = ("openqnn_model_abi_version", "openqnn_model_info", "openqnn_model_weights", "openqnn_compose")
_REBUILD = "rebuild it with qnn-model-lib-generator"

_STR = ctypes.c_char_p
_STRS = ctypes.POINTER(ctypes.c_char_p)
_BEGIN = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, _STR, _STR)
_TENSOR = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, _STR, _STR, _STR, ctypes.c_uint32,
                           ctypes.POINTER(ctypes.c_uint32), _STR, _STR, ctypes.c_uint64, ctypes.c_uint64)
_NODE = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, _STR, _STR, _STR, ctypes.c_uint32, _STRS, ctypes.c_uint32,
                         _STRS, _STR)
_IO = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_uint32, _STRS, ctypes.c_uint32, _STRS)


class _Api(ctypes.Structure):
    _fields_ = [("abi_version", ctypes.c_uint32), ("ctx", ctypes.c_void_p), ("begin_graph", _BEGIN),
                ("add_tensor", _TENSOR), ("add_node", _NODE), ("set_graph_io", _IO)]


def is_model_library(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an ELF file (a shared library; the loader judges the rest)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def _check_elf(p: Path) -> None:
    """Refuse what must not be opened: not ELF, truncated, another machine, not a model library."""
    try:
        info = read_elf(p)
    except ElfError as e:
        raise ModelLibraryError(f"{p}: {e}; {_REBUILD}") from None
    except OSError as e:
        raise ModelLibraryError(f"{p}: cannot be read ({e.strerror or e})") from None
    host = host_machine()
    if info.machine != host:
        raise ModelLibraryError(f"{p}: a library built for {info.machine}, but this machine is {host}; run it on "
                                f"an {info.machine} device, or build one for this machine with "
                                f"qnn-model-lib-generator -t {host_target()}")
    if not info.shared:
        raise ModelLibraryError(f"{p}: an ELF file but not a shared library; {_REBUILD}")
    missing = [s for s in ENTRY_POINTS if s not in info.symbols]
    if missing:
        what = ("not an openqnn model library (a library of another tool?)" if len(missing) == len(ENTRY_POINTS)
                else "an openqnn model library stripped of its entry points")
        raise ModelLibraryError(f"{p}: {what}: it does not export {', '.join(missing)}; give a library built by "
                                "qnn-model-lib-generator, or the model's _net.json")


def _open(p: Path) -> ctypes.CDLL:
    """dlopen ``p`` under a name no loaded library has: glibc hands back an already loaded library of the same
    name, which would be a stale one after a rebuild in this process."""
    with tempfile.TemporaryDirectory(prefix="openqnn-lib-") as tmp:
        link = Path(tmp) / p.name
        try:
            link.symlink_to(p.resolve())
            target = link
        except OSError:
            target = p
        try:
            lib = ctypes.CDLL(str(target), mode=os.RTLD_LOCAL | os.RTLD_NOW)
        except OSError as e:
            raise ModelLibraryError(f"{p}: cannot be loaded ({str(e)[:200]}); {_REBUILD}") from None
    abi = lib.openqnn_model_abi_version
    abi.restype, abi.argtypes = ctypes.c_uint32, []
    version = int(abi())
    if version != ABI_VERSION:
        raise ModelLibraryError(f"{p}: model library ABI version {version}, but this openqnn {__version__} speaks "
                                f"version {ABI_VERSION}; {_REBUILD} of this openqnn")
    return lib


def library_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The library's own description (name, target, weights: embedded or the file beside, openqnn version)."""
    p = Path(path)
    _check_elf(p)
    return _info(p, _open(p))


def _info(p: Path, lib: ctypes.CDLL) -> dict[str, Any]:
    fn = lib.openqnn_model_info
    fn.restype, fn.argtypes = ctypes.c_char_p, []
    try:
        info = json.loads((fn() or b"").decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        info = None
    if not isinstance(info, dict):
        raise ModelLibraryError(f"{p}: its openqnn_model_info() is not a JSON object; {_REBUILD}")
    return info


def _weights(p: Path, lib: ctypes.CDLL, info: dict[str, Any]) -> tuple[bytes | np.ndarray, Path]:
    """The model's weights file as bytes (embedded) or mapped (the file named beside the library)."""
    fn = lib.openqnn_model_weights
    fn.restype, fn.argtypes = ctypes.c_void_p, [ctypes.POINTER(ctypes.c_uint64)]
    size = ctypes.c_uint64(0)
    ptr = fn(ctypes.byref(size))
    if ptr:
        return ctypes.string_at(ptr, size.value), p
    name = info.get("weights_file")
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise ModelLibraryError(f"{p}: it embeds no weights and names no weights file; {_REBUILD}")
    beside = p.with_name(name)
    if not beside.is_file():
        raise ModelLibraryError(f"{p}: its weights file {beside} is missing; keep {name} beside the library")
    return np.memmap(beside, dtype=np.uint8, mode="r"), beside


def _entries(data: bytes | np.ndarray, where: Path) -> dict[int, Entry]:
    """The weights' arrays by absolute offset (the .cpp's references)."""
    view = memoryview(data).cast("B") if isinstance(data, bytes) else memoryview(data.data)
    try:
        return {e.offset: e for e in entries(view).values()}
    except ValueError as err:
        raise ModelLibraryError(f"{where}: the weights' {err}; {_REBUILD}") from None


class _Composer:
    """The callbacks' side: the library's declarations collected as a ``_net.json`` document."""

    def __init__(self, p: Path, data: bytes | np.ndarray, where: Path):
        self.p, self.data, self.where = p, data, where
        self.entries = _entries(data, where)
        self.doc: dict[str, Any] = {"format": "openqnn_net", "format_version": FORMAT_VERSION,
                                    "graph": {"inputs": [], "outputs": [], "tensors": {}, "nodes": {}}}
        self.blobs: dict[str, np.ndarray] = {}
        self.error: str | None = None
        self.calls = 0

    def _guard(self, what: str, fn: Any, *args: Any) -> int:
        if self.error is not None:
            return 1
        self.calls += 1
        try:
            fn(*args)
            return 0
        except ModelLibraryError as e:
            self.error = str(e)
        except Exception as e:  # anything a declaration provokes: the library's call at fault, named
            self.error = f"{what}: {type(e).__name__}: {e}"
        return 1

    @staticmethod
    def _s(v: bytes | None, what: str) -> str:
        if v is None:
            raise ModelLibraryError(f"{what} is NULL")
        return v.decode("utf-8")

    @staticmethod
    def _json(v: bytes | None, what: str) -> Any:
        text = (v or b"").decode("utf-8").strip()
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError as e:
            raise ModelLibraryError(f"{what} is not JSON ({e})") from None

    def begin(self, name: bytes | None, meta: bytes | None) -> None:
        m = self._json(meta, "the graph's metadata") or {}
        if not isinstance(m, dict):
            raise ModelLibraryError("the graph's metadata is not a JSON object")
        self.doc["graph_name"] = self._s(name, "the graph's name")
        self.doc["metadata"] = m.get("metadata", {})
        self.doc["converter_command"] = m.get("converter_command", "")

    def tensor(self, name: bytes | None, kind: bytes | None, dtype: bytes | None, rank: int, dims: Any,
               quant: bytes | None, layouts: bytes | None, offset: int, size: int) -> None:
        n = self._s(name, "a tensor's name")
        where = f"tensor {n!r}"
        tensors = self.doc["graph"]["tensors"]
        if n in tensors:
            raise ModelLibraryError(f"{where} is declared twice")
        entry: dict[str, Any] = {"id": len(tensors), "type": self._s(kind, f"{where}: its type"),
                                 "data_type": self._s(dtype, f"{where}: its data type"),
                                 "dims": [int(dims[i]) for i in range(rank)]}
        q = self._json(quant, f"{where}: its quantization")
        entry["quant_params"] = q if q is not None else {"definition": "QNN_DEFINITION_UNDEFINED",
                                                         "encoding": "QNN_QUANTIZATION_ENCODING_UNDEFINED"}
        lay = self._json(layouts, f"{where}: its layouts") or {}
        if not isinstance(lay, dict) or set(lay) - {"src_axis_format", "axis_format"}:
            raise ModelLibraryError(f"{where}: its layouts are not an object of src_axis_format and axis_format")
        entry.update(lay)
        tensors[n] = entry
        if offset == 2**64 - 1:
            return
        if entry["type"] in ("APP_WRITE", "APP_READ", "NATIVE"):
            raise ModelLibraryError(f"{where}: a {entry['type']} tensor with data; only STATIC tensors have data "
                                    "(give the others OPENQNN_NO_DATA)")
        hit = self.entries.get(offset)
        if hit is None or hit.size != size:
            raise ModelLibraryError(f"{where}: its data ({offset}, {size}) is no array of the weights "
                                    f"{self.where.name} (offsets and sizes are the converter's)")
        shape = hit.shape
        np_dtype = DTYPES.get(hit.dtype)
        if np_dtype is None:
            raise ModelLibraryError(f"{where}: its data has dtype {hit.dtype}, which openqnn does not read")
        arr: np.ndarray = np.frombuffer(self.data, dtype=np_dtype, count=int(np.prod(shape, dtype=np.int64)), offset=offset)
        self.blobs[n] = arr.reshape(shape)

    def node(self, name: bytes | None, package: bytes | None, op: bytes | None, n_in: int, ins: Any, n_out: int,
             outs: Any, params: bytes | None) -> None:
        n = self._s(name, "a node's name")
        where = f"node {n!r}"
        nodes = self.doc["graph"]["nodes"]
        if n in nodes:
            raise ModelLibraryError(f"{where} is declared twice")
        prm = self._json(params, f"{where}: its params") or {}
        if not isinstance(prm, dict) or set(prm) - {"scalar_params", "tensor_params"}:
            raise ModelLibraryError(f"{where}: its params are not an object of scalar_params and tensor_params")
        nodes[n] = {"package": self._s(package, f"{where}: its package"), "type": self._s(op, f"{where}: its type"),
                    "input_names": [self._s(ins[i], f"{where}: input {i}") for i in range(n_in)],
                    "output_names": [self._s(outs[i], f"{where}: output {i}") for i in range(n_out)],
                    "scalar_params": prm.get("scalar_params", {}), "tensor_params": prm.get("tensor_params", {})}

    def io(self, n_in: int, ins: Any, n_out: int, outs: Any) -> None:
        g = self.doc["graph"]
        g["inputs"] = [self._s(ins[i], f"input {i}") for i in range(n_in)]
        g["outputs"] = [self._s(outs[i], f"output {i}") for i in range(n_out)]


def _name(v: bytes | None) -> str:
    return repr(v.decode("utf-8", "replace")) if v is not None else "(NULL)"


def load_library(path: str | os.PathLike[str]) -> Graph:
    """The graph a model library composes, checked and verified as a ``_net.json`` is
    (:class:`~openqnn.errors.ModelLibraryError` for a foreign, truncated or stripped library)."""
    p = Path(path)
    if not p.is_file():
        raise ModelLibraryError(f"{p}: no such model library")
    _check_elf(p)
    lib = _open(p)
    info = _info(p, lib)
    data, where = _weights(p, lib, info)
    c = _Composer(p, data, where)
    api = _Api(ABI_VERSION, None,
               _BEGIN(lambda _c, a, b: c._guard("the graph", c.begin, a, b)),
               _TENSOR(lambda _c, *a: c._guard(f"tensor {_name(a[0])}", c.tensor, *a)),
               _NODE(lambda _c, *a: c._guard(f"node {_name(a[0])}", c.node, *a)),
               _IO(lambda _c, *a: c._guard("the graph's inputs and outputs", c.io, *a)))
    compose = lib.openqnn_compose
    compose.restype, compose.argtypes = ctypes.c_int32, [ctypes.POINTER(_Api)]
    status = int(compose(ctypes.byref(api)))
    if c.error is not None:
        raise ModelLibraryError(f"{p}: composing the graph failed at declaration {c.calls}: {c.error}; fix the "
                                f"model's .cpp and {_REBUILD}")
    if status != 0:
        raise ModelLibraryError(f"{p}: openqnn_compose returned {status}; fix the model's .cpp and {_REBUILD}")
    if "graph_name" not in c.doc:
        raise ModelLibraryError(f"{p}: the library declared no graph; {_REBUILD}")
    try:
        return graph_from_doc(c.doc, c.blobs, p, where, f"fix the model's .cpp and {_REBUILD}")
    except ModelLibraryError:
        raise
    except InvalidModelError as e:
        raise ModelLibraryError(str(e)) from None
