"""The context binary: one file holding prepared plans (JSON) and their arrays (safetensors), safe to open.

A context holds one or more graphs for one backend (and arch). Each graph is a JSON-able plan
document plus named arrays; the plan refers to its arrays by those names. Arrays are stored once
per content (sha256 of dtype, shape and bytes), so graphs sharing weights share storage.

Layout (integers little-endian; docs/context-binary.md has the byte table)::

    [0, 128)            fixed header: magic, format version, header size, writer's openqnn version,
                        file size, section offsets and lengths, the file's checksum (sha256 of its
                        1 MiB chunks' crc32s, computed in parallel: corruption, not forgery)
    [128, m)            metadata: UTF-8 JSON (backend, arch, graph names, per graph: plan, array names)
    [m, t)              zero padding to a 64-byte boundary
    [t, end)            a safetensors block, its header padded with spaces so that the data starts
                        on a 64-byte boundary; arrays sorted by item size, so each is naturally aligned

Reading validates everything before returning (magic, version, sizes, checksum, the metadata's
schema, every array's dtype, shape and extent, every reference) and memory-maps the arrays
(read-only views of a copy-on-write mapping, zero-copy). Nothing in a context is executed: no pickle, no code, only data that the
runtime binds to its own registered kernels. Every refusal is one :class:`ContextError` line that
names the file and the mismatch.

Example::

    write_context("ctx.bin", backend="htp", arch="v73",
                  graphs={"g": {"steps": [...]}}, arrays={"g": {"w0": weights}})
    ctx = read_context("ctx.bin", backend="htp", arch="v73")
    ctx.graphs["g"].arrays["w0"]        # a read-only view on the mapped file
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import mmap
import os
import struct
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from openqnn._version import __version__
from openqnn.errors import ContextError
from openqnn.serialization.tensorfile import DTYPES
from openqnn.workers import worker_pool

__all__ = [
    "ALIGNMENT",
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "MAGIC",
    "READABLE_FORMAT_VERSIONS",
    "ContextFile",
    "ContextGraph",
    "ContextHeader",
    "describe_context",
    "file_checksum",
    "read_context",
    "write_context",
]

MAGIC = b"OQNNCTX\x00"
FORMAT_VERSION = 2
READABLE_FORMAT_VERSIONS = (2,)  # version 1 had a plain sha256 of the file (slower to open)
HEADER_SIZE = 128
ALIGNMENT = 64

# The prefix (magic, format version, header size, writer's openqnn version) is the same in every
# format version, so that a reader can always say which version, from which openqnn, it refuses.
_PREFIX = struct.Struct("<8sII32s")
# format version 2: file size, metadata offset and length, arrays offset and length, checksum, reserved
_V1 = struct.Struct("<QQQQQ32s8x")
assert _PREFIX.size + _V1.size == HEADER_SIZE
_DIGEST_AT = _PREFIX.size + 5 * 8  # the checksum covers every byte of the file, its own 32 read as zeros
_DIGEST_END = _DIGEST_AT + 32
CHECKSUM_CHUNK = 1 << 20

# safetensors dtype code -> numpy dtype (little-endian). Nothing else is ever read: no object dtypes.
_DTYPES = DTYPES  # the safetensors codes
_CODES = {(dt.kind, dt.itemsize): code for code, dt in _DTYPES.items()}
_ALLOWED = ", ".join(dt.name for dt in _DTYPES.values())

_META_KEYS = ("backend", "arch", "graph_names", "graphs")
_GRAPH_KEYS = ("plan", "arrays")
_MAX_ST_HEADER = 100 << 20  # a safetensors header larger than this is corrupt (safetensors' own limit)
_REGENERATE = "regenerate it with qnn-context-binary-generator"


@dataclass(frozen=True)
class ContextHeader:
    """What a context says about itself: the fixed header and the metadata's head."""

    magic: bytes
    format_version: int
    openqnn_version: str  # the openqnn that wrote it
    backend: str
    arch: str | None
    graph_names: tuple[str, ...]
    checksum: str  # hex: sha256 of the file's 1 MiB chunks' crc32s (see :func:`file_checksum`)
    file_size: int
    metadata_offset: int
    metadata_length: int
    arrays_offset: int
    arrays_length: int

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["magic"] = self.magic.decode("ascii").rstrip("\x00")
        d["graph_names"] = list(self.graph_names)
        return d


