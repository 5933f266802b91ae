"""Run one fidelity case on one arch: openqnn's htp output codes against Qualcomm's HTP simulator's.

The route, as a user would take it:

1. the case's float ONNX model -> ``openqnn.convert`` -> ``openqnn.quantize`` (the case's calibration
   data and :class:`~openqnn.QuantizerConfig`);
2. the quantized graph -> ``export_qdq`` (an opset-21 QDQ ONNX model) -> ONNX Runtime with the QNN
   execution provider of the ``onnxruntime-qnn`` wheel on its HTP backend (``libQnnHtp.so``: on an
   x86 host, QNN's HTP simulator) for ``htp_arch``, with ``session.disable_cpu_ep_fallback`` so that no
   op quietly runs on ONNX Runtime's CPU;
3. the same quantized graph on openqnn's htp backend with ``dsp_arch="v<arch>"``, native (integer)
   outputs.

Inputs are snapped to the grid of their encoding (``scale * (q + offset)`` in float32), so both sides
start from the same input codes and no input-rounding convention (QNN EP quantizes graph inputs on
ONNX Runtime's CPU, round half to even) can make a difference: the comparison is of the ops' own
arithmetic. openqnn is fed those codes natively.

The simulator's outputs are floats from the graph's final DequantizeLinear, which QNN EP runs on the HTP:
``float32(scale) * (q - zero_point)``, or for some producers and shapes, by columns, a float16 path that
moves 8-bit codes (``z -> z + 1`` on nonzero multiples of 4 from the zero point; see
:func:`recover_output`). The codes are recovered as ``round(y / scale) - offset`` on the grid that holds,
and the recovery is checked; values off both grids make the case an ``off-grid`` finding. Where the float16
path was taken, openqnn's codes (and exact arithmetic's) are compared as that path would show them
(:func:`through_output_path`), so the figures compare the ops, not the output path. Outputs without an
encoding (booleans, indices) are compared as they are. A third party, exact arithmetic (ONNX Runtime's
CPU on the same QDQ model, unfused), tells which side moved away from the real-valued result. QNN EP's
verbose log names the nodes it took outside a DequantizeLinear -> op -> QuantizeLinear unit: QNN runs
those on floats.

A model the simulator will not take (session creation fails, e.g. an op QNN EP does not support, which
``disable_cpu_ep_fallback`` turns into an error) is a *refusal*: a finding recorded with the op and
QNN EP's reason, never an exception. The simulator's outputs (or its refusal) are cached on disk per
(QDQ model bytes, inputs, arch, wheel version): ``$OPENQNN_FIDELITY_CACHE`` or
``~/.cache/openqnn/fidelity``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from openqnn.backends.qnn_htp.provider import (
    WHEEL,
    captured_fds,
    host_is_simulator,
    missing,
    qnn_session,
    read_log,
    refusal_detail,
    wheel_version,
)
from tests.fidelity.cases import Case, Prepared

__all__ = [
    "CodeRecoveryError",
    "Result",
    "SimOutcome",
    "cache_dir",
    "compare",
    "export_bytes",
    "qnn_session",
    "recover_codes",
    "recover_output",
    "run_case",
    "run_prepared",
    "simulate",
    "simulator_missing",
    "through_output_path",
    "wheel_version",
]

CACHE_VERSION = "2"
RECOVERY_TOL = 1e-3  # codes: |y / scale - round(y / scale)| may be at most this, plus float32 rounding of y


class CodeRecoveryError(AssertionError):
    """The simulator's float output does not sit on its encoding's grid: codes cannot be recovered."""


# ---------------------------------------------------------------------------------------------
# the simulator


def simulator_missing() -> str | None:
    """Why QNN's HTP simulator cannot run here (None: it can)."""
    if platform.system() != "Linux" or not host_is_simulator():
        return (f"QNN's HTP simulator ships in the {WHEEL} wheel for Linux x86_64 only "
                f"(this is {platform.system()} {platform.machine()})")
    return missing()


@dataclass
class SimOutcome:
    outputs: list[dict[str, np.ndarray]] | None  # per feed: output name -> array; None when refused
    refusal: str | None
    seconds: float
    cached: bool
    float_nodes: list[str] = field(default_factory=list)  # compute nodes QNN EP took outside a QDQ unit


