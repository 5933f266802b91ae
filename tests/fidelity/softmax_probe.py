"""Probe how QNN's HTP simulator computes an 8-bit Softmax, on rows shaped like attention scores.

``python -m tests.fidelity.softmax_probe --arch 73 [--seeds 2]``

Each probe is a QDQ Softmax (last axis) of ``[1, R, N]`` 8-bit codes with a chosen input encoding and
openqnn's fixed output encoding for probabilities (scale 1/256, zero point 0). Rows are random codes,
some with an additive mask (a block of the row at code 0, far below the rest, as an attention mask
added before the Softmax puts it). The probe prints, per probe, the share of the simulator's codes that
openqnn's spec (``src/openqnn/backends/htp/spec/qnn_softmax.py``) and exact rounding reproduce.

Findings on onnxruntime-qnn 2.7.0 (QNN 2.51), v68 = v73: for rows of 17 elements or more QNN's
exponentials are ``2^(-k C')`` with ``C' = s_in log2(e)`` truncated to 8 significant bits (99.98% of the
codes; exact rounding 95-99.7%). Rows of 3 to 16 elements take another route, 16-bit fixed point
(``spec/qnn_softmax.short_codes``, docs/htp-fidelity.md stop 26). ``run_codes`` with a finer output scale (2^-9 to 2^-16, two-level rows)
reads the exponentials to 0.1%, which is how the 8 bits were found. ``reciprocal_rows`` (input scale 0.6932, a step of
exactly 1) puts an element's code boundary between the reciprocals ``floor(2^(b + 15) / S)`` and one more, sum by sum:
how ``spec/qnn_softmax.long_recip`` was found (stop 27).

``--short`` probes rows of 3 to 16 elements instead and prints, besides exact rounding, the share that
``short_fit_codes`` reproduces: ``spec/qnn_softmax.short_codes``, what openqnn's htp runs with ``arithmetic: "qnn"``
(exponentials from two nibble-indexed tables scaled by 32767, nnlib's 16-bit reciprocal ``recip16``, a double
rounding; 99.97% of random rows' codes, the sum's offsets fitted: docs/htp-fidelity.md, stop 26).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from openqnn.backends.htp.spec.qnn_softmax import exp_step, exp_table, long_codes_of, short_codes
from tests.fidelity.harness import simulate, simulator_missing

OUT_SCALE = 1.0 / 256


def _model(shape: tuple[int, ...], sx: np.float32, zx: int, so: np.float32, zo: int) -> bytes:
    from onnx import TensorProto, helper
    from onnx import numpy_helper as nh

    inits = [nh.from_array(np.array(sx), "sx"), nh.from_array(np.array(zx, np.uint8), "zx"),
             nh.from_array(np.array(so), "so"), nh.from_array(np.array(zo, np.uint8), "zo")]
    nodes = [helper.make_node("QuantizeLinear", ["xf", "sx", "zx"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["x"]),
             helper.make_node("Softmax", ["x"], ["y"], axis=-1),
             helper.make_node("QuantizeLinear", ["y", "so", "zo"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "so", "zo"], ["yo"])]
    g = helper.make_graph(nodes, "probe", [helper.make_tensor_value_info("xf", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("yo", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)]).SerializeToString()


def run_codes(arch: str, q: np.ndarray, sx: float, zx: int, so: float = OUT_SCALE, zo: int = 0) -> np.ndarray:
    """The simulator's output codes of the Softmax (last axis) of the 8-bit codes ``q`` ([1, R, N])."""
    sx32, so32 = np.float32(sx), np.float32(so)
    xf = (sx32 * (q.astype(np.float32) - np.float32(zx))).astype(np.float32)
    sim = simulate(_model(q.shape, sx32, zx, so32, zo), [{"xf": xf}], arch)
    if sim.outputs is None:
        raise RuntimeError(f"the simulator refused the probe: {sim.refusal}")
    y = sim.outputs[0]["yo"]
    return np.rint(y.astype(np.float64) / float(so32)).astype(np.int64) + zo