@dataclass(frozen=True)
class ContextGraph:
    """One graph of a context: its plan, its arrays by the names the plan uses, and where each is stored."""

    name: str
    plan: dict[str, Any]
    arrays: dict[str, np.ndarray]  # read-only
    array_keys: dict[str, str]  # local name -> content key of the stored array


@dataclass(frozen=True)
class ContextFile:
    """A context binary, validated and mapped: the header and its graphs in file order. Read with
    ``defer_checksum``, its checksum may still be running: :meth:`verify` waits for it and refuses a corrupt
    file; nothing may run on the contents before."""

    path: Path
    header: ContextHeader
    graphs: dict[str, ContextGraph]
    pending: _Checksum | None = field(default=None, repr=False, compare=False)

    def verify(self) -> None:
        """Wait for a deferred checksum (nothing where it was checked on reading); ContextError on a mismatch."""
        if self.pending is not None:
            self.pending.verify()


class _Checksum:
    """The file's checksum against the one its header records, computed at once or in a worker thread
    (``defer``) while the caller goes on: zlib's crc32 releases the GIL, so parsing and binding the contents
    meanwhile hide its time. :meth:`verify` waits for it and raises on a mismatch (every time it is asked)."""

    def __init__(self, p: Path, buf: mmap.mmap | bytes, recorded: bytes, defer: bool):
        self.p, self.recorded = p, recorded
        # deferred: one worker, the chunks in turn (a job that waited on more jobs of the same pool could
        # starve it)
        self._job = worker_pool().submit(file_checksum, buf, False) if defer else None
        self._digest = None if defer else file_checksum(buf)

    def verify(self) -> bytes:
        if self._digest is None:
            assert self._job is not None
            self._digest = self._job.result()
        if self._digest != self.recorded:
            raise ContextError(f"{self.p}: checksum mismatch, the file is corrupt (checksum {self._digest.hex()[:16]}..., "
                               f"its header records {self.recorded.hex()[:16]}...); {_REGENERATE}")
        return self._digest


# ---------------------------------------------------------------------------------------------- write


