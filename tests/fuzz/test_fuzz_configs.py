"""Seeded fuzzing of the loaders of user-written files and flags: quantization overrides (AIMET
0.6.1, 1.0.0 and 2.x), input lists and raw files, backend config files, and the numeric flags of
qnn-net-run and qnn-onnx-converter.

Valid seeds are built here (a small Conv/Relu ONNX model, its overrides in the three formats, an
input list with raw files, the seed's ``backend_config.json``) and mutated with a seeded RNG: keys
deleted, types swapped, numbers made NaN / Inf / negative / zero / huge, JSON nested without end,
files truncated, bytes flipped, text saved as UTF-16 / latin-1 / with a BOM, paths missing, raw files
of the wrong size or all NaN, flags out of range. Every case runs in-process through the API, and a
sample through the command-line tools in a subprocess with a timeout.

The tests assert that each outcome is success or an :class:`openqnn.OpenQnnError` with a one-line
message (never another exception, a signal or a hang), that what is accepted satisfies the format's
rules (positive finite scales, offsets within the bitwidth, bounded settings, arrays of the input's
shape), that an error leaves no output files, and that the cases known to be wrong are refused (or,
for overrides naming tensors not in the model, warned about once). Counts go to
``/tmp/item7b_figures.md``.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import openqnn
from guide_backend_config import GUIDE_BACKEND_CONFIG as SEED_BACKEND_CONFIG
from helpers import make_model
from openqnn.cli import net_run, onnx_converter
from openqnn.errors import OpenQnnError
from openqnn.quantization.encodings import read_encodings
from openqnn.quantization.export import write_graph_encodings
from openqnn.runtime.config import LIMITS, read_backend_config
from openqnn.runtime.io import read_input_list, read_raw

SEED = 20261206
FIGURES = Path("/tmp/item7b_figures.md")
TALLY: dict[str, Counter] = {}


# ---------------------------------------------------------------- the seeds


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A small model (float and quantized), its overrides in three formats, raw inputs, an input list."""
    d = tmp_path_factory.mktemp("fuzzcfg")
    rng = np.random.default_rng(SEED)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "conv.weight")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "conv.bias")
    nodes = [helper.make_node("Conv", ["input", "conv.weight", "conv.bias"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["relu/out:0"])]
    m = make_model(nodes, [("input", TensorProto.FLOAT, [1, 3, 8, 8])], [("relu/out:0", TensorProto.FLOAT, None)],
                   [w, b], opset=13)
    onnx.save(m, str(d / "m.onnx"))
    graph = openqnn.convert(d / "m.onnx")
    data = [{"input": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(2)]
    qgraph = openqnn.quantize(graph, data)
    openqnn.save(graph, d / "m.cpp")
    openqnn.save(qgraph, d / "q.cpp")
    v1 = json.loads(write_graph_encodings(qgraph, d / "seed_v1.json").read_text())
    v1.pop("quantizer_args", None)
    legacy: dict[str, Any] = {"activation_encodings": {}, "param_encodings": {}}
    v2: dict[str, Any] = {"version": "2.0.0", "encodings": []}
    for section in ("activation_encodings", "param_encodings"):
        for e in v1[section]:
            s, o, bw = e["scale"][0], e["offset"][0], e["bw"]
            legacy[section][e["name"]] = [{"bitwidth": bw, "min": s * o, "max": s * (o + (1 << bw) - 1), "scale": s,
                                           "offset": o, "is_symmetric": str(e["is_sym"]), "dtype": "int"}]
            if bw <= 16:
                signed = bool(e["is_sym"])
                zp = -o - (1 << (bw - 1)) if signed else -o
                v2["encodings"].append({"name": e["name"], "output_dtype": f"{'' if signed else 'u'}int{bw}",
                                        "y_scale": s, "y_zero_point": zp})
    for i, x in enumerate(data):
        x["input"].tofile(d / f"in{i}.raw")
    return {"dir": d, "graph": graph, "qgraph": qgraph, "data": data, "net": d / "m_net.json",
            "qnet": d / "q_net.json", "seeds": {"0.6.1": legacy, "1.0.0": v1, "2.x": v2}}


def _seed_overrides_are_valid(ws: dict[str, Any]) -> None:
    for fmt, doc in ws["seeds"].items():
        p = ws["dir"] / f"valid_{fmt}.json"
        p.write_text(json.dumps(doc))
        f = read_encodings(p)
        assert len(f.activations) + len(f.params) >= 5, fmt
        openqnn.quantize(ws["graph"], None, None, f)


def test_seeds_are_valid(ws: dict[str, Any], tmp_path: Path) -> None:
    _seed_overrides_are_valid(ws)
    (tmp_path / "cfg.json").write_text(json.dumps(SEED_BACKEND_CONFIG))
    read_backend_config(tmp_path / "cfg.json")
    (tmp_path / "list.txt").write_text(f"{ws['dir'] / 'in0.raw'}\ninput:={ws['dir'] / 'in1.raw'}\n")
    assert len(read_input_list(tmp_path / "list.txt", ws["graph"].input_tensors()).inferences) == 2


# ---------------------------------------------------------------- running one case


def _count(loader: str, outcome: str) -> None:
    TALLY.setdefault(loader, Counter())[outcome] += 1


def _run(loader: str, case: str, fn: Callable[..., Any], *args: Any) -> tuple[OpenQnnError | None, Any]:
    """``fn(*args)``: (None, its result) when accepted, (the error, None) when refused; any other
    exception fails the test."""
    try:
        result = fn(*args)
    except OpenQnnError as e:
        msg = str(e)
        assert msg and "\n" not in msg, f"{loader} {case}: error is not one line: {msg!r}"
        _count(loader, "refused")
        return e, None
    except Exception as e:
        raise AssertionError(f"{loader} {case}: {type(e).__name__}: {e}") from e
    _count(loader, "accepted")
    return None, result


def _outcome(loader: str, case: str, fn: Callable[..., Any], *args: Any) -> OpenQnnError | None:
    return _run(loader, case, fn, *args)[0]


# ---------------------------------------------------------------- JSON mutations

_SWAPS: list[Any] = [None, "x", "", [], {}, True, False, 0, -1, 1.5, [1], {"a": 1}, "8", [[[]]]]
_NUMBERS: list[Any] = [math.nan, math.inf, -math.inf, 0, -0.0, -1, -1e-3, 1e308, 1e39, 2**31, 2**63, 2**64 + 1,
                       10**400, 1e-45, 1e-300, 0.5, 7, 3, 255, -255, 256, 4.5]


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _get(doc: Any, path: tuple) -> Any:
    for k in path:
        doc = doc[k]
    return doc


def _set(doc: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    _get(doc, path[:-1])[path[-1]] = value
    return doc


def _leaves(doc: Any, numeric: bool = False) -> list[tuple]:
    ps = [p for p in _paths(doc) if p and not isinstance(_get(doc, p), (dict, list))]
    if numeric:
        ps = [p for p in ps if isinstance(_get(doc, p), (int, float)) and not isinstance(_get(doc, p), bool)]
    return ps


def _dump(doc: Any) -> bytes:
    return json.dumps(doc).encode()  # NaN / Infinity come out as the (invalid JSON) literals


def _mutate_json(rng: random.Random, seed: Any, names: list[str] | None = None) -> tuple[str, bytes]:
    """One seeded mutation of a JSON document: (what was done, the file's bytes)."""
    doc = copy.deepcopy(seed)
    kind = rng.choice(["delete", "delete", "swap", "swap", "number", "number", "number", "negate", "nest", "deep",
                       "unknown_key", "truncate", "flip", "utf16", "utf16_bom", "latin1", "utf8_bom", "empty",
                       "rename", "double"])
    if kind == "double":  # two mutations of the structure
        return "double", _dump(_mutate_struct(rng, _mutate_struct(rng, doc)))
    if kind in ("delete", "swap", "number", "negate", "nest", "unknown_key"):
        return kind, _dump(_mutate_struct(rng, doc, kind))
    text = _dump(doc)
    if kind == "deep":
        n = rng.choice([40, 1000, 100_000])
        return f"deep{n}", b"[" * n + text + b"]" * n
    if kind == "truncate":
        return kind, text[: rng.randrange(len(text))]
    if kind == "flip":
        b = bytearray(text)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return kind, bytes(b)
    if kind == "utf16":
        return kind, text.decode().encode("utf-16-le")
    if kind == "utf16_bom":
        return kind, text.decode().encode("utf-16")
    if kind == "latin1":
        return kind, text.decode().replace('"', '"\u00e9', 1).encode("latin-1")
    if kind == "utf8_bom":
        return kind, b"\xef\xbb\xbf" + text
    if kind == "empty":
        return kind, b""
    # rename: a tensor name (or a key) that the model does not have
    ps = [p for p in _leaves(doc) if p[-1] == "name"]
    if ps:
        _set(doc, rng.choice(ps), f"no_such_tensor_{rng.randrange(100)}")
    else:
        for section in ("activation_encodings", "param_encodings", "cpu_config", "htp_config"):
            if isinstance(doc.get(section), dict) and doc[section]:
                key = rng.choice(sorted(doc[section]))
                doc[section][f"no_such_tensor_{rng.randrange(100)}"] = doc[section].pop(key)
                break
    return kind, _dump(doc)


def _mutate_struct(rng: random.Random, doc: Any, kind: str | None = None) -> Any:
    kind = kind or rng.choice(["delete", "swap", "number", "negate", "nest", "unknown_key"])
    paths = [p for p in _paths(doc) if p]
    if kind == "delete":
        keyed = [p for p in paths if isinstance(_get(doc, p[:-1]), dict)]
        if keyed:
            p = rng.choice(keyed)
            del _get(doc, p[:-1])[p[-1]]
        return doc
    if kind == "swap" and paths:
        return _set(doc, rng.choice(paths), copy.deepcopy(rng.choice(_SWAPS)))
    if kind in ("number", "negate"):
        nums = _leaves(doc, numeric=True)
        if nums:
            p = rng.choice(nums)
            return _set(doc, p, -_get(doc, p) if kind == "negate" else rng.choice(_NUMBERS))
        return doc
    if kind == "nest" and paths:
        p = rng.choice(paths)
        value: Any = _get(doc, p)
        for _ in range(rng.choice([1, 3, 40])):
            value = [value]
        return _set(doc, p, value)
    if kind == "unknown_key":
        objs = [p for p in [(), *paths] if isinstance(_get(doc, p), dict)]
        if objs:
            _get(doc, rng.choice(objs))["turbo_mode"] = True
        return doc
    return doc


# ---------------------------------------------------------------- overrides


def _check_accepted_overrides(f: Any) -> None:
    """What the reader accepted obeys the format's rules."""
    for spec in [*f.activations.values(), *f.params.values()]:
        assert isinstance(spec.name, str) and spec.name
        if spec.dtype == "float":
            assert spec.bitwidth in (16, 32)
            continue
        assert spec.bitwidth in (4, 8, 16, 32), spec
        for s in spec.scale or ():
            assert math.isfinite(s) and s > 0, spec
        for o in spec.offset or ():
            assert -((1 << spec.bitwidth) - 1) <= o <= 0, spec
        for lo, hi in zip(spec.min or (), spec.max or ()):
            assert math.isfinite(lo) and math.isfinite(hi) and lo <= hi, spec


N_OVERRIDES = 100  # per format


@pytest.mark.parametrize("fmt", ["0.6.1", "1.0.0", "2.x"])
def test_fuzz_overrides(ws: dict[str, Any], fmt: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rng = random.Random(f"{SEED}-overrides-{fmt}")
    loader = f"overrides {fmt}"
    graph = ws["graph"]
    for i in range(N_OVERRIDES):
        kind, blob = _mutate_json(rng, ws["seeds"][fmt])
        p = tmp_path / f"o{i}.json"
        p.write_bytes(blob)
        case = f"#{i} {kind}: {blob[:160]!r}"
        err, f = _run(loader, case, read_encodings, p)
        if err is not None:
            continue
        _check_accepted_overrides(f)
        unknown = sorted(n for n in [*f.activations, *f.params] if n not in graph.tensors)
        calibrate = i % 3 == 0
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="openqnn"):
            err = _outcome(f"quantize with {fmt} overrides", case, openqnn.quantize, graph,
                           ws["data"] if calibrate else None, None, f)
        if unknown:  # named once, with how many, whether or not calibrating
            warned = [r.getMessage() for r in caplog.records if "not in the model" in r.getMessage()]
            if err is None:
                assert len(warned) == 1 and all(n in warned[0] for n in unknown) and str(len(unknown)) in warned[0], (
                    case, warned)


def _write(tmp: Path, name: str, doc: Any) -> Path:
    p = tmp / name
    p.write_bytes(doc if isinstance(doc, bytes) else json.dumps(doc).encode())
    return p


def _v1_entry(ws: dict[str, Any], **changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(ws["seeds"]["1.0.0"])
    doc["activation_encodings"][0].update(changes)
    return doc


def test_wrong_overrides_are_refused(ws: dict[str, Any], tmp_path: Path) -> None:
    """The cases a fuzzer found, and their relatives in every format: refused, naming the file."""
    legacy, v1, v2 = (ws["seeds"][k] for k in ("0.6.1", "1.0.0", "2.x"))
    first = next(iter(legacy["activation_encodings"]))
    cases: dict[str, Any] = {
        "2.x encodings not a list": {"version": "2.0.0", "encodings": {"a": 1}},
        "2.x entry not an object": {"version": "2.0.0", "encodings": [1]},
        "deep nesting": b"[" * 100_000 + b"1" + b"]" * 100_000,
        "deep nesting in a value": b'{"activation_encodings": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        "NaN literal": b'{"activation_encodings": {"x": [{"bitwidth": 8, "scale": NaN, "offset": 0}]}}',
        "huge integer": b'{"activation_bitwidth": 1' + b"0" * 5000 + b"}",
        "UTF-16": json.dumps(v1).encode("utf-16"),
        "1.0.0 negative scale": _v1_entry(ws, scale=[-0.1]),
        "1.0.0 zero scale": _v1_entry(ws, scale=[0.0]),
        "1.0.0 infinite scale": _v1_entry(ws, scale=[1e300]),
        "1.0.0 scale below float32": _v1_entry(ws, scale=[1e-45]),
        "1.0.0 positive offset": _v1_entry(ws, offset=[5]),
        "1.0.0 offset beyond bitwidth": _v1_entry(ws, offset=[-256]),
        "1.0.0 offset 1.5": _v1_entry(ws, offset=[1.5]),
        "1.0.0 offset inf": b'{"version": "1.0.0", "activation_encodings": [{"name": "input", "bw": 8, '
                            b'"scale": [0.1], "offset": [1e999]}]}',
        "1.0.0 bitwidth 7": _v1_entry(ws, bw=7),
        "1.0.0 bitwidth 8.5": _v1_entry(ws, bw=8.5),
        "1.0.0 bitwidth inf": b'{"version": "1.0.0", "activation_encodings": [{"name": "input", "bw": 1e999, '
                              b'"scale": [0.1], "offset": [0]}]}',
        "1.0.0 is_sym a number": _v1_entry(ws, is_sym=3),
        "1.0.0 scale a string": _v1_entry(ws, scale=["0.1"]),
        "1.0.0 name a list": _v1_entry(ws, name=["input"]),
        "1.0.0 entry not an object": {"version": "1.0.0", "activation_encodings": [3]},
        "1.0.0 duplicate tensor": {"version": "1.0.0",
                                   "activation_encodings": [v1["activation_encodings"][0]] * 2},
        "0.6.1 negative scale": {"activation_encodings": {first: [dict(legacy["activation_encodings"][first][0],
                                                                        scale=-0.1)]}},
        "0.6.1 scale without min": {"activation_encodings": {"input": [{"bitwidth": 8, "scale": -0.1, "offset": 0}]}},
        "0.6.1 min above max": {"activation_encodings": {"input": [{"bitwidth": 8, "min": 1.0, "max": -1.0}]}},
        "0.6.1 min NaN": {"activation_encodings": {"input": [{"bitwidth": 8, "min": "nan", "max": 1.0}]}},
        "0.6.1 offset beyond bitwidth": {"activation_encodings": {"input": [{"bitwidth": 8, "scale": 0.1,
                                                                            "offset": -300}]}},
        "0.6.1 bitwidth 3": {"activation_encodings": {"input": [{"bitwidth": 3, "min": 0, "max": 1}]}},
        "0.6.1 dtype bogus": {"activation_encodings": {"input": [{"bitwidth": 8, "min": 0, "max": 1,
                                                                 "dtype": "complex"}]}},
        "2.x negative scale": {"version": "2.0.0", "encodings": [dict(v2["encodings"][0], y_scale=-0.5)]},
        "2.x zero point outside uint8": {"version": "2.0.0", "encodings": [dict(v2["encodings"][0],
                                                                                  y_zero_point=300)]},
        "2.x zero point 1.5": {"version": "2.0.0", "encodings": [dict(v2["encodings"][0], y_zero_point=1.5)]},
        "2.x zero points do not match scales": {"version": "2.0.0", "encodings": [dict(v2["encodings"][0],
                                                y_scale=[0.1, 0.2, 0.3], y_zero_point=[0, 0])]},
        "2.x scale not numbers": {"version": "2.0.0", "encodings": [dict(v2["encodings"][0], y_scale={"a": 1})]},
        "unknown version": dict(v1, version="9.0.0"),
        "top level a list": [v1],
    }
    for i, (case, doc) in enumerate(cases.items()):
        p = _write(tmp_path, f"bad{i}.json", doc)
        err = _outcome("overrides (known wrong)", case, read_encodings, p)
        assert err is not None, f"accepted: {case}"
        assert str(p) in str(err), (case, str(err))


def test_unknown_override_names_warn_once(ws: dict[str, Any], tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    for fmt, doc in ws["seeds"].items():
        doc = copy.deepcopy(doc)
        if fmt == "0.6.1":
            doc["activation_encodings"]["ghost_a"] = doc["activation_encodings"]["input"]
            doc["param_encodings"]["ghost_b"] = doc["param_encodings"]["conv.weight"]
        elif fmt == "1.0.0":
            doc["activation_encodings"].append(dict(doc["activation_encodings"][0], name="ghost_a"))
            doc["param_encodings"].append(dict(doc["param_encodings"][0], name="ghost_b"))
        else:
            doc["encodings"] += [dict(doc["encodings"][0], name="ghost_a"), dict(doc["encodings"][0], name="ghost_b")]
        f = read_encodings(_write(tmp_path, f"ghost_{fmt}.json", doc))
        for data in (None, ws["data"]):
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="openqnn"):
                openqnn.quantize(ws["graph"], data, None, f)
            warned = [r.getMessage() for r in caplog.records if "ghost_a" in r.getMessage()]
            assert len(warned) == 1 and "ghost_b" in warned[0] and " 2 " in warned[0], (fmt, warned)


# ---------------------------------------------------------------- backend config


N_CONFIGS = 150


@pytest.fixture
def torch_threads():
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_fuzz_backend_config(ws: dict[str, Any], tmp_path: Path, torch_threads: None) -> None:
    rng = random.Random(f"{SEED}-backend-config")
    for i in range(N_CONFIGS):
        kind, blob = _mutate_json(rng, SEED_BACKEND_CONFIG)
        p = tmp_path / f"c{i}.json"
        p.write_bytes(blob)
        case = f"#{i} {kind}: {blob[:200]!r}"
        err, cfg = _run("backend config", case, read_backend_config, p)
        if err is not None:
            continue
        for section in (cfg.cpu, cfg.gpu, cfg.htp):
            for key, (lo, hi) in LIMITS.items():
                value = getattr(section, key, None)
                assert value is None or (type(value) is int and lo <= value <= hi), (case, key, value)
        if i % 5 == 0:  # a session on the accepted config
            _outcome("session on accepted config", case, _cpu_run, ws, cfg)


def _cpu_run(ws: dict[str, Any], cfg: Any) -> None:
    openqnn.Session(ws["graph"], backend="cpu", config=cfg).run(ws["data"][0])


def test_wrong_backend_configs_are_refused(tmp_path: Path) -> None:
    def cfg(section: str, **kw: Any) -> dict[str, Any]:
        return {section: dict(SEED_BACKEND_CONFIG[section], **kw)}

    cases: dict[str, Any] = {
        "num_threads 2^31 (overflow)": cfg("cpu_config", num_threads=2147483648),
        "num_threads 100000 (crash)": cfg("cpu_config", num_threads=100000),
        "num_threads 0": cfg("cpu_config", num_threads=0),
        "num_threads 4.0": cfg("cpu_config", num_threads=4.0),
        "num_threads true": cfg("cpu_config", num_threads=True),
        "vtcm_mb 0": cfg("htp_config", vtcm_mb=0),
        "vtcm_mb 1e6": cfg("htp_config", vtcm_mb=10**6),
        "vtcm_mb 8 on v68": cfg("htp_config", vtcm_mb=8, dsp_arch="v68"),
        "device_id -1": cfg("gpu_config", device_id=-1),
        "device_id 2^40": cfg("gpu_config", device_id=2**40),
        "soc_model unknown": cfg("htp_config", soc_model=12345),
        "enable_dma 1": cfg("htp_config", enable_dma=1),
        "precision_mode int4": cfg("htp_config", precision_mode="int4"),
        "unknown key": cfg("cpu_config", turbo=True),
        "unknown section": {"dsp_config": {}},
        "section not an object": {"cpu_config": [1]},
        "NaN literal": b'{"cpu_config": {"num_threads": NaN}}',
        "deep nesting": b"[" * 100_000 + b"]" * 100_000,
        "UTF-16": json.dumps(SEED_BACKEND_CONFIG).encode("utf-16-le"),
        "latin-1": '{"cpu_config": {"performance_mode": "\u00e9"}}'.encode("latin-1"),
        "truncated": json.dumps(SEED_BACKEND_CONFIG).encode()[:50],
    }
    for i, (case, doc) in enumerate(cases.items()):
        p = _write(tmp_path, f"cfg{i}.json", doc)
        err = _outcome("backend config (known wrong)", case, read_backend_config, p)
        assert err is not None, f"accepted: {case}"
        assert str(p) in str(err), (case, str(err))
    assert "UTF-8" in str(_outcome("backend config (known wrong)", "utf16", read_backend_config,
                                   tmp_path / f"cfg{list(cases).index('UTF-16')}.json"))
    assert read_backend_config(_write(tmp_path, "bom.json", b"\xef\xbb\xbf" + json.dumps(SEED_BACKEND_CONFIG).encode()))


def test_vtcm_bound_is_the_largest_arch() -> None:
    from openqnn.backends.htp.arch import ARCHS

    assert LIMITS["vtcm_mb"][1] == max(a.vtcm_mb for a in ARCHS.values())


# ---------------------------------------------------------------- input lists and raw files

N_INPUT_LISTS = 130


def _mutate_input_list(rng: random.Random, d: Path, src: Path) -> tuple[str, bytes, bool]:
    """(what, list bytes, must be refused). Raw files it needs are written into ``d``."""
    good = [str(src / "in0.raw"), f"input:={src / 'in1.raw'}"]
    kind = rng.choice(["missing", "short_raw", "long_raw", "empty_lines", "pair_no_name", "pair_no_path",
                       "pair_unknown", "pair_twice", "too_many", "mixed", "utf16", "utf16_bom", "latin1", "utf8_bom",
                       "garbage", "nul", "nan_raw", "folder", "long_name", "truncate", "flip", "outputs_line",
                       "comment", "only_comments", "crlf", "relative"])
    lines = list(good)
    refuse = True
    if kind == "missing":
        lines.insert(rng.randrange(3), str(d / "nope.raw"))
    elif kind in ("short_raw", "long_raw"):
        n = 3 * 8 * 8 + (rng.choice([-1, -7, -192]) if kind == "short_raw" else rng.choice([1, 5, 192]))
        np.zeros(max(n, 0), np.float32).tofile(d / f"{kind}.raw")
        if rng.random() < 0.3:  # a size that is not a whole number of floats
            (d / f"{kind}.raw").write_bytes((d / f"{kind}.raw").read_bytes() + b"\x01")
        lines.append(str(d / f"{kind}.raw"))
    elif kind == "empty_lines":
        lines = ["", "   ", good[0], "", "\t", good[1], ""]
        refuse = False
    elif kind == "pair_no_name":
        lines.append(f":={src / 'in0.raw'}")
    elif kind == "pair_no_path":
        lines.append("input:=")
    elif kind == "pair_unknown":
        lines.append(f"image:={src / 'in0.raw'}")
    elif kind == "pair_twice":
        lines.append(f"input:={src / 'in0.raw'} input:={src / 'in1.raw'}")
    elif kind == "too_many":
        lines.append(f"{src / 'in0.raw'} {src / 'in1.raw'}")
    elif kind == "mixed":
        lines.append(f"input:={src / 'in0.raw'} {src / 'in1.raw'}")
    elif kind == "nan_raw":
        np.full(3 * 8 * 8, np.nan, np.float32).tofile(d / "nan.raw")
        lines = [str(d / "nan.raw")] * 2
        refuse = False
    elif kind == "folder":
        lines.append(str(d))
    elif kind == "long_name":
        lines.append("a" * 5000 + ".raw")
    elif kind == "outputs_line":
        lines.insert(0, "#relu/out:0")
        refuse = False
    elif kind == "comment":
        lines.insert(1, "%relu/out:0")
        refuse = False
    elif kind == "only_comments":
        lines = ["# nothing", "%x"]
    elif kind == "relative":  # a path relative to the list's folder
        (d / "rel.raw").write_bytes((src / "in0.raw").read_bytes())
        lines = ["rel.raw"]
        refuse = False
    text = "\n".join(lines) + "\n"
    if kind == "crlf":
        return kind, text.replace("\n", "\r\n").encode(), False
    if kind == "utf16":
        return kind, text.encode("utf-16-le"), True
    if kind == "utf16_bom":
        return kind, text.encode("utf-16"), True
    if kind == "latin1":
        return kind, (text + "caf\u00e9.raw\n").encode("latin-1"), True
    if kind == "utf8_bom":
        return kind, b"\xef\xbb\xbf" + text.encode(), False
    if kind == "garbage":
        return kind, bytes(rng.randrange(256) for _ in range(rng.randint(1, 400))), True
    if kind == "nul":
        return kind, text.encode() + b"\x00\x00", True
    if kind == "truncate":  # may cut a path in two: refused or not, it must not crash
        b = text.encode()
        return kind, b[: rng.randrange(1, len(b))], None  # type: ignore[return-value]
    if kind == "flip":
        b = bytearray(text.encode())
        for _ in range(rng.randint(1, 3)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return kind, bytes(b), None  # type: ignore[return-value]
    return kind, text.encode(), refuse


def _load_list(path: Path, inputs: list[Any]) -> list[dict[str, np.ndarray]]:
    ilist = read_input_list(path, inputs)
    return [{t.name: read_raw(e[t.name], t, False) for t in inputs} for e in ilist.inferences]


def test_fuzz_input_lists(ws: dict[str, Any], tmp_path: Path) -> None:
    rng = random.Random(f"{SEED}-input-list")
    inputs = ws["graph"].input_tensors()
    nan_calibration = []
    for i in range(N_INPUT_LISTS):
        d = tmp_path / f"l{i}"
        d.mkdir()
        kind, blob, refuse = _mutate_input_list(rng, d, ws["dir"])
        p = d / "list.txt"
        p.write_bytes(blob)
        case = f"#{i} {kind}: {blob[:160]!r}"
        err, feeds = _run("input list", case, _load_list, p, inputs)
        if refuse is True:
            assert err is not None, f"accepted: {case}"
        elif refuse is False:
            assert err is None, f"refused: {case}: {err}"
        if err is not None:
            if kind.startswith("utf16") or kind == "latin1":
                assert "UTF-8" in str(err) and str(p) in str(err), str(err)
            continue
        for feed in feeds:
            assert feed["input"].shape == inputs[0].shape and feed["input"].dtype == np.float32
        if kind == "nan_raw":
            nan_calibration = feeds
        elif i % 10 == 0:  # calibrate on what was accepted
            _outcome("quantize on accepted input list", case, openqnn.quantize, ws["graph"], feeds)
    assert nan_calibration, "the seeded run should include an all-NaN raw file"


def test_all_nan_calibration_is_a_clean_outcome(ws: dict[str, Any]) -> None:
    """All-NaN raw files pass the input list (NaN is a float); calibrating on them ends in a model or
    an OpenQnnError (quantizer.py decides which), never an internal error."""
    feeds = [{"input": np.full((1, 3, 8, 8), np.nan, np.float32)}] * 2
    _outcome("quantize on all-NaN calibration", "all NaN", openqnn.quantize, ws["graph"], feeds)


# ---------------------------------------------------------------- numeric flags, in-process


class _Hang(BaseException):  # not caught by the tools as an internal error
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Hang


def _cli(tool: Callable[[list[str]], int], argv: list[str], limit_s: int = 60) -> tuple[int, str]:
    """Exit status of a tool run in-process (argparse's own refusals exit 2); a run past ``limit_s``
    fails the test instead of hanging it."""
    import contextlib
    import io

    err = io.StringIO()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(limit_s)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                rc = tool(argv)
            except SystemExit as e:
                rc = int(e.code or 0)
    except _Hang:
        raise AssertionError(f"{' '.join(argv)}: still running after {limit_s} s") from None
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return rc, err.getvalue()


_NET_RUN_FLAGS = {
    "--num_inferences": ["0", "-1", "1", "3", "2147483648", "99999999999999999999", "1e3", "nan", "x"],
    "--duration": ["0", "-1", "inf", "-inf", "nan", "1e9", "1e308", "0.01", "1e-300", "x"],
}
_CONVERTER_FLAGS = {
    "--percentile_calibration_value": ["nan", "inf", "-inf", "0", "50", "50.5", "99.9", "100", "100.5", "1e308"],
    "--act_bitwidth": ["4", "8", "16", "32", "-8", "x"],
    "--weights_bitwidth": ["2", "4", "8", "16", "x"],
    "--bias_bitwidth": ["8", "16", "32", "64"],
    "--float_bitwidth": ["8", "16", "32"],
    "--weights_block_size": ["0", "-1", "3", "99999999999999999999"],
    "--restrict_quantization_steps": ["-127 127", "0x7f -0x7f", "1e3 5", "-99999999999 9", "-128 127", "0 0"],
    "--input_dim": ["1,3,8,8", "0,3,8,8", "-1,3,8,8", "2147483648,3,8,8", "1,3,x,8", ""],
}
_MUST_REFUSE = {("--num_inferences", v) for v in ("0", "-1", "2147483648", "99999999999999999999", "1e3", "nan", "x")}
_MUST_REFUSE |= {("--duration", v) for v in ("0", "-1", "inf", "-inf", "nan", "1e9", "1e308", "x")}
_MUST_REFUSE |= {("--percentile_calibration_value", v) for v in ("nan", "inf", "-inf", "0", "50", "100.5", "1e308")}
_MUST_REFUSE |= {("--act_bitwidth", v) for v in ("4", "32", "-8", "x")} | {("--weights_bitwidth", "2")}
_MUST_REFUSE |= {("--bias_bitwidth", "64"), ("--float_bitwidth", "8"), ("--weights_block_size", "0"),
                 ("--weights_block_size", "-1"), ("--restrict_quantization_steps", "-99999999999 9"),
                 ("--restrict_quantization_steps", "0 0"), ("--input_dim", "0,3,8,8"),
                 ("--input_dim", "2147483648,3,8,8")}


def _tree(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*")) if d.exists() else []


def test_fuzz_numeric_flags(ws: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "list.txt").write_text(f"{ws['dir'] / 'in0.raw'}\n")
    for i, (flag, value) in enumerate((f, v) for f, vs in _NET_RUN_FLAGS.items() for v in vs):
        out = tmp_path / f"out{i}"
        rc, err = _cli(net_run.main, ["--model", str(ws["net"]), "--input_list", str(tmp_path / "list.txt"),
                                      "--output_dir", str(out), flag, value])
        case = f"qnn-net-run {flag} {value}"
        assert rc in (0, 2), f"{case}: exit {rc}: {err}"
        _count("qnn-net-run flags", "accepted" if rc == 0 else "refused")
        if (flag, value) in _MUST_REFUSE:
            assert rc == 2 and flag in err, f"accepted: {case}"
        if rc:
            assert not out.exists(), f"{case}: left {_tree(out)}"
        else:
            assert _tree(out) == ["Result_0", "Result_0/relu_out_0.raw", "partition_report.json"], case
    for i, (flag, value) in enumerate((f, v) for f, vs in _CONVERTER_FLAGS.items() for v in vs):
        out = tmp_path / f"conv{i}"
        extra = ["--input_list", str(tmp_path / "list.txt")]
        argv = ["-i", str(ws["dir"] / "m.onnx"), "-o", str(out / "m.cpp"), *extra]
        argv += [flag, "input", value] if flag == "--input_dim" else [flag, *value.split()] if value else [flag, ""]
        if flag == "--weights_block_size":
            argv += ["--use_per_channel_quantization"]
        rc, err = _cli(onnx_converter.main, argv)
        case = f"qnn-onnx-converter {flag} {value}"
        assert rc in (0, 2), f"{case}: exit {rc}: {err}"
        _count("qnn-onnx-converter flags", "accepted" if rc == 0 else "refused")
        if (flag, value) in _MUST_REFUSE:
            assert rc == 2, f"accepted: {case}"
        if rc:
            assert not out.exists() or not _tree(out), f"{case}: left {_tree(out)}"


def test_output_dir_problems_are_clean_errors(ws: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "list.txt").write_text(f"{ws['dir'] / 'in0.raw'}\n")
    (tmp_path / "afile").write_text("x")
    for out in (tmp_path / "afile", tmp_path / "afile" / "below"):
        rc, err = _cli(net_run.main, ["--model", str(ws["net"]), "--input_list", str(tmp_path / "list.txt"),
                                      "--output_dir", str(out)])
        assert rc == 2 and "--output_dir" in err and "afile" in err, err
        _count("qnn-net-run flags", "refused")
    assert (tmp_path / "afile").read_text() == "x"
    # results are written once the run ends well: an old Result_0 is replaced, other files stay
    out = tmp_path / "out"
    (out / "Result_0").mkdir(parents=True)
    (out / "Result_0" / "relu_out_0.raw").write_bytes(b"old")
    (out / "keep.txt").write_text("mine")
    rc, err = _cli(net_run.main, ["--model", str(ws["net"]), "--input_list", str(tmp_path / "list.txt"),
                                  "--output_dir", str(out)])
    assert rc == 0, err
    assert (out / "Result_0" / "relu_out_0.raw").stat().st_size == 4 * 4 * 8 * 8
    assert _tree(out) == ["Result_0", "Result_0/relu_out_0.raw", "keep.txt", "partition_report.json"]


# ---------------------------------------------------------------- a sample through the CLI, in subprocesses


def _tool(module: str) -> list[str]:
    return [sys.executable, "-m", f"openqnn.cli.{module}"]


def test_cli_sample_in_subprocesses(ws: dict[str, Any], tmp_path: Path) -> None:
    d = tmp_path
    (d / "list.txt").write_text(f"{ws['dir'] / 'in0.raw'}\n")
    (d / "list16.txt").write_bytes(f"{ws['dir'] / 'in0.raw'}\n".encode("utf-16"))
    (d / "threads.json").write_text(json.dumps({"cpu_config": {"num_threads": 100000}}))
    (d / "threads31.json").write_text(json.dumps({"cpu_config": {"num_threads": 2147483648}}))
    (d / "deep.json").write_bytes(b"[" * 200_000 + b"]" * 200_000)
    (d / "v2.json").write_text('{"version":"2.0.0","encodings":{"a":1}}')
    (d / "neg.json").write_text(json.dumps(_v1_entry(ws, scale=[-0.5])))
    (d / "afile").write_text("x")
    net_run_base = ["--model", str(ws["net"]), "--input_list", str(d / "list.txt")]
    conv_base = ["-i", str(ws["dir"] / "m.onnx")]
    cases: dict[str, tuple[list[str], Path]] = {
        "--duration inf": (_tool("net_run") + net_run_base + ["--output_dir", str(d / "o1"), "--duration", "inf"],
                           d / "o1"),
        "UTF-16 input list": ([*_tool("net_run"), "--model", str(ws["net"]), "--input_list",
                               str(d / "list16.txt"), "--output_dir", str(d / "o2")], d / "o2"),
        "num_threads 100000": (_tool("net_run") + net_run_base + ["--output_dir", str(d / "o3"), "--config_file",
                                                                  str(d / "threads.json")], d / "o3"),
        "num_threads 2^31": (_tool("net_run") + net_run_base + ["--output_dir", str(d / "o4"), "--config_file",
                                                                str(d / "threads31.json")], d / "o4"),
        "--output_dir a file": (_tool("net_run") + net_run_base + ["--output_dir", str(d / "afile")], d / "o5"),
        "deep overrides": (_tool("onnx_converter") + conv_base + ["-o", str(d / "c1" / "m.cpp"),
                                                                  "--quantization_overrides", str(d / "deep.json")],
                           d / "c1"),
        "2.x encodings object": (_tool("onnx_converter") + conv_base + ["-o", str(d / "c2" / "m.cpp"),
                                                                        "--quantization_overrides", str(d / "v2.json")],
                                 d / "c2"),
        "1.0.0 negative scale": (_tool("onnx_converter") + conv_base + ["-o", str(d / "c3" / "m.cpp"),
                                                                        "--quantization_overrides",
                                                                        str(d / "neg.json")], d / "c3"),
    }
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = {case: subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for case, (argv, _) in cases.items()}
    for case, proc in procs.items():
        try:
            _, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise AssertionError(f"{case}: still running after 120 s") from None
        assert proc.returncode >= 0, f"{case}: killed by signal {-proc.returncode}"
        assert proc.returncode == 2, f"{case}: exit {proc.returncode}: {err}"
        lines = err.strip().splitlines()
        assert lines[-1].startswith("error: ") and "Traceback" not in err, f"{case}: {err}"
        out = cases[case][1]
        assert not out.exists() or not _tree(out), f"{case}: left {_tree(out)}"
        _count("CLI subprocess", "refused")


# ---------------------------------------------------------------- figures


def test_write_figures() -> None:
    """Runs last in this file (pytest keeps file order): the tallies of every loader."""
    if not TALLY:
        pytest.skip("no fuzz test ran in this process")
    def table(loaders: list[str]) -> list[str]:
        rows = ["| loader | cases | refused | accepted |", "| --- | ---: | ---: | ---: |"]
        total: Counter = Counter()
        for loader in loaders:
            c = TALLY[loader]
            rows.append(f"| {loader} | {c['refused'] + c['accepted']} | {c['refused']} | {c['accepted']} |")
            total.update(c)
        rows.append(f"| **all** | {total['refused'] + total['accepted']} | {total['refused']} | {total['accepted']} |")
        return rows

    follow_on = sorted(k for k in TALLY if k.startswith(("quantize", "session")))
    cases = sorted(k for k in TALLY if k not in follow_on)
    FIGURES.write_text(f"# item 7b: config / overrides / input list / flag fuzzing (seed {SEED})\n\n"
                       "Cases (mutated files and flags, and the known-wrong cases), by loader:\n\n"
                       + "\n".join(table(cases)) + "\n\nFollow-on runs on what the loaders accepted (quantize "
                       "with the overrides or calibration data, a cpu Session with the config):\n\n"
                       + "\n".join(table(follow_on)) + "\n")