def exact_codes(q: np.ndarray, sx: float, so: float = OUT_SCALE, zo: int = 0) -> np.ndarray:
    """Exact rounding (half to even) of the real softmax of the codes' values."""
    x = float(np.float32(sx)) * q.astype(np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    p = e / e.sum(axis=-1, keepdims=True)
    return np.clip(np.rint(p / float(np.float32(so))) + zo, 0, 255).astype(np.int64)


def spec_codes(q: np.ndarray, sx: float) -> np.ndarray:
    """openqnn's spec (spec/qnn_softmax.py): QNN's exponential table, the sum and a rounded division."""
    return long_codes_of(exp_table(sx)[q.max(axis=-1, keepdims=True) - q])


def short_fit_codes(q: np.ndarray, sx: float) -> np.ndarray:
    """QNN's rows of 3 to 16 elements as openqnn computes them (``spec/qnn_softmax.short_codes``: exponentials from
    two nibble-indexed tables, their integer sum, nnlib's 16-bit reciprocal ``recip16``, a double rounding;
    docs/htp-fidelity.md, stop 26): 99.97% of random rows' codes, exact rounding 99.2%."""
    return short_codes(q, sx)


def triple_rows(n: int) -> np.ndarray:
    """[1, 32896, n] codes: every row (255, 255 - k1, 255 - k2) for 0 <= k1 <= k2 <= 255, the rest of the row at
    code 0 (far below: its exponential is 0 at input scales of 0.05 and more). Rows of 3 and 4 give the same
    codes, rows of 5 to 16 the same codes, and the two groups differ in 0.01-0.09% of them (stop 25)."""
    k1, k2 = np.triu_indices(256)
    q = np.zeros((k1.size, n), dtype=np.int64)
    q[:, 0], q[:, 1], q[:, 2] = 255, 255 - k1, 255 - k2
    return q[None]


def attention_rows(rng: np.random.Generator, rows: int, n: int, sx: float, zx: int, masked: bool) -> np.ndarray:
    """[1, rows, n] 8-bit codes like attention scores: a random spread of real width 2 to 12 around a
    random centre; with ``masked``, a random tail of each row at code 0 (the mask's large negative value)."""
    width = rng.uniform(2.0, 12.0, (rows, 1)) / sx
    centre = rng.uniform(zx + 0.3 * (255 - zx), 255 - 0.3 * (255 - zx), (rows, 1)) if masked else \
        rng.uniform(60, 200, (rows, 1))
    q = np.clip(np.rint(centre + width * (rng.random((rows, n)) - 0.5)), 0, 255).astype(np.int64)
    if masked:
        keep = rng.integers(1, n + 1, rows)
        q[np.arange(n)[None, :] >= keep[:, None]] = 0
    return q[None]


def random_probes(rng: np.random.Generator, rows: int, lengths: Sequence[int] = (17, 32, 64, 128),
                  scales: Sequence[float] = (0.01, 0.023, 0.05, 0.1, 0.2, 0.5, 1.3)
                  ) -> list[tuple[int, float, int, bool, np.ndarray]]:
    """(n, s_in, z_in, masked, codes [1, rows, n]) per row length, input scale and mask."""
    out = []
    for n in lengths:
        for sx in scales:
            for masked in (False, True):
                zx = int(rng.integers(200, 256)) if masked else int(rng.integers(0, 256))
                out.append((n, sx, zx, masked, attention_rows(rng, rows, n, sx, zx, masked)))
    return out


def level_rows(n: int, ks: Sequence[int], js: Sequence[int], ms: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """([1, R, n] codes, [R, 3] (k, j, m)): rows of ``j`` maxima (code 255), ``m`` elements ``k`` below them and the
    rest at code 0 (far below: exponential 0 at input scales of about 0.06 and more), for every k, j, m with
    ``j + m <= n``."""
    rows, meta = [], []
    for k in ks:
        for j in js:
            for m in ms:
                if j + m <= n:
                    r = np.zeros(n, dtype=np.int64)
                    r[:j], r[j:j + m] = 255, 255 - k
                    rows.append(r)
                    meta.append((k, j, m))
    return np.array(rows)[None], np.array(meta)


def ratio_bounds(codes: np.ndarray, meta: np.ndarray) -> dict[int, tuple[float, float]]:
    """Per k, the interval of the ratio ``rho = E[k] / E[0]`` that every ``level_rows`` row's codes allow if the
    codes are ``256 E / sum(E)`` rounded half up (an exact division): the maxima's code ``c0`` bounds
    ``256 / (j + m rho)``, the lower level's ``ck`` bounds ``256 rho / (j + m rho)``. An empty interval (lo > hi) says
    the division is not exact."""
    out = {}
    for k in np.unique(meta[:, 0]):
        sel = meta[:, 0] == k
        j, m = meta[sel, 1].astype(np.float64), meta[sel, 2].astype(np.float64)
        c0 = codes[0][sel, 0].astype(np.float64)
        ck = codes[0][sel][np.arange(int(sel.sum())), meta[sel, 1]].astype(np.float64)
        lo1 = (256 / (c0 + 0.5) - j) / m
        hi1 = np.where(c0 > 0.5, (256 / np.maximum(c0 - 0.5, 1e-9) - j) / m, np.inf)
        lo2 = np.where(ck > 0, np.maximum(ck - 0.5, 0) * j / (256 - np.maximum(ck - 0.5, 0) * m), 0.0)
        hi2 = np.where(256 - (ck + 0.5) * m > 0, (ck + 0.5) * j / np.maximum(256 - (ck + 0.5) * m, 1e-9), np.inf)
        out[int(k)] = (float(max(lo1.max(), lo2.max())), float(min(hi1.min(), hi2.min())))
    return out


def power_rows(rng: np.random.Generator, rows: int, n: int = 64) -> np.ndarray:
    """[1, rows, n] codes for an input scale whose step ``C'`` is exactly 1 (s_in = 0.6932): 1-8 maxima (code 255),
    random elements 1-15 codes below them, the rest at code 0 (far). There ``E[k] = g(0) >> k = 32767 >> k`` exactly,
    so each row's sum is known without the table's doubts and its codes bound the reciprocal alone (stop 27)."""
    q = np.zeros((rows, n), dtype=np.int64)
    for i in range(rows):
        j = int(rng.integers(1, 9))
        ks = [0] * j + list(rng.integers(1, 16, int(rng.integers(0, n - j + 1))))
        q[i, :len(ks)] = 255 - np.array(ks)
    return q[None]


def reciprocal_rows(bits: int, n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """([1, R, n] codes, [R, 3] (S, k, c)) for the input scale 0.6932 (a step of exactly 1, ``E[k] = 32767 >> k``,
    ``power_rows``): rows whose sums ``S`` of ``bits`` bits put a code boundary of an element ``k`` (``c`` to ``c + 1``,
    at ``(2c + 1) 2^(b + 6) / E[k]`` in units of the reciprocal) between ``F = floor(2^(b + 15) / S)`` and ``F + 1``:
    that element's code says which of the two QNN's reciprocal is, sum by sum (the row: the maximum, the element, fillers
    ``32767 >> m`` taken greedily, the rest far below). About 250 sums per length (stop 27)."""
    e = np.array([32767 >> k for k in range(15)], dtype=np.int64)
    lo, hi = 1 << (bits - 1), 1 << bits
    rows, meta = [], []
    for k in range(15):
        for c in range(256):
            t2 = (2 * c + 1) << (bits + 6)  # the boundary, e[k] r >= t2, as r >= t2 / e[k]
            # F < t2 / e[k] <= F + 1 with F = floor(2^(b+15) / S): 2^(b+15) e[k] / t2 <= S < 2^(b+15) e[k] / (t2 - e[k])
            num = (1 << (bits + 15)) * int(e[k])
            for s in range(max(lo, num // t2 - 1), min(hi, num // (t2 - int(e[k])) + 2)):
                f = (1 << (bits + 15)) // s
                if not f * int(e[k]) < t2 <= (f + 1) * int(e[k]):
                    continue
                ks = [0] + ([k] if k else [])
                rem = s - int(e[ks].sum())
                for m, v in enumerate(e):
                    while v <= rem and len(ks) < n:
                        ks.append(m)
                        rem -= int(v)
                if rem == 0:
                    rows.append(255 - np.array(ks + [255] * (n - len(ks))))
                    meta.append((s, k, c))
    return np.array(rows)[None], np.array(meta)


def threshold_rows(table: np.ndarray, bits: int, rng: np.random.Generator, kmax: int = 40,
                   n: int = 64) -> np.ndarray:
    """[1, R, n] codes (maximum 255) whose exponentials under ``table`` sum to ``S`` of ``bits`` bits placed next to
    a code boundary of one element: for each element ``k < kmax`` and code ``c``, ``S`` within a unit or two of
    ``256 E[k] / (c + 1/2)``; the row holds the maximum, that element, random elements ``k < kmax`` and fillers of
    small exponentials (``k >= kmax``) that make the sum exact (the rest far below). Such rows tell which side of the
    boundary QNN's division puts the element, i.e. bound the reciprocal (or the table) to a unit (stop 27). Needs an
    input scale where ``table[255]`` is 0 (the padding)."""
    if table[255]:
        raise ValueError("threshold_rows pads with code 0, whose exponential must be 0")
    fill: dict[int, int] = {}
    for k in range(kmax, 256):
        if table[k] > 0:
            fill.setdefault(int(table[k]), k)
    values = sorted(fill, reverse=True)
    rows = []
    for k in range(kmax):
        for c in range(1, 256):
            target = 256 * int(table[k]) / (c + 0.5)
            for d in (-1, 0, 1, 2):
                s = int(np.floor(target)) + d
                if not (1 << (bits - 1)) <= s < (1 << bits):
                    continue
                ks = [0] + ([k] if k else [])
                part = int(table[ks].sum())
                for _ in range(200):
                    if len(ks) >= n - 14 or s - part <= 1500:
                        break
                    kk = int(rng.integers(1, kmax + 1))
                    if part + table[kk] <= s - 200:
                        ks.append(kk)
                        part += int(table[kk])
                rem = s - part
                for v in values:
                    while 0 <= v <= rem and len(ks) < n:
                        ks.append(fill[v])
                        rem -= v
                if rem == 0:
                    rows.append(255 - np.array(ks + [255] * (n - len(ks))))
    return np.array(rows)[None]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fidelity.softmax_probe", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="73")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--rows", type=int, default=128, help="rows per probe")
    p.add_argument("--short", action="store_true", help="rows of 3 to 16 elements (their own route)")
    p.add_argument("--bounds", type=float, default=None, metavar="S_IN",
                   help="rows of 64 (level_rows) at this input scale: each E[k] / E[0]'s interval (ratio_bounds)")
    args = p.parse_args(argv)
    missing = simulator_missing()
    if missing:
        print(missing)
        return 1
    if args.bounds is not None:
        q, meta = level_rows(64, range(1, 48), range(1, 17), range(1, 40))
        sim = run_codes(args.arch, q, args.bounds, 128)
        step = exp_step(args.bounds)
        for k, (lo, hi) in ratio_bounds(sim, meta).items():
            x = 2.0 ** (-k * step)
            print(f"k={k:2d} E[k]/E[0] in [{lo:.7f}, {hi:.7f}]{' (empty)' if lo > hi * (1 + 1e-12) else ''}, x 32767: "
                  f"[{lo * 32767:.2f}, {hi * 32767:.2f}]; 2^(-k C') x 32767 = {x * 32767:.2f}")
        return 0
    for seed in range(args.seeds):
        lengths = (3, 4, 5, 8, 11, 16) if args.short else (17, 32, 64, 128)
        for n, sx, zx, masked, q in random_probes(np.random.default_rng(seed), args.rows, lengths):
            sim = run_codes(args.arch, q, sx, zx)
            ex, ours = exact_codes(q, sx), (short_fit_codes if args.short else spec_codes)(q, sx)
            print(f"v{args.arch} n={n} s_in={sx} mask={masked}: spec {np.mean(ours == sim):.4%} "
                  f"(max {int(np.abs(ours - sim).max())}), exact rounding {np.mean(ex == sim):.4%} "
                  f"(max {int(np.abs(ex - sim).max())}) of {sim.size}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