def cache_dir() -> Path:
    env = os.environ.get("OPENQNN_FIDELITY_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "openqnn" / "fidelity"


def simulate_probe(nodes: Sequence[Any], inits: Sequence[Any], inputs: Sequence[Any], outputs: Sequence[Any],
                   feed: Mapping[str, np.ndarray], arch: str, opset: int = 21) -> SimOutcome:
    """A probe script's graph (``nodes`` with ``inits``, one ``feed``) on the simulator for ``arch``; raises
    RuntimeError where QNN refuses it. Its outputs: ``.outputs[0]`` by name; ``.float_nodes`` what ran on floats."""
    from onnx import helper

    g = helper.make_graph(list(nodes), "probe", list(inputs), list(outputs), list(inits))
    model: bytes = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()
    out = simulate(model, [feed], arch)
    if out.outputs is None:
        raise RuntimeError(f"the simulator refused the probe: {out.refusal}")
    return out


def _cache_key(model: bytes, feeds: Sequence[Mapping[str, np.ndarray]], arch: str) -> str:
    h = hashlib.sha256()
    h.update(f"{CACHE_VERSION}|{wheel_version()}|{arch}|".encode())
    h.update(hashlib.sha256(model).digest())
    for feed in feeds:
        for name in sorted(feed):
            a = np.ascontiguousarray(feed[name])
            h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
            h.update(a.tobytes())
    return h.hexdigest()[:40]


def simulate(model: bytes, feeds: Sequence[Mapping[str, np.ndarray]], arch: str,
             cache: Path | None = None) -> SimOutcome:
    """Run the QDQ ``model`` on QNN's HTP simulator for ``htp_arch`` ``arch`` ("68", "73", ...) on
    each feed; a refusal is returned, not raised. Results are cached in ``cache`` (None:
    :func:`cache_dir`)."""
    cache = cache_dir() if cache is None else cache
    key = _cache_key(model, feeds, arch)
    npz, meta = cache / f"{key}.npz", cache / f"{key}.json"
    if meta.exists():
        info = json.loads(meta.read_text())
        floats = info.get("float_nodes", [])
        if info.get("refusal") is not None:
            return SimOutcome(None, info["refusal"], info.get("seconds", 0.0), True, floats)
        if npz.exists():
            with np.load(npz) as z:
                outs = [{name: z[f"{i}/{name}"] for name in info["outputs"]} for i in range(info["n"])]
            return SimOutcome(outs, None, info.get("seconds", 0.0), True, floats)
    t0 = time.perf_counter()
    refusal: str | None = None
    outs: list[dict[str, np.ndarray]] | None = None
    with captured_fds() as buf:
        try:
            sess = qnn_session(model, arch, severity=0)  # the verbose log tells how QNN EP grouped the nodes
        except Exception as e:  # the simulator refuses the model: a finding
            refusal = str(e)
            sess = None
        if sess is not None:
            names = [o.name for o in sess.get_outputs()]
            outs = [dict(zip(names, sess.run(None, dict(feed)))) for feed in feeds]
    log = buf.getvalue()
    _, floats = read_log(log)
    if refusal is not None:
        refusal = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", refusal.strip())
        refusal = refusal_detail(model, arch, log) or refusal
    seconds = time.perf_counter() - t0
    cache.mkdir(parents=True, exist_ok=True)
    info = {"refusal": refusal, "seconds": seconds, "arch": arch, "wheel": wheel_version(), "float_nodes": floats}
    if outs is not None:
        info.update(n=len(outs), outputs=list(outs[0]) if outs else [])
        tmp = cache / f".{key}.{os.getpid()}.npz"
        np.savez(tmp, **{f"{i}/{k}": v for i, o in enumerate(outs) for k, v in o.items()})
        os.replace(tmp, npz)
    tmpj = cache / f".{key}.{os.getpid()}.json"
    tmpj.write_text(json.dumps(info))
    os.replace(tmpj, meta)
    return SimOutcome(outs, refusal, seconds, False, floats)


# ---------------------------------------------------------------------------------------------
# codes


def recover_codes(y: np.ndarray, scale: float, offset: int, bitwidth: int, name: str = "output") -> np.ndarray:
    """The codes q of the dequantized floats ``y = float32(scale) * (q + offset)`` (8-bit codes: or, by columns,
    ``float16(scale) * (q + offset)``, the HTP's own output dequantization, see :func:`recover_output`); raises
    :class:`CodeRecoveryError` when a value is not on either grid (beyond float32 rounding) or its code is out
    of the bitwidth's range."""
    return recover_output(y, scale, offset, bitwidth, name)[0]


def recover_output(y: np.ndarray, scale: float, offset: int, bitwidth: int,
                   name: str = "output") -> tuple[np.ndarray, np.ndarray]:
    """The codes the simulator's graph output shows and where it went through the HTP's float16 output
    dequantization (a bool mask of ``y``'s shape; :func:`through_output_path` says what that does to codes).

    QNN EP (onnxruntime-qnn 2.7.0, QNN 2.51, v68 = v73) runs a graph output's DequantizeLinear on the HTP.
    Most outputs come back as ``float32(scale) * (q + offset)``, but for some producers and shapes, by columns
    of the last axis, 8-bit codes are dequantized as ``float16(scale) * (q' + offset)`` with
    ``q' = through_output_path(q)``: the code relative to the zero point, ``z = q + offset``, comes back as
    ``z + 1`` wherever ``z`` is a nonzero multiple of 4 (the saturated top code as 2^bits where
    ``2^bits - 1 + offset`` is one). Found with LayerNorm (the last ``N / 8`` columns of [10, 768], all of
    [16, 768] and [32, 256], none of [16, 384], [24, 256]), FullyConnected (all of [9..17, 768], [8, 1024],
    none of [16, 384], [32, 256]) and Softmax; not with Add, Mul, Div by a constant or Gelu of a graph input,
    nor data movement (Transpose, Reshape, Slice). The ops' own codes do not have it: a LayerNorm of
    [16, 768] read through a Slice, a Transpose or a Reshape is exact to QNN's rule
    (tests/fidelity/test_qnn_layernorm.py). The float16 grid marks the path, column by column: a column is
    on it where all its values sit on the float16 grid and not all on the float32 one; columns on both grids
    (small or saturated codes, or a scale float16 holds exactly) are decided by :func:`_path_columns`."""
    s = float(np.float32(scale))
    # y is float32 from a dequantization we do not see. Exact float32 arithmetic puts it within 2^-24 |y|
    # of the grid; QNN's 16-bit outputs come back up to ~1.3e-2 of a code off (about 2^-23 relative: a
    # scale an ulp or two apart, or scale * q + scale * offset rounded term by term). Allowed: 2^-20
    # relative to |q| + |offset|, under 0.1 of a code for every 16-bit code, so the code stays unambiguous.
    # The float16 path: within 2e-4 of a code of float16(scale) * (q' + offset) (layernorm/1x16x768/a8_pc:
    # scale 0.0438019 -> 0.0437927, codes up to 0.026 off the float32 grid).
    y = np.asarray(y)
    k, err, tol = _grid(y, s, offset)
    path = np.zeros(y.shape, dtype=bool)
    s16 = float(np.float16(s))
    if bitwidth <= 8 and np.isfinite(s16) and s16 > 0 and y.size:
        n = y.shape[-1] if y.ndim else 1
        k16, err16, tol16 = _grid(y, s16, offset)
        on32 = np.all((err <= tol).reshape(-1, n), axis=0)
        on16 = np.all((err16 <= tol16).reshape(-1, n), axis=0)
        z = k16.reshape(-1, n)
        path = np.broadcast_to(_path_columns(on32, on16, z), z.shape).reshape(y.shape)
        k, err, tol = np.where(path, k16, k), np.where(path, err16, err), np.where(path, tol16, tol)
    if not np.all(err <= tol):
        i = int(np.argmax(err - tol))
        raise CodeRecoveryError(f"{name}: the simulator's value {float(np.ravel(y)[i])!r} is "
                                f"{float(np.ravel(err)[i]):.4g} of a code off the grid of scale {s!r} "
                                f"(offset {offset}); its codes cannot be recovered exactly")
    q = k.astype(np.int64) - int(offset)
    lo, hi = 0, (1 << bitwidth) - 1
    if q.size and (q.min() < lo or np.any(q > hi + path)):
        raise CodeRecoveryError(f"{name}: recovered codes span [{q.min()}, {q.max()}], outside [{lo}, {hi}] "
                                f"of a {bitwidth}-bit encoding")
    return q, path


def _path_columns(on32: np.ndarray, on16: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Which columns took the float16 output dequantization: those on the float16 grid only; a column on both
    grids (its codes too small to tell, or saturated) takes the side of its nearest decided neighbours where
    they agree, else it is on the path where it holds no nonzero multiple of 4 (the path never writes one).
    With no decided column, the whole tensor is on the path where it holds no nonzero multiple of 4 among at
    least 64 nonzero codes."""
    free = ~np.any((z % 4 == 0) & (z != 0), axis=0)  # columns without a nonzero multiple of 4
    state = np.where(on16 & ~on32, 1, np.where(on32 & ~on16, -1, 0))  # 1 float16 only, -1 float32 only
    decided = np.nonzero(state)[0]
    both = on16 & on32
    if decided.size == 0:
        return both & bool(free.all() and np.count_nonzero(z) >= 64)
    idx = np.arange(state.size)
    left = np.maximum.accumulate(np.where(state != 0, idx, -1))  # nearest decided column to the left
    right = np.minimum.accumulate(np.where(state != 0, idx, state.size)[::-1])[::-1]
    ls = np.where(left >= 0, state[np.clip(left, 0, None)], 0)
    rs = np.where(right < state.size, state[np.clip(right, None, state.size - 1)], 0)
    side = np.where((ls == rs) | (rs == 0), ls, np.where(ls == 0, rs, np.where(free, 1, -1)))
    return (state == 1) | (both & (side == 1))


def through_output_path(q: np.ndarray, path: np.ndarray, offset: int) -> np.ndarray:
    """The codes a graph output shows for the codes ``q`` (an op's, e.g. openqnn's) where ``path`` marks the
    HTP's float16 output dequantization (:func:`recover_output`): ``z = q + offset`` becomes ``z + 1`` where it
    is a nonzero multiple of 4. Integer codes only; others are returned as they are."""
    q = np.asarray(q)
    if q.dtype.kind not in "iu" or not np.any(path):
        return q
    z = q.astype(np.int64) + int(offset)
    return q.astype(np.int64) + (path & (z % 4 == 0) & (z != 0))


def _grid(y: np.ndarray, s: float, offset: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The nearest integers of ``y / s``, their distance and the tolerance of :func:`recover_output`."""
    v = np.asarray(y, dtype=np.float64) / s
    k = np.rint(v)
    return k, np.abs(v - k), RECOVERY_TOL + (np.abs(v) + abs(int(offset))) * 2.0**-20


def _sim_codes(prep: Prepared, name: str, y: np.ndarray) -> np.ndarray:
    return _sim_output(prep, name, y)[0]


def _sim_output(prep: Prepared, name: str, y: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The simulator's codes of graph output ``name`` and the mask of its float16 output dequantization
    (None: no encoding)."""
    enc = prep.graph.tensors[name].encoding
    if enc is None:
        return (np.asarray(y).astype(np.int64) if np.asarray(y).dtype.kind in "biu" else np.asarray(y)), None
    if len(enc.scale) != 1:
        raise CodeRecoveryError(f"{name}: a per-axis output encoding; the harness recovers per-tensor ones only")
    return recover_output(y, enc.scale[0], enc.offset[0], enc.bitwidth, name)


def _through_path(prep: Prepared, outs: Sequence[Mapping[str, np.ndarray]],
                  paths: Sequence[Mapping[str, np.ndarray | None]]) -> list[dict[str, np.ndarray]]:
    """``outs`` (openqnn's or exact codes) as the simulator's graph outputs would show them: the HTP's float16
    output dequantization where the simulator's outputs took it (:func:`recover_output`)."""
    res = []
    for o, p in zip(outs, paths):
        d = dict(o)
        for name, m in p.items():
            enc = prep.graph.tensors[name].encoding
            if m is not None and enc is not None and name in d:
                d[name] = through_output_path(d[name], m, enc.offset[0])
        res.append(d)
    return res


# ---------------------------------------------------------------------------------------------
# records


@dataclass
class Result:
    case: str
    op: str
    variant: str
    arch: str
    model: bool = False
    n: int = 0  # output values compared (per feed and output, summed)
    identical: float | None = None  # share of identical output codes
    max_diff: float | None = None  # largest |openqnn - simulator| in codes
    hist: dict[int, int] = field(default_factory=dict)  # openqnn - simulator (codes) -> count
    top1: float | None = None  # whole models: share of rows whose argmax agrees
    # against exact arithmetic (ONNX Runtime's CPU on the same QDQ model, unfused: float32 op, then
    # QuantizeLinear): share identical and max |diff| of openqnn's codes and of the simulator's
    ref_oq: float | None = None
    ref_oq_max: float | None = None
    ref_sim: float | None = None
    ref_sim_max: float | None = None
    refusal: str | None = None  # the simulator would not take the model
    error: str | None = None  # openqnn (conversion, quantization, export or its htp) failed
    fallbacks: list[str] = field(default_factory=list)  # openqnn nodes on the cpu fallback, not htp
    qnn_float: list[str] = field(default_factory=list)  # nodes QNN EP ran on floats (outside a QDQ unit)
    ops: list[str] = field(default_factory=list)  # the quantized graph's IR op types
    kernels: list[str] = field(default_factory=list)  # the htp kernels openqnn ran (its step plans)
    sim_s: float = 0.0
    oq_s: float = 0.0
    cached: bool = False

    def line(self) -> str:
        if self.refusal:
            return f"{self.case} v{self.arch}: REFUSED {self.refusal}"
        if self.error:
            qf = f" (QNN float: {', '.join(self.qnn_float)})" if self.qnn_float else ""
            return f"{self.case} v{self.arch}: ERROR {self.error}{qf}"
        top = f", top-1 {self.top1:.1%}" if self.top1 is not None else ""
        if self.ref_oq is not None and self.ref_sim is not None:
            top += (f"; vs exact: openqnn {self.ref_oq:.1%} (max {self.ref_oq_max:g}), "
                    f"QNN {self.ref_sim:.1%} (max {self.ref_sim_max:g})")
        fb = f", openqnn fallback: {', '.join(self.fallbacks)}" if self.fallbacks else ""
        fb += f", QNN float: {', '.join(self.qnn_float)}" if self.qnn_float else ""
        return (f"{self.case} v{self.arch}: {self.identical:.2%} identical of {self.n}, max diff {self.max_diff:g}"
                f"{top}, diffs {dict(sorted(self.hist.items()))}{fb}")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["hist"] = {str(k): v for k, v in self.hist.items()}
        return d


def compare(ours: Sequence[Mapping[str, np.ndarray]], theirs: Sequence[Mapping[str, np.ndarray]],
            names: Sequence[str], top1: bool) -> tuple[int, float, float, dict[int, int], float | None]:
    """(n, share identical, max |diff|, histogram of diffs, top-1 agreement) over all feeds and outputs."""
    diffs: list[np.ndarray] = []
    agree = rows = 0
    for a_feed, b_feed in zip(ours, theirs):
        for name in names:
            a, b = np.asarray(a_feed[name]), np.asarray(b_feed[name])
            if a.shape != b.shape:
                raise AssertionError(f"{name}: openqnn's shape {a.shape} != the simulator's {b.shape}")
            d = a.astype(np.float64) - b.astype(np.float64)
            diffs.append(d.ravel())
            if top1 and a.ndim >= 1 and a.shape[-1] > 1:
                am, bm = a.reshape(-1, a.shape[-1]).argmax(-1), b.reshape(-1, b.shape[-1]).argmax(-1)
                agree += int((am == bm).sum())
                rows += am.size
    d = np.concatenate(diffs) if diffs else np.zeros(0)
    n = int(d.size)
    hist = {int(k): int(v) for k, v in Counter(np.rint(d).astype(np.int64).tolist()).items()}
    return (n, float((d == 0).mean()) if n else 1.0, float(np.abs(d).max()) if n else 0.0, hist,
            (agree / rows if rows else None) if top1 else None)


def _first_line(e: BaseException) -> str:
    text = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "")
    return f"{type(e).__name__}: {text}"[:300]


def export_bytes(prep: Prepared) -> bytes:
    from openqnn.quantization.qdq.export import graph_to_onnx

    return graph_to_onnx(prep.graph).SerializeToString()


def run_prepared(prep: Prepared, arch: str, *, cache: Path | None = None, use_cache: bool = True,
                 qdq: bytes | None = None, arithmetic: str = "qnn") -> Result:
    """Compare openqnn's htp (``htp_config.arithmetic``) and the simulator on a prepared case for ``arch`` ("68",
    "73", ...)."""
    import openqnn
    from openqnn.backends.htp.config import HtpConfig
    from openqnn.runtime.config import BackendConfig

    case = prep.case
    res = Result(case.name, case.op, case.variant, arch, model=case.model,
                 ops=sorted({n.op_type for n in prep.graph.nodes}))
    try:
        qdq = export_bytes(prep) if qdq is None else qdq
    except Exception as e:
        res.error = f"export: {_first_line(e)}"
        return res
    if use_cache:
        sim = simulate(qdq, prep.sim_feeds, arch, cache)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            sim = simulate(qdq, prep.sim_feeds, arch, Path(tmp))
    res.sim_s, res.cached, res.qnn_float = sim.seconds, sim.cached, list(sim.float_nodes)
    res.refusal = sim.refusal
    names = list(prep.graph.outputs)
    # openqnn and exact arithmetic run even where the simulator refused: the kernels and openqnn's
    # distance from exact are worth having for every case
    ours: list[dict[str, np.ndarray]] | None = None
    t0 = time.perf_counter()
    try:
        cfg = BackendConfig(htp=HtpConfig(dsp_arch=f"v{arch}", arithmetic=arithmetic))
        with _quiet_warnings():
            sess = openqnn.Session(prep.graph, backend="htp", config=cfg)
        res.fallbacks = [f"{f.node} ({f.op_type}): {f.reason}" for f in sess.fallbacks]
        exe = getattr(sess, "_exe", None)  # private: only for the report's kernel column
        plans = getattr(getattr(exe, "exe", exe), "step_plans", None) or []
        res.kernels = sorted({p.kernel for p in plans if p is not None})
        raw = [sess.run(feed, native_inputs=True, native_outputs=True) for feed in prep.oq_feeds]
        ours = [{n: np.asarray(o[n]).astype(np.int64) if np.asarray(o[n]).dtype.kind in "biu" else o[n]
                 for n in names} for o in raw]
    except Exception as e:
        res.error = f"openqnn htp: {_first_line(e)}"
    res.oq_s = time.perf_counter() - t0
    exact = _exact(prep, qdq, names)
    if ours is not None and exact is not None:
        res.n, res.ref_oq, res.ref_oq_max, _, _ = compare(ours, exact, names, False)
    if sim.outputs is None:
        return res
    try:
        recovered = [{n: _sim_output(prep, n, o[n]) for n in names} for o in sim.outputs]
    except CodeRecoveryError as e:
        res.error = res.error or f"off-grid: {e}"
        return res
    theirs = [{n: c for n, (c, _) in r.items()} for r in recovered]
    # the simulator's graph outputs may have gone through the HTP's float16 output dequantization, which moves
    # codes (recover_output): openqnn's and exact codes are compared as that path would show them
    paths = [{n: m for n, (_, m) in r.items()} for r in recovered]
    ours = _through_path(prep, ours, paths) if ours is not None else None
    exact = _through_path(prep, exact, paths) if exact is not None else None
    if exact is not None:
        _, res.ref_sim, res.ref_sim_max, _, _ = compare(theirs, exact, names, False)
    if ours is not None:
        res.n, res.identical, res.max_diff, res.hist, res.top1 = compare(ours, theirs, names, case.model)
    return res


def _exact(prep: Prepared, qdq: bytes, names: Sequence[str]) -> list[dict[str, np.ndarray]] | None:
    """The codes of exact arithmetic: ONNX Runtime's CPU on the QDQ model with its graph optimizations off
    (each op in float32 between DequantizeLinear and QuantizeLinear); None where it cannot run it."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    try:
        sess = ort.InferenceSession(qdq, so, providers=["CPUExecutionProvider"])
        outs = [dict(zip([o.name for o in sess.get_outputs()], sess.run(None, dict(f)))) for f in prep.sim_feeds]
        return [{n: _sim_codes(prep, n, o[n]) for n in names} for o in outs]
    except Exception:
        return None


@contextlib.contextmanager
def _quiet_warnings() -> Iterator[None]:
    import logging
    import warnings

    log = logging.getLogger("openqnn")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


def run_case(case: Case, arch: str, **kw: Any) -> Result:
    """Prepare ``case`` (convert, quantize, inputs) and run it on ``arch``; a failure to prepare is
    recorded as the result's error."""
    try:
        prep = case.prepare()
    except Exception as e:
        return Result(case.name, case.op, case.variant, arch, model=case.model, error=f"prepare: {_first_line(e)}")
    return run_prepared(prep, arch, **kw)
