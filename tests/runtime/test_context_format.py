"""The context binary container: round trips, deduplication, and a one-line refusal of every bad file.

The byte layout is restated here from docs/context-binary.md (not imported from the module), so the
tests check the documented format rather than the code against itself.
"""

from __future__ import annotations

import ast
import hashlib
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from openqnn._version import __version__
from openqnn.cli import context_binary_utility
from openqnn.errors import ContextError, InvalidModelError
from openqnn.runtime.context_format import describe_context, read_context, write_context

SRC = Path(__file__).resolve().parents[2] / "src" / "openqnn"

# docs/context-binary.md: the 128-byte header
HEADER = struct.Struct("<8sII32sQQQQQ32s8x")
DIGEST = slice(88, 120)
ALL_DTYPES = ["float32", "float16", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
              "uint64", "bool"]


def _arrays() -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    shared = rng.standard_normal((16, 8)).astype(np.float32)
    return {
        "encoder": {"w": shared, "b": rng.standard_normal(8).astype(np.float16),
                    "idx": np.arange(5, dtype=np.int64), "mask": np.array([True, False, True])},
        "decoder": {"w_tied": shared.copy(), "q": rng.integers(-128, 127, (4, 4), dtype=np.int8),
                    "scale": np.array(0.5, np.float32), "none": np.zeros((0, 3), np.int32)},
    }


PLANS = {"encoder": {"steps": [{"kernel": "conv2d", "inputs": ["x", "w", "b"], "attrs": {"pad": [1, 1]}}]},
         "decoder": {"steps": [{"kernel": "matmul", "inputs": ["h", "w_tied"]}], "note": "tied weights"}}


@pytest.fixture
def ctx_file(tmp_path: Path) -> Path:
    path = tmp_path / "ctx.bin"
    write_context(path, backend="htp", arch="v73", graphs=PLANS, arrays=_arrays())
    return path


def _refusal(path: Path, **kw: str) -> str:
    """read_context's error: a ContextError (never another exception), on one line naming the file."""
    with pytest.raises(ContextError) as e:
        read_context(path, **kw)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg, msg
    return msg


# ------------------------------------------------------------------------------------------ round trip


def test_round_trip_several_graphs(ctx_file: Path) -> None:
    want = _arrays()
    ctx = read_context(ctx_file, backend="htp", arch="v73")
    assert list(ctx.graphs) == ["encoder", "decoder"]
    assert ctx.header.graph_names == ("encoder", "decoder")
    assert (ctx.header.backend, ctx.header.arch, ctx.header.openqnn_version) == ("htp", "v73", __version__)
    assert ctx.header.format_version == 2 and ctx.header.file_size == ctx_file.stat().st_size
    for gname, arrays in want.items():
        g = ctx.graphs[gname]
        assert g.plan == PLANS[gname]
        assert set(g.arrays) == set(arrays)
        for name, a in arrays.items():
            got = g.arrays[name]
            assert got.dtype == a.dtype and got.shape == a.shape and np.array_equal(got, a), (gname, name)
            assert not got.flags.writeable
    # the tied weight is one stored array, one object in memory
    assert ctx.graphs["encoder"].array_keys["w"] == ctx.graphs["decoder"].array_keys["w_tied"]
    assert ctx.graphs["encoder"].arrays["w"] is ctx.graphs["decoder"].arrays["w_tied"]


def test_shared_arrays_are_stored_once(tmp_path: Path, rng: np.random.Generator) -> None:
    big = rng.standard_normal((256, 256)).astype(np.float32)  # 256 KiB
    graphs = {f"g{i}": {"i": i} for i in range(4)}
    shared = tmp_path / "shared.bin"
    write_context(shared, backend="cpu", arch=None, graphs=graphs, arrays={g: {"w": big} for g in graphs})
    distinct = tmp_path / "distinct.bin"
    write_context(distinct, backend="cpu", arch=None, graphs=graphs,
                  arrays={g: {"w": big + i} for i, g in enumerate(graphs)})
    assert shared.stat().st_size < big.nbytes + 4096
    assert distinct.stat().st_size > 4 * big.nbytes
    info = describe_context(shared)["arrays"]
    assert info == {"referenced": 4, "referenced_bytes": 4 * big.nbytes, "stored": 1, "stored_bytes": big.nbytes}
    # equal bytes under another dtype or shape are different arrays
    path = tmp_path / "views.bin"
    write_context(path, backend="cpu", arch=None, graphs={"g": {}},
                  arrays={"g": {"a": big, "b": big.view(np.int32), "c": big.reshape(-1)}})
    assert describe_context(path)["arrays"]["stored"] == 3


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_every_dtype_and_shape(tmp_path: Path, rng: np.random.Generator, dtype: str) -> None:
    base = rng.integers(0, 2, (3, 4, 5)) if dtype == "bool" else rng.integers(0, 100, (3, 4, 5))
    a = base.astype(dtype)
    arrays = {"full": a, "scalar": a.reshape(-1)[7].copy().reshape(()), "empty": a[:0], "empty_inner": a[:, :0],
              "strided": a[:, ::2, 1:], "fortran": np.asfortranarray(a), "big_endian": a.astype(a.dtype.newbyteorder(">"))}
    path = tmp_path / "c.bin"
    write_context(path, backend="cpu", arch=None, graphs={"g": {}}, arrays={"g": arrays})
    got = read_context(path).graphs["g"].arrays
    for name, want in arrays.items():
        assert got[name].dtype == np.dtype(dtype) and got[name].shape == want.shape, name
        assert np.array_equal(got[name], want), name