def write_context(path: str | os.PathLike[str], *, backend: str, arch: str | None,
                  graphs: Mapping[str, Mapping[str, Any]],
                  arrays: Mapping[str, Mapping[str, np.ndarray]] | None = None) -> ContextHeader:
    """Write graphs (name -> JSON-able plan) and their named arrays (name -> {array name -> array}) to
    ``path`` as one context for ``backend`` / ``arch``. Equal arrays (dtype, shape, bytes) are stored once.

    The file is written under a temporary name and renamed, so an error leaves nothing behind. JSON
    turns tuples into lists; non-finite floats are written as Python's json writes them (NaN, Infinity).
    """
    from openqnn.serialization.netjson import atomic_write

    path = Path(path)
    arrays = dict(arrays or {})
    _check_write_args(backend, arch, graphs, arrays)
    writer = __version__.encode("ascii")
    if len(writer) > 32:
        raise ValueError(f"openqnn version {__version__!r} does not fit the 32-byte header field")

    stored: dict[str, np.ndarray] = {}
    meta_graphs: dict[str, Any] = {}
    for gname, plan in graphs.items():
        keys: dict[str, str] = {}
        for local, value in arrays.get(gname, {}).items():
            a = _storable(value, path, gname, local)
            keys[local] = key = _content_key(a)
            stored.setdefault(key, a)
        meta_graphs[gname] = {"plan": plan, "arrays": keys}
    meta = {"backend": backend, "arch": arch, "graph_names": list(graphs), "graphs": meta_graphs}
    try:
        meta_bytes = json.dumps(meta, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as e:
        raise ContextError(f"{path}: a plan is not a JSON document ({type(e).__name__}: {e}); plans hold JSON "
                           "values only, arrays go in `arrays` and the plan names them") from None

    # the safetensors block (its data starts 64-byte aligned, and holds no gaps): first the arrays whose size is a
    # multiple of 64 bytes, so each of them starts 64-byte aligned (the native kernels' packed weights, read in place
    # with AVX-512 loads), then the others by item size, biggest first, so every array is aligned to its item size
    order = sorted(stored.items(), key=lambda kv: (kv[1].nbytes % 64 != 0, -kv[1].dtype.itemsize, kv[0]))
    st_header: dict[str, Any] = {}
    end = 0
    for key, a in order:
        st_header[key] = {"dtype": _CODES[a.dtype.kind, a.dtype.itemsize], "shape": list(a.shape),
                          "data_offsets": [end, end + a.nbytes]}
        end += a.nbytes
    st_json = json.dumps(st_header, separators=(",", ":")).encode("ascii")
    arrays_offset = _align(HEADER_SIZE + len(meta_bytes))
    data_start = arrays_offset + 8 + len(st_json)
    st_json += b" " * (_align(data_start) - data_start)  # safetensors allows trailing spaces in its header
    arrays_length = 8 + len(st_json) + end
    file_size = arrays_offset + arrays_length

    header = bytearray(_PREFIX.pack(MAGIC, FORMAT_VERSION, HEADER_SIZE, writer)
                       + _V1.pack(file_size, HEADER_SIZE, len(meta_bytes), arrays_offset, arrays_length, bytes(32)))
    payload = [meta_bytes, bytes(arrays_offset - HEADER_SIZE - len(meta_bytes)), struct.pack("<Q", len(st_json)),
               st_json]
    crcs = _ChunkCrcs()
    with atomic_write(path, "wb") as f:
        for chunk in (header, *payload, *(a.reshape(-1).view(np.uint8) for _, a in order)):
            crcs.update(chunk)  # the header's checksum field is still zero, as the checksum reads it
            f.write(chunk)
        digest = crcs.digest()
        header[_DIGEST_AT:_DIGEST_END] = digest
        f.seek(0)
        f.write(header)
        f.flush()
        os.fsync(f.fileno())
    return ContextHeader(MAGIC, FORMAT_VERSION, __version__, backend, arch, tuple(graphs), digest.hex(),
                         file_size, HEADER_SIZE, len(meta_bytes), arrays_offset, arrays_length)


class _ChunkCrcs:
    """:func:`file_checksum` of bytes given piece by piece (the writer's side)."""

    def __init__(self) -> None:
        self.crcs: list[int] = []
        self.crc, self.filled = 0, 0

    def update(self, data: Any) -> None:
        with memoryview(data) as view, view.cast("B") as b:
            while len(b):
                take = min(len(b), CHECKSUM_CHUNK - self.filled)
                self.crc = zlib.crc32(b[:take], self.crc)
                self.filled += take
                b = b[take:]
                if self.filled == CHECKSUM_CHUNK:
                    self.crcs.append(self.crc)
                    self.crc, self.filled = 0, 0

    def digest(self) -> bytes:
        crcs = self.crcs + ([self.crc] if self.filled or not self.crcs else [])
        return hashlib.sha256(struct.pack(f"<{len(crcs)}I", *crcs)).digest()


def file_checksum(buf: mmap.mmap | bytes | bytearray, parallel: bool = True) -> bytes:
    """The checksum a context's header records: sha256 of the little-endian crc32 of each 1 MiB chunk
    of the file, its checksum field read as zeros. The chunks are checked in parallel (zlib releases the
    GIL), so opening costs a fraction of a full sha256; the header is in the same file, so no checksum
    could prove who wrote it: this one finds corruption (any flipped byte, truncation, splices). ``parallel=False``:
    the chunks in turn, on this thread."""
    size = len(buf)
    with memoryview(buf) as view:
        # the first chunk with the checksum field read as zeros, without copying it
        end = min(size, CHECKSUM_CHUNK)
        first = zlib.crc32(view[:min(end, _DIGEST_AT)])
        first = zlib.crc32(bytes(max(0, min(end, _DIGEST_END) - _DIGEST_AT)), first)
        first = zlib.crc32(view[min(end, _DIGEST_END):end], first)
        rest = [view[i:i + CHECKSUM_CHUNK] for i in range(CHECKSUM_CHUNK, size, CHECKSUM_CHUNK)]
        # a few runs of chunks, one per worker and this thread: each handoff to a worker costs about as
        # much as a chunk's crc, so one task per chunk would be slower than none
        runs = min(len(rest) // 4, (os.cpu_count() or 1)) if parallel else 1
        if runs > 1:
            bounds = [len(rest) * i // runs for i in range(runs + 1)]
            groups = [rest[a:b] for a, b in itertools.pairwise(bounds)]
            later = [worker_pool().submit(_crcs, g) for g in groups[1:]]
            crcs = [first, *_crcs(groups[0])]
            for fut in later:
                crcs += fut.result()
        else:
            crcs = [first, *_crcs(rest)]
        for part in rest:
            part.release()
    return hashlib.sha256(struct.pack(f"<{len(crcs)}I", *crcs)).digest()


def _crcs(chunks: list[memoryview]) -> list[int]:
    return [zlib.crc32(c) for c in chunks]


def _check_write_args(backend: Any, arch: Any, graphs: Mapping[str, Any], arrays: Mapping[str, Any]) -> None:
    if not isinstance(backend, str) or not backend:
        raise ValueError(f"backend must be a non-empty string, not {backend!r}")
    if arch is not None and (not isinstance(arch, str) or not arch):
        raise ValueError(f"arch must be None or a non-empty string, not {arch!r}")
    if not graphs:
        raise ValueError("a context holds at least one graph")
    for name, plan in graphs.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"graph names are non-empty strings, not {name!r}")
        if not isinstance(plan, Mapping):
            raise ValueError(f"graph {name!r}: a plan is a JSON object (a dict), not {type(plan).__name__}")
    extra = [n for n in arrays if n not in graphs]
    if extra:
        raise ValueError(f"arrays given for graph(s) {extra} that are not in graphs ({list(graphs)})")


def _storable(value: Any, path: Path, graph: str, name: str) -> np.ndarray:
    """``value`` as a C-contiguous little-endian array of an allowed dtype."""
    if not isinstance(value, (np.ndarray, np.generic)) or not isinstance(name, str) or not name:
        raise ValueError(f"graph {graph!r}: array {name!r} must be a numpy array under a non-empty name, "
                         f"not {type(value).__name__}")
    dt = value.dtype
    if (dt.kind, dt.itemsize) not in _CODES or dt.fields is not None or dt.subdtype is not None:
        raise ContextError(f"{path}: graph {graph!r} array {name!r} has dtype {dt}, which a context cannot hold "
                           f"(allowed: {_ALLOWED})")
    return np.asarray(value, dtype=dt.newbyteorder("<"), order="C")


def _content_key(a: np.ndarray) -> str:
    h = hashlib.sha256(f"{_CODES[a.dtype.kind, a.dtype.itemsize]}{list(a.shape)}".encode("ascii"))
    h.update(a.reshape(-1).view(np.uint8).data)
    return h.hexdigest()


def _align(n: int) -> int:
    return -(-n // ALIGNMENT) * ALIGNMENT


# ----------------------------------------------------------------------------------------------- read


def read_context(path: str | os.PathLike[str], *, backend: str | None = None, arch: str | None = None,
                 defer_checksum: bool = False) -> ContextFile:
    """Open, validate and map the context binary ``path``; with ``backend`` / ``arch``, refuse a context
    made for another. Raises :class:`ContextError` (one line naming the file and the mismatch).

    ``defer_checksum``: the checksum runs in a worker thread while the rest is read (and the caller binds);
    :meth:`ContextFile.verify` waits for it and must be called before anything runs. Whatever fails meanwhile,
    a corrupt file is refused as corrupt: the checksum is waited for first."""
    p = Path(path)
    buf = _map(p)
    pending: list[_Checksum] = []
    try:
        return _read(p, buf, backend, arch, defer_checksum, pending)
    except BaseException:
        if pending:
            pending[0].verify()  # raises the mismatch, if that is what went wrong
        raise


def _read(p: Path, buf: mmap.mmap | bytes, backend: str | None, arch: str | None, defer: bool,
          pending: list[_Checksum]) -> ContextFile:
    header, meta = _parse_header_and_metadata(p, buf, defer, pending)
    if backend is not None and header.backend != backend:
        raise ContextError(f"{p}: a context for backend {header.backend}, but backend {backend} was asked for; "
                           f"use the {backend} context or regenerate it with qnn-context-binary-generator "
                           f"--backend {backend}")
    if arch is not None and header.arch != arch:
        raise ContextError(f"{p}: a context for arch {header.arch or '(none)'}, but arch {arch} was asked for; "
                           f"regenerate it for {arch} with qnn-context-binary-generator")
    stored = _read_arrays(p, buf, header)
    graphs: dict[str, ContextGraph] = {}
    used: set[str] = set()
    for gname in header.graph_names:
        g = meta["graphs"][gname]
        keys: dict[str, str] = g["arrays"]
        used.update(keys.values())
        if not used <= stored.keys():  # (set operations: a graph refers to hundreds of arrays)
            local, key = next((n, k) for n, k in keys.items() if k not in stored)
            raise ContextError(f"{p}: graph {_q(gname)} array {_q(local)} refers to stored array {_q(key)}, "
                               f"which the file does not hold; {_REGENERATE}")
        graphs[gname] = ContextGraph(gname, g["plan"], {n: stored[k] for n, k in keys.items()}, dict(keys))
    unused = sorted(stored.keys() - used) if len(used) != len(stored) else []
    if unused:
        raise ContextError(f"{p}: stored array {_q(unused[0])} is used by no graph ({len(unused)} unused); "
                           f"{_REGENERATE}")
    return ContextFile(p, header, graphs, pending[0] if defer else None)


def _map(p: Path) -> mmap.mmap | bytes:
    try:
        if p.is_dir():
            raise ContextError(f"{p}: is a folder; give the path of a context binary file")
        if not p.is_file():
            raise ContextError(f"{p}: no such context binary file")
        with open(p, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                return b""
            # copy-on-write: the arrays are read-only views, but a kernel handed one without a copy could
            # never fault on it nor reach the file (pages are shared with the page cache until written)
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    except OSError as e:
        raise ContextError(f"{p}: cannot be read ({e.strerror or e}); check the path and its permissions") from None


def _parse_header_and_metadata(p: Path, buf: mmap.mmap | bytes, defer: bool = False,
                               pending: list[_Checksum] | None = None) -> tuple[ContextHeader, dict[str, Any]]:
    size = len(buf)
    if size == 0:
        raise _truncated(p, size, "an empty file")
    head = bytes(buf[:len(MAGIC)])
    if head != MAGIC[:len(head)]:
        raise ContextError(f"{p}: not an openqnn context binary (it starts with {head!r}, not {MAGIC!r}); "
                           "give a file written by qnn-context-binary-generator")
    if size < _PREFIX.size:
        raise _truncated(p, size, f"shorter than the {HEADER_SIZE}-byte header")
    _, version, header_size, raw_writer = _PREFIX.unpack_from(buf, 0)
    writer = "".join(chr(c) if 0x21 <= c < 0x7F else "?" for c in raw_writer.rstrip(b"\x00")) or "?"
    if version > FORMAT_VERSION:
        raise ContextError(f"{p}: context format version {version} (written by openqnn {writer}) is newer "
                           f"than this openqnn {__version__} reads (format version {FORMAT_VERSION}); upgrade "
                           "openqnn, or regenerate the context with this one's qnn-context-binary-generator")
    if version not in READABLE_FORMAT_VERSIONS:
        raise ContextError(f"{p}: context format version {version} is not one this openqnn {__version__} reads "
                           f"({', '.join(map(str, READABLE_FORMAT_VERSIONS))}); {_REGENERATE}")
    if header_size != HEADER_SIZE:
        raise ContextError(f"{p}: corrupt header (header size {header_size}; format version {version} has "
                           f"{HEADER_SIZE}); {_REGENERATE}")
    if size < HEADER_SIZE:
        raise _truncated(p, size, f"shorter than the {HEADER_SIZE}-byte header")
    file_size, meta_off, meta_len, arr_off, arr_len, recorded = _V1.unpack_from(buf, _PREFIX.size)
    if size < file_size:
        raise _truncated(p, size, f"its header records {file_size}")
    if size > file_size:
        raise ContextError(f"{p}: {size} bytes, but its header records {file_size}: corrupt, or something was "
                           f"appended; {_REGENERATE}")
    if not (meta_off == HEADER_SIZE and arr_off == _align(meta_off + meta_len) and arr_off + arr_len == file_size):
        raise ContextError(f"{p}: corrupt header (metadata at {meta_off}+{meta_len}, arrays at {arr_off}+{arr_len} "
                           f"do not tile a file of {file_size} bytes); {_REGENERATE}")
    check = _Checksum(p, buf, recorded, defer)
    if pending is not None:
        pending.append(check)
    if not defer:
        check.verify()
    # from here on the bytes are the ones the writer wrote (deferred: will have been, once verified): what
    # fails now is a writer's bug or a forgery
    if any(buf[_DIGEST_END:HEADER_SIZE]) or any(buf[meta_off + meta_len:arr_off]):
        raise ContextError(f"{p}: reserved or padding bytes are not zero; {_REGENERATE}")
    if not raw_writer.rstrip(b"\x00") or b"\x00" in raw_writer.rstrip(b"\x00") or not all(
            0x21 <= c < 0x7F for c in raw_writer.rstrip(b"\x00")):
        raise ContextError(f"{p}: the header's openqnn version {raw_writer!r} is not a version; {_REGENERATE}")
    meta = _load_json(p, bytes(buf[meta_off:meta_off + meta_len]), "metadata")
    _check_metadata(p, meta)
    header = ContextHeader(MAGIC, version, writer, meta["backend"], meta["arch"], tuple(meta["graph_names"]),
                           recorded.hex(), file_size, meta_off, meta_len, arr_off, arr_len)
    return header, meta


def _truncated(p: Path, size: int, expected: str) -> ContextError:
    return ContextError(f"{p}: truncated: {size} bytes, {expected}; {_REGENERATE}")


def _load_json(p: Path, data: bytes, what: str, duplicates: bool = False) -> Any:
    """``data`` parsed; a key given twice in an object is refused unless ``duplicates`` (the caller's own checks
    refuse what one would do: the hook that finds them costs a Python call per object)."""
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        d = dict(pairs)
        if len(d) != len(pairs):
            dup = next(k for i, (k, _) in enumerate(pairs) if any(k == k2 for k2, _ in pairs[:i]))
            raise ValueError(f"duplicate key {_q(dup)}")
        return d

    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=None if duplicates else no_duplicates)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:  # JSONDecodeError is a ValueError
        msg = (str(e).splitlines() or [""])[0][:200]
        raise ContextError(f"{p}: its {what} is not valid JSON ({type(e).__name__}: {msg}); {_REGENERATE}") from None


def _check_metadata(p: Path, meta: Any) -> None:
    def fail(where: str, problem: str) -> ContextError:
        return ContextError(f"{p}: metadata {where}: {problem}; {_REGENERATE}")

    def exact_keys(d: Any, keys: tuple[str, ...], where: str) -> None:
        if not isinstance(d, dict):
            raise fail(where, f"a JSON object was expected, not {_json_type(d)}")
        missing = [k for k in keys if k not in d]
        if missing:
            raise fail(where, f"missing key {_q(missing[0])}")
        unknown = [k for k in d if k not in keys]
        if unknown:
            raise fail(where, f"unknown key {_q(unknown[0])} (expected {', '.join(keys)})")

    def name(v: Any, where: str) -> None:
        if not isinstance(v, str) or not v:
            raise fail(where, f"a non-empty string was expected, not {_json_type(v)}")

    exact_keys(meta, _META_KEYS, "(top level)")
    name(meta["backend"], "backend")
    if meta["arch"] is not None:
        name(meta["arch"], "arch")
    names = meta["graph_names"]
    if not isinstance(names, list) or not names:
        raise fail("graph_names", f"a non-empty list was expected, not {_json_type(names)}")
    for i, n in enumerate(names):
        name(n, f"graph_names[{i}]")
    if len(set(names)) != len(names):
        raise fail("graph_names", "a graph name appears twice")
    graphs = meta["graphs"]
    if not isinstance(graphs, dict) or set(graphs) != set(names):
        raise fail("graphs", "its graphs are not the ones graph_names lists")
    for gname in names:
        where = f"graphs[{_q(gname)}]"
        exact_keys(graphs[gname], _GRAPH_KEYS, where)
        if not isinstance(graphs[gname]["plan"], dict):
            raise fail(f"{where}.plan", f"a JSON object was expected, not {_json_type(graphs[gname]['plan'])}")
        refs = graphs[gname]["arrays"]
        if not isinstance(refs, dict):
            raise fail(f"{where}.arrays", f"a JSON object was expected, not {_json_type(refs)}")
        if not _all_keys(list(refs.values())) or "" in refs:
            for local, key in refs.items():
                if not local:
                    raise fail(f"{where}.arrays", "an array name is empty")
                if not isinstance(key, str) or len(key) != 64 or key.strip("0123456789abcdef"):
                    raise fail(f"{where}.arrays[{_q(local)}]", "a stored array's key (64 hex digits) was expected")


def _all_keys(keys: list[Any]) -> bool:
    """Whether every item is a stored array's key, 64 lowercase hex digits: all at once, in C (a graph names
    hundreds); the one at fault is looked for only when something is."""
    try:
        joined = "".join(keys).encode("ascii")
    except (TypeError, UnicodeEncodeError):
        return False
    return set(map(len, keys)) <= {64} and not joined.translate(None, b"0123456789abcdef")


def _read_arrays(p: Path, buf: mmap.mmap | bytes, h: ContextHeader) -> dict[str, np.ndarray]:
    """The safetensors block's arrays as read-only views on ``buf``, after checking its every entry."""
    def fail(problem: str) -> ContextError:
        return ContextError(f"{p}: arrays block: {problem}; {_REGENERATE}")

    if h.arrays_length < 8:
        raise fail("shorter than its 8-byte length field")
    (n,) = struct.unpack_from("<Q", buf, h.arrays_offset)
    if n > min(h.arrays_length - 8, _MAX_ST_HEADER):
        raise fail(f"its header length {n} runs past the block ({h.arrays_length - 8} bytes)")
    data_start = h.arrays_offset + 8 + n
    if data_start % ALIGNMENT:
        raise fail(f"its data starts at byte {data_start}, not on a {ALIGNMENT}-byte boundary")
    data_len = h.arrays_length - 8 - n
    # (a key given twice would leave a span of the data uncovered, which the check below refuses: no need to
    # look for duplicate keys while parsing)
    entries = _load_json(p, bytes(buf[h.arrays_offset + 8:data_start]), "arrays block header", duplicates=True)
    if not isinstance(entries, dict):
        raise fail(f"its header is {_json_type(entries)}, not a JSON object")
    entries = dict(entries)
    extra = entries.pop("__metadata__", {})
    if not isinstance(extra, dict) or not all(isinstance(v, str) for v in extra.values()):
        raise fail("__metadata__ is not an object of strings")
    spans: list[tuple[int, int, str, np.dtype, tuple[int, ...]]] = []
    for key, e in entries.items():
        if type(e) is not dict or len(e) != 3 or "dtype" not in e or "shape" not in e or "data_offsets" not in e:
            raise fail(f"entry {_q(key)} does not have exactly dtype, shape and data_offsets")
        code, shape, offs = e["dtype"], e["shape"], e["data_offsets"]
        dtype = _DTYPES.get(code) if type(code) is str else None
        if dtype is None:
            raise fail(f"array {_q(key)} has dtype {_q(str(code))}, which is not allowed ({', '.join(_DTYPES)})")
        if type(shape) is not list or not all(type(d) is int and d >= 0 for d in shape):
            raise fail(f"array {_q(key)} has shape {_q(str(shape))}, not a list of non-negative integers")
        if (type(offs) is not list or len(offs) != 2 or type(offs[0]) is not int or type(offs[1]) is not int
                or offs[0] < 0 or offs[1] < 0):
            raise fail(f"array {_q(key)} has data_offsets {_q(str(offs))}, not [begin, end]")
        begin, stop = offs
        if stop - begin != math.prod(shape) * dtype.itemsize:
            raise fail(f"array {_q(key)} holds {stop - begin} bytes, but dtype {dtype.name} and shape "
                       f"{shape} need {math.prod(shape) * dtype.itemsize}")
        spans.append((begin, stop, key, dtype, tuple(shape)))
    spans.sort()
    end = 0
    for begin, stop, key, _, _ in spans:
        if begin != end:
            raise fail(f"array {_q(key)} starts at {begin}, not where the previous one ends ({end}): the data must "
                       "be covered exactly once")
        end = stop
    if end != data_len:
        raise fail(f"its arrays cover {end} bytes of its {data_len}-byte data")
    out: dict[str, np.ndarray] = {}
    # one read-only view of the data, sliced per array (a frombuffer per array costs ~20 us on a mapping, a slice
    # ~1; the slices inherit its read-only flag)
    data = np.frombuffer(buf, np.uint8, data_len, data_start) if data_len else np.zeros(0, np.uint8)
    data.flags.writeable = False
    for begin, stop, key, dtype, shape in spans:
        if begin == stop:
            a = np.zeros(shape, dtype)
            a.flags.writeable = False
        else:
            raw = data[begin:stop]
            if dtype.kind == "b" and raw.max() > 1:
                raise fail(f"bool array {_q(key)} holds bytes other than 0 and 1")
            if begin % dtype.itemsize:
                raw = raw.copy()
                raw.flags.writeable = False
            a = raw.view(dtype).reshape(shape)
        out[key] = a
    return out


def _json_type(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


def _q(s: str, limit: int = 80) -> str:
    """A string from the file, quoted for a one-line message (control characters escaped, long ones cut)."""
    text = json.dumps(s[:limit])
    return text if len(s) <= limit else text[:-1] + '..."'


# ------------------------------------------------------------------------------------------- describe


def describe_context(path: str | os.PathLike[str] | ContextFile, *, include_plans: bool = False) -> dict[str, Any]:
    """A JSON-able summary of a context binary (what ``qnn-context-binary-utility`` writes): the header,
    each graph's arrays (name, dtype, shape, bytes, stored key) and the total and deduplicated sizes.
    ``include_plans`` adds each graph's plan. Validates the file as :func:`read_context` does (or takes
    one read already)."""
    ctx = path if isinstance(path, ContextFile) else read_context(path)
    graphs: dict[str, Any] = {}
    stored: dict[str, int] = {}
    referenced = referenced_bytes = 0
    for gname, g in ctx.graphs.items():
        rows = [{"name": n, "dtype": a.dtype.name, "shape": list(a.shape), "bytes": int(a.nbytes),
                 "stored_as": g.array_keys[n]} for n, a in g.arrays.items()]
        total = sum(r["bytes"] for r in rows)
        graphs[gname] = {"array_count": len(rows), "array_bytes": total, "arrays": rows}
        if include_plans:
            graphs[gname]["plan"] = g.plan
        referenced += len(rows)
        referenced_bytes += total
        stored.update((r["stored_as"], r["bytes"]) for r in rows)
    return {"context_binary": str(ctx.path), "header": ctx.header.to_json(), "graphs": graphs,
            "arrays": {"referenced": referenced, "referenced_bytes": referenced_bytes, "stored": len(stored),
                       "stored_bytes": sum(stored.values())}}