def test_arrays_are_mapped_aligned_and_a_safetensors_block(ctx_file: Path) -> None:
    from safetensors.numpy import load

    raw = ctx_file.read_bytes()
    _, _, _, _, size, meta_off, meta_len, arr_off, arr_len, _ = HEADER.unpack_from(raw)
    assert arr_off % 64 == 0 and size == arr_off + arr_len == len(raw) and meta_off == 128
    assert 0 <= arr_off - (meta_off + meta_len) < 64
    (n,) = struct.unpack_from("<Q", raw, arr_off)
    assert (arr_off + 8 + n) % 64 == 0  # data starts on a 64-byte boundary
    ctx = read_context(ctx_file)
    block = load(raw[arr_off:])  # safetensors itself reads the block
    for g in ctx.graphs.values():
        for name, a in g.arrays.items():
            assert np.array_equal(block[g.array_keys[name]], a)
            if a.size:
                assert not a.flags.owndata and a.ctypes.data % a.dtype.itemsize == 0  # a view on the mapping


def test_a_50_mb_context_reads_back_and_refuses_flips(tmp_path: Path, rng: np.random.Generator) -> None:
    arrays = {f"w{i}": rng.standard_normal((1024, 1280)).astype(np.float32) for i in range(10)}  # 52 MB
    path = tmp_path / "big.bin"
    write_context(path, backend="htp", arch="v75", graphs={"a": {}, "b": {}}, arrays={"a": arrays, "b": arrays})
    ctx = read_context(path)
    assert np.array_equal(ctx.graphs["b"].arrays["w9"], arrays["w9"])
    raw = bytearray(path.read_bytes())
    assert raw[DIGEST] == _checksum(raw)  # the chunked, parallel checksum is the documented one
    for off in (5 << 20, len(raw) - 3):  # a flip in a middle chunk, in the last one
        flipped = bytearray(raw)
        flipped[off] ^= 0x10
        path.write_bytes(flipped)
        assert "checksum mismatch" in _refusal(path)


# -------------------------------------------------------------------------------------------- writing


def test_writer_refuses_what_a_context_cannot_hold(tmp_path: Path) -> None:
    path = tmp_path / "c.bin"
    for bad in (np.array([object()]), np.zeros(2, np.complex64), np.array(["a"]), np.zeros(2, np.float128)
                if hasattr(np, "float128") else np.zeros(2, np.complex128)):
        with pytest.raises(ContextError, match="dtype"):
            write_context(path, backend="cpu", arch=None, graphs={"g": {}}, arrays={"g": {"x": bad}})
    with pytest.raises(ContextError, match="not a JSON document"):
        write_context(path, backend="cpu", arch=None, graphs={"g": {"scale": np.float32(1)}})
    with pytest.raises(ValueError, match="not in graphs"):
        write_context(path, backend="cpu", arch=None, graphs={"g": {}}, arrays={"h": {}})
    with pytest.raises(ValueError, match="at least one graph"):
        write_context(path, backend="cpu", arch=None, graphs={})
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_keeps_the_old_file(ctx_file: Path) -> None:
    before = ctx_file.read_bytes()
    with pytest.raises(ContextError):
        write_context(ctx_file, backend="cpu", arch=None, graphs={"g": {"bad": {1, 2}}})
    assert ctx_file.read_bytes() == before
    assert [p.name for p in ctx_file.parent.iterdir()] == [ctx_file.name]


def test_writing_is_deterministic(tmp_path: Path) -> None:
    arrays = _arrays()
    write_context(tmp_path / "a.bin", backend="htp", arch="v73", graphs=PLANS, arrays=arrays)
    write_context(tmp_path / "b.bin", backend="htp", arch="v73", graphs=PLANS, arrays=arrays)
    assert (tmp_path / "a.bin").read_bytes() == (tmp_path / "b.bin").read_bytes()


# ------------------------------------------------------------------------------------------- refusals


def test_truncated_anywhere(ctx_file: Path, tmp_path: Path) -> None:
    raw = ctx_file.read_bytes()
    _, _, _, _, size, _, meta_len, arr_off, _, _ = HEADER.unpack_from(raw)
    cuts = {0, 1, 7, 8, 12, 47, 48, 100, 127, 128, 128 + meta_len // 2, 128 + meta_len, arr_off, arr_off + 4,
            arr_off + 8, arr_off + 100, (arr_off + size) // 2, size - 1}
    cut_path = tmp_path / "cut.bin"
    for cut in sorted(cuts):
        cut_path.write_bytes(raw[:cut])
        msg = _refusal(cut_path)
        assert "truncated" in msg, (cut, msg)
        if cut >= 128:
            assert f"{cut} bytes" in msg and f"records {size}" in msg, msg


def test_appended_bytes_are_refused(ctx_file: Path) -> None:
    ctx_file.write_bytes(ctx_file.read_bytes() + b"\0")
    assert "appended" in _refusal(ctx_file)


def test_every_single_byte_flip_is_refused(ctx_file: Path, tmp_path: Path) -> None:
    raw = ctx_file.read_bytes()
    rng = np.random.default_rng(12)
    offsets = set(range(128)) | set(rng.integers(0, len(raw), 400).tolist()) | {len(raw) - 1}
    flipped = tmp_path / "flipped.bin"
    for off in sorted(offsets):
        for bit in (0x01, 0x80):
            b = bytearray(raw)
            b[off] ^= bit
            flipped.write_bytes(b)
            _refusal(flipped)  # the checksum or a structure check; never another exception


def test_wrong_magic(ctx_file: Path, tmp_path: Path) -> None:
    raw = bytearray(ctx_file.read_bytes())
    raw[:8] = b"PK\x03\x04\0\0\0\0"
    ctx_file.write_bytes(raw)
    assert "not an openqnn context binary" in _refusal(ctx_file)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert "not an openqnn context binary" in _refusal(text)


def test_newer_format_version_names_both(ctx_file: Path) -> None:
    raw = bytearray(ctx_file.read_bytes())
    struct.pack_into("<I", raw, 8, 3)
    raw[16:48] = b"9.9.0".ljust(32, b"\0")
    ctx_file.write_bytes(raw)
    msg = _refusal(ctx_file)
    assert "format version 3" in msg and "format version 2" in msg and "openqnn 9.9.0" in msg, msg
    assert __version__ in msg and "upgrade openqnn" in msg


def test_unknown_older_format_version(ctx_file: Path) -> None:
    raw = bytearray(ctx_file.read_bytes())
    struct.pack_into("<I", raw, 8, 0)
    ctx_file.write_bytes(raw)
    assert "format version 0 is not one" in _refusal(ctx_file)


def test_backend_and_arch_mismatch_name_both(ctx_file: Path) -> None:
    msg = _refusal(ctx_file, backend="cpu")
    assert "backend htp" in msg and "backend cpu" in msg, msg
    msg = _refusal(ctx_file, backend="htp", arch="v75")
    assert "arch v73" in msg and "arch v75" in msg, msg
    assert read_context(ctx_file, backend="htp", arch="v73").header.arch == "v73"


def test_missing_file_and_folder(tmp_path: Path) -> None:
    assert "no such" in _refusal(tmp_path / "absent.bin")
    assert "is a folder" in _refusal(tmp_path)


def test_errors_are_invalid_model_errors() -> None:
    assert issubclass(ContextError, InvalidModelError)


# a valid checksum over invalid contents: the schema and extent checks speak


def _split(raw: bytes) -> tuple[dict, bytes]:
    _, _, _, _, _, meta_off, meta_len, arr_off, _, _ = HEADER.unpack_from(raw)
    return json.loads(raw[meta_off:meta_off + meta_len]), raw[arr_off:]


def _assemble(meta: bytes, block: bytes) -> bytes:
    """A context from its parts, laid out as docs/context-binary.md says, with a correct checksum."""
    arr_off = -(-(128 + len(meta)) // 64) * 64
    size = arr_off + len(block)
    body = bytearray(HEADER.pack(b"OQNNCTX\0", 2, 128, __version__.encode(), size, 128, len(meta), arr_off,
                                 len(block), bytes(32)) + meta + bytes(arr_off - 128 - len(meta)) + block)
    body[DIGEST] = _checksum(body)
    return bytes(body)


def _checksum(body: bytes | bytearray) -> bytes:
    """The format's checksum as docs/context-binary.md defines it, computed here independently."""
    zeroed = bytearray(body)
    zeroed[DIGEST] = bytes(32)
    crcs = [zlib.crc32(zeroed[i:i + (1 << 20)]) for i in range(0, len(zeroed), 1 << 20)]
    return hashlib.sha256(b"".join(c.to_bytes(4, "little") for c in crcs)).digest()


def _block(entries: dict, data: bytes) -> bytes:
    return _raw_block(json.dumps(entries).encode(), data)


def _raw_block(head: bytes, data: bytes) -> bytes:
    head += b" " * (-(8 + len(head)) % 64)
    return struct.pack("<Q", len(head)) + head + data


def test_assemble_matches_the_writer(ctx_file: Path) -> None:
    raw = ctx_file.read_bytes()
    meta, block = _split(raw)
    assert _assemble(json.dumps(meta, ensure_ascii=False, separators=(",", ":")).encode(), block) == raw


def _meta_cases(meta: dict) -> list[tuple[str, object]]:
    key = meta["graphs"]["encoder"]["arrays"]["w"]

    def edit(fn) -> dict:
        m = json.loads(json.dumps(meta))
        fn(m)
        return m

    return [
        ("not valid JSON", b'{"backend": "htp", '),
        ("not valid JSON", b'{"backend": "htp", "backend": "cpu"}'),  # duplicate key
        ("not valid JSON", b"\xff\xfe{}"),
        ("a JSON object was expected", b"[]"),
        ('missing key "backend"', edit(lambda m: m.pop("backend"))),
        ('unknown key "extra"', edit(lambda m: m.update(extra=1))),
        ("backend: a non-empty string", edit(lambda m: m.update(backend=3))),
        ("arch: a non-empty string", edit(lambda m: m.update(arch=""))),
        ("graph_names: a non-empty list", edit(lambda m: m.update(graph_names=[]))),
        ("appears twice", edit(lambda m: m["graph_names"].append("encoder"))),
        ("not the ones graph_names lists", edit(lambda m: m["graph_names"].pop())),
        ('graphs["decoder"].plan: a JSON object', edit(lambda m: m["graphs"]["decoder"].update(plan=[1]))),
        ('graphs["decoder"]: missing key "arrays"', edit(lambda m: m["graphs"]["decoder"].pop("arrays"))),
        ("key (64 hex digits)", edit(lambda m: m["graphs"]["decoder"]["arrays"].update(q="../../etc/passwd"))),
        ("which the file does not hold", edit(lambda m: m["graphs"]["decoder"]["arrays"].update(q="0" * 64))),
        ("used by no graph", edit(lambda m: m["graphs"]["decoder"]["arrays"].pop("q"))),
        ("used by no graph", edit(lambda m: [g["arrays"].pop(k) for g in m["graphs"].values()
                                               for k in [n for n, v in g["arrays"].items() if v == key]])),
    ]


def test_malformed_metadata_with_a_valid_checksum(ctx_file: Path) -> None:
    meta, block = _split(ctx_file.read_bytes())
    for expected, doc in _meta_cases(meta):
        data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        ctx_file.write_bytes(_assemble(data, block))
        msg = _refusal(ctx_file)
        assert expected in msg, (expected, msg)


def test_malformed_arrays_block_with_a_valid_checksum(tmp_path: Path) -> None:
    key = "ab" * 32
    meta = json.dumps({"backend": "cpu", "arch": None, "graph_names": ["g"],
                       "graphs": {"g": {"plan": {}, "arrays": {"x": key}}}}).encode()

    def entry(dtype: object = "F32", shape: object = (2,), offsets: object = (0, 8)) -> dict:
        return {key: {"dtype": dtype, "shape": list(shape) if isinstance(shape, tuple) else shape,
                      "data_offsets": list(offsets) if isinstance(offsets, tuple) else offsets}}

    path = tmp_path / "c.bin"
    path.write_bytes(_assemble(meta, _block(entry(), bytes(8))))
    assert read_context(path).graphs["g"].arrays["x"].tolist() == [0.0, 0.0]
    cases = [
        ("which is not allowed", _block(entry(dtype="O"), bytes(8))),
        ("which is not allowed", _block(entry(dtype="BF16", offsets=(0, 4)), bytes(4))),
        ("which is not allowed", _block(entry(dtype=["F32"]), bytes(8))),
        ("not a list of non-negative integers", _block(entry(shape=(-2,)), bytes(8))),
        ("not a list of non-negative integers", _block(entry(shape=[True, 2]), bytes(8))),
        ("not a list of non-negative integers", _block(entry(shape="2"), bytes(8))),
        ("not [begin, end]", _block(entry(offsets=(0,)), bytes(8))),
        ("need 8", _block(entry(offsets=(0, 12)), bytes(12))),
        ("need 4835703278458516698824704", _block(entry(shape=(2**40, 2**40)), bytes(8))),
        ("not where the previous one ends", _block(entry(offsets=(4, 12)), bytes(12))),
        ("cover 8 bytes of its 16", _block(entry(), bytes(16))),
        ("holds bytes other than 0 and 1", _block(entry(dtype="BOOL", offsets=(0, 2)), b"\x01\x02")),
        ("exactly dtype, shape and data_offsets", _block({key: {**entry()[key], "x": 1}}, bytes(8))),
        # a key given twice (JSON keeps the last): its first span is then covered by nothing
        ("not where the previous one ends", _raw_block(
            f'{{"{key}": {json.dumps(entry()[key])}, "{key}": {json.dumps(entry(offsets=(8, 16))[key])}}}'.encode(),
            bytes(16))),
        ("not valid JSON", struct.pack("<Q", 56) + b"{" * 56 + bytes(8)),
        ("not a JSON object", _block([1], b"")),
        ("runs past the block", struct.pack("<Q", 2**63) + b"{}"),
        ("not on a 64-byte boundary", struct.pack("<Q", 2) + b"{}"),
        ("shorter than its 8-byte length field", b"\0\0\0"),
    ]
    for expected, block in cases:
        path.write_bytes(_assemble(meta, block))
        msg = _refusal(path)
        assert expected in msg, (expected, msg)


# ----------------------------------------------------------------------------------- nothing executes


def test_no_pickle_anywhere_in_openqnn() -> None:
    banned_modules = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "marshal", "shelve", "joblib"}
    found = []
    for py in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(py.read_text(), str(py))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module.split(".")[0]]
            found += [f"{py}: import {n}" for n in names if n in banned_modules]
            if isinstance(node, ast.keyword) and node.arg == "allow_pickle" and not (
                    isinstance(node.value, ast.Constant) and node.value.value is False):
                found.append(f"{py}:{node.value.lineno}: allow_pickle")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id in {"np", "numpy", "torch"}:
                found.append(f"{py}:{node.lineno}: {node.func.value.id}.load")
    assert not found, found


def test_reading_unpickles_nothing(ctx_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle

    def refuse(*args, **kwargs):
        raise AssertionError("a context read called pickle")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    describe_context(ctx_file)


# ------------------------------------------------------------------------------------------------ CLI


def test_utility_writes_the_metadata(ctx_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "ctx.json"
    assert context_binary_utility.main(["--context_binary", str(ctx_file), "--json_file", str(out)]) == 0
    info = json.loads(out.read_text())
    assert info["header"]["backend"] == "htp" and info["header"]["arch"] == "v73"
    assert info["header"]["graph_names"] == ["encoder", "decoder"] and info["header"]["format_version"] == 2
    rows = {r["name"]: r for r in info["graphs"]["encoder"]["arrays"]}
    assert rows["w"] == {"name": "w", "dtype": "float32", "shape": [16, 8], "bytes": 512,
                         "stored_as": rows["w"]["stored_as"]}
    assert info["arrays"]["referenced"] == 8 and info["arrays"]["stored"] == 7
    assert info["arrays"]["stored_bytes"] == info["arrays"]["referenced_bytes"] - 512


def test_utility_refuses_a_bad_file_cleanly(ctx_file: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    raw = bytearray(ctx_file.read_bytes())
    raw[-1] ^= 0xFF
    bad = tmp_path / "bad.bin"
    bad.write_bytes(raw)
    out = tmp_path / "out.json"
    assert context_binary_utility.main(["--context_binary", str(bad), "--json_file", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "checksum mismatch" in err and str(bad) in err, err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bad.bin", "ctx.bin"]
    assert context_binary_utility.main(["--context_binary", str(ctx_file), "--json_file", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
