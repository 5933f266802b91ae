"""Probe how QNN's HTP simulator computes a LayerNorm of 8- and 16-bit codes.

``python -m tests.fidelity.layernorm_probe --arch 73``

Each probe is a QDQ LayerNormalization (last axis) of ``[1, R, N]`` codes with chosen encodings for
the input, gamma (8-bit codes with their own scale), beta and the output. ``run_codes`` returns the
simulator's output codes; ``exact_codes`` the exact rounding of the real LayerNorm with beta rounded to
the output's codes; ``spec_codes`` openqnn's spec (``src/openqnn/backends/htp/spec/qnn_layernorm.py``):
gamma's codes times a per-row multiplier ``floor(2^16 s_gamma / (s_out sigma))`` (``1 / sigma`` by float32's fast
inverse square root), the mean floored to 1/64. ``near_integer_rows`` / ``multipliers_used``: rows whose exact
multiplier sits just above an integer and which of floor and floor - 1 the simulator used (how the fast inverse
square root was found).

Rows of 256 elements (uniform ramps of half-width 8 to 124 codes and normal rows of standard deviation
5 to 60 codes) read each row's gain to about 0.05%; fitting the multiplier per input code against grids
``1/u`` finds ``u = 65536 / gamma code`` for every gamma code, gamma scale and output scale tried, which
is how the rule was found; the row offsets left (+0.01..0.05 of a code) are the mean floored to 1/64
(rounding it, or flooring to 2..8 or 10 bits, fits worse), from ``S1 * float32(1/N)`` (exact multiples of
1/64 come out one step lower where float32(1/N) < 1/N, e.g. N = 100). Findings on onnxruntime-qnn 2.7.0
(QNN 2.51), v68 = v73: the spec 100% of the 8-bit codes of these probes, exact rounding 92-98%. On some
shapes (16 rows of 768, 32 of 256, ...) the graph output goes through the HTP's float16 output
dequantization, which writes ``z + 1`` for a nonzero multiple of 4 ``z`` (``run_output`` returns where;
``harness.through_output_path`` applies it to the spec's codes); read through a Slice, the LayerNorm's own
codes are the spec's.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from tests.fidelity.harness import recover_output, simulate, simulator_missing

Slice = tuple[Sequence[int], Sequence[int], Sequence[int]]  # starts, ends, axes


def _model(shape: tuple[int, ...], bits: int, sx: np.float32, zx: int, gq: np.ndarray, sg: np.float32,
           bq: np.ndarray, sb: np.float32, so: np.float32, zo: int, eps: float, slice_: Slice | None = None) -> bytes:
    from onnx import TensorProto, helper
    from onnx import numpy_helper as nh

    ut = np.uint8 if bits == 8 else np.uint16
    inits = [nh.from_array(np.array(sx), "sx"), nh.from_array(np.array(zx, ut), "zx"),
             nh.from_array(np.array(so), "so"), nh.from_array(np.array(zo, ut), "zo"),
             nh.from_array(gq.astype(np.uint8), "gq"), nh.from_array(np.array(sg), "sg"),
             nh.from_array(np.array(0, np.uint8), "zg"),
             nh.from_array(bq.astype(np.int32), "bq"), nh.from_array(np.array(sb), "sb"),
             nh.from_array(np.array(0, np.int32), "zb")]
    nodes = [helper.make_node("QuantizeLinear", ["xf", "sx", "zx"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["x"]),
             helper.make_node("DequantizeLinear", ["gq", "sg", "zg"], ["g"]),
             helper.make_node("DequantizeLinear", ["bq", "sb", "zb"], ["b"]),
             helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], axis=-1, epsilon=eps),
             helper.make_node("QuantizeLinear", ["y", "so", "zo"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "so", "zo"], ["yo"])]
    if slice_ is not None:  # the LayerNorm's codes read through a Slice (same encoding): the Slice is the output
        inits += [nh.from_array(np.array(v, np.int64), k) for k, v in zip(("st", "en", "ax"), slice_)]
        nodes[-1].output[0] = "y1"
        nodes += [helper.make_node("Slice", ["y1", "st", "en", "ax"], ["ys"]),
                  helper.make_node("QuantizeLinear", ["ys", "so", "zo"], ["ysq"]),
                  helper.make_node("DequantizeLinear", ["ysq", "so", "zo"], ["yo"])]
    g = helper.make_graph(nodes, "probe", [helper.make_tensor_value_info("xf", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("yo", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)]).SerializeToString()


def run_codes(arch: str, q: np.ndarray, sx: float, zx: int, gq: np.ndarray, sg: float, bq: np.ndarray,
              sb: float, so: float, zo: int, bits: int = 8, eps: float = 1e-5) -> np.ndarray:
    """The simulator's output codes (zero point included) of the LayerNorm of the codes ``q`` ([1, R, N]), as
    its graph output shows them (possibly through the HTP's float16 output dequantization: :func:`run_output`)."""
    return run_output(arch, q, sx, zx, gq, sg, bq, sb, so, zo, bits, eps)[0]


def run_output(arch: str, q: np.ndarray, sx: float, zx: int, gq: np.ndarray, sg: float, bq: np.ndarray,
               sb: float, so: float, zo: int, bits: int = 8, eps: float = 1e-5,
               slice_: Slice | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The graph output's codes (zero point included) and the mask of the HTP's float16 output dequantization
    (``harness.recover_output``: there ``z + 1`` for a nonzero multiple of 4 ``z``); ``slice_``: the LayerNorm's
    output read through a Slice (starts, ends, axes), which is then the graph output."""
    sx32, so32, sg32, sb32 = np.float32(sx), np.float32(so), np.float32(sg), np.float32(sb)
    xf = (sx32 * (q.astype(np.float32) - np.float32(zx))).astype(np.float32)
    sim = simulate(_model(q.shape, bits, sx32, zx, gq, sg32, bq, sb32, so32, zo, eps, slice_), [{"xf": xf}], arch)
    if sim.outputs is None:
        raise RuntimeError(f"the simulator refused the probe: {sim.refusal}")
    codes, path = recover_output(sim.outputs[0]["yo"], float(so32), -zo, bits)
    return codes, path


def normalized(q: np.ndarray, sx: float, eps: float = 1e-5) -> np.ndarray:
    """The exact normalized value (x - mean) / sqrt(var + eps) of the codes' values, float64."""
    x = float(np.float32(sx)) * q.astype(np.float64)
    m = x.mean(axis=-1, keepdims=True)
    return (x - m) / np.sqrt(((x - m) ** 2).mean(axis=-1, keepdims=True) + eps)


def exact_codes(q: np.ndarray, sx: float, gq: np.ndarray, sg: float, bq: np.ndarray, sb: float, so: float,
                zo: int, bits: int = 8, eps: float = 1e-5, gain: np.ndarray | float = 1.0) -> np.ndarray:
    """Exact rounding with beta rounded to the output's codes (half away), times ``gain`` per row."""
    so64 = float(np.float32(so))
    g = float(np.float32(sg)) * gq.astype(np.float64)
    b = np.floor(float(np.float32(sb)) * bq.astype(np.float64) / so64 + 0.5)
    y = np.floor(g * normalized(q, sx, eps) * gain / so64 + b + 0.5) + zo
    return np.clip(y, 0, (1 << bits) - 1).astype(np.int64)


def spec_codes(q: np.ndarray, sx: float, gq: np.ndarray, sg: float, bq: np.ndarray, sb: float, so: float,
               zo: int, bits: int = 8, eps: float = 1e-5, multipliers: np.ndarray | None = None) -> np.ndarray:
    """The spec: ``round(gq (q - mean') r / 2^16 + round(beta / s_out))`` with ``mean'`` = ``S1 * float32(1/N)``
    floored to 1/64 of a code and ``r`` per row the spec's ``row_multipliers`` (``1 / sigma`` by float32's fast
    inverse square root) unless ``multipliers`` ([1, R, 1]) are given."""
    so64 = float(np.float32(so))
    x = q.astype(np.float64)
    d = x - np.floor(x.sum(axis=-1, keepdims=True) * float(np.float32(1.0 / x.shape[-1])) * 64) / 64
    r = spec_multipliers(q, sx, sg, so, eps) if multipliers is None else multipliers
    b = np.floor(float(np.float32(sb)) * bq.astype(np.float64) / so64 + 0.5)
    y = np.floor(gq * d * r / 2.0**16 + b + 0.5) + zo
    return np.clip(y, 0, (1 << bits) - 1).astype(np.int64)


def variance_codes(q: np.ndarray, sx: float, eps: float = 1e-5) -> np.ndarray:
    """``var + eps / s_in^2`` per row ([..., 1], input codes, float64; ``W / N^2`` from the integer ``W = N S2 - S1^2``)."""
    x, n = q.astype(np.int64), q.shape[-1]
    s1 = x.sum(axis=-1, keepdims=True)
    w = n * (x * x).sum(axis=-1, keepdims=True) - s1 * s1
    return w.astype(np.float64) / float(n * n) + eps / float(np.float32(sx)) ** 2


def exact_multipliers(q: np.ndarray, sx: float, sg: float, so: float, eps: float = 1e-5) -> np.ndarray:
    """``2^16 s_g / (s_out sigma)`` per row, exact (float64), not floored."""
    return 2.0**16 * float(np.float32(sg)) / (float(np.float32(so)) * np.sqrt(variance_codes(q, sx, eps)))


def spec_multipliers(q: np.ndarray, sx: float, sg: float, so: float, eps: float = 1e-5) -> np.ndarray:
    """The spec's per-row multiplier (``spec/qnn_layernorm.row_multipliers``)."""
    from openqnn.backends.htp.spec.qnn_layernorm import multiplier_constant, row_multipliers

    return row_multipliers(multiplier_constant(sg, so), variance_codes(q, sx, eps)).astype(np.float64)


def near_integer_rows(seed: int, n: int, sx: float, sg: float, so: float, rows: int = 512, below: float = 8e-6,
                      eps: float = 1e-5) -> np.ndarray:
    """[1, rows, n] 8-bit codes (normal rows, standard deviation 5 to 60, centres 60 to 196) whose exact multiplier
    sits just above an integer, ``0 <= frac / multiplier < below``, spread evenly over that range: the rows where a
    slightly low ``1 / sigma`` takes the integer below (``floor - 1``), which tells how low QNN's is."""
    rng = np.random.default_rng(seed)
    cand = max(20000, 40_000_000 // n)
    sd, c = rng.uniform(5, 60, (cand, 1)), rng.uniform(60, 196, (cand, 1))
    q = np.clip(np.rint(c + sd * rng.standard_normal((cand, n))), 0, 255).astype(np.int64)
    m = exact_multipliers(q, sx, sg, so, eps)[:, 0]
    rel = (m - np.floor(m)) / m
    sel = np.where(rel < below)[0]
    sel = sel[np.argsort(rel[sel])]
    return q[sel[np.linspace(0, len(sel) - 1, min(rows, len(sel))).astype(int)]][None]


def multipliers_used(arch: str, q: np.ndarray, sx: float, sg: float, so: float,
                     eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``q`` ([1, R, N]; gamma codes 255, beta 0, zero points 128): which of ``floor(m)`` and
    ``floor(m) - 1`` (m the exact multiplier) the simulator used, as (floor codes match, floor - 1 codes match),
    the output path applied (rows where both or neither match decide nothing)."""
    from tests.fidelity.harness import through_output_path

    n = q.shape[-1]
    gq, bq = np.full(n, 255), np.zeros(n, np.int64)
    sim, path = run_output(arch, q, sx, 128, gq, sg, bq, 1e-3, so, 128, eps=eps)
    m0 = np.floor(exact_multipliers(q, sx, sg, so, eps))

    def match(m: np.ndarray) -> np.ndarray:
        codes = through_output_path(spec_codes(q, sx, gq, sg, bq, 1e-3, so, 128, eps=eps, multipliers=m), path, -128)
        return np.asarray((codes == sim).all(axis=-1)[0])

    return match(m0), match(m0 - 1)


# -- 16-bit codes (spec rule 3) ------------------------------------------------------------------------


def spec16_codes(q: np.ndarray, sx: float, gq: np.ndarray, sg: float, bq: np.ndarray, sb: float, so: float, zo: int,
                 eps: float = 1e-5, round_multiplier: bool = True) -> np.ndarray:
    """Rule 3 for uint16 codes ``q`` ([..., N]): the mean on the qf32 grid (``mean16``), the row multiplier
    ``float32(s_g) / float32(s_out) / sigma`` rounded to 16 significant bits (``row_multipliers16``; exact where
    ``round_multiplier`` is False), beta in output codes, the sum rounded half away from zero."""
    from openqnn.backends.htp.spec.qnn_layernorm import mean16, row_multipliers16

    x, n = np.asarray(q, dtype=np.int64), q.shape[-1]
    s1 = x.sum(axis=-1, keepdims=True)
    w = n * (x * x).sum(axis=-1, keepdims=True) - s1 * s1
    mean = mean16(s1, n)
    var = w / float(n * n) + (mean - s1 / n) ** 2 + eps / float(np.float32(sx)) ** 2
    c = float(np.float32(sg) / np.float32(so))
    if round_multiplier:
        m, k = row_multipliers16(c, var)
        mult = np.ldexp(m.astype(np.float64), k)
    else:
        mult = c / np.sqrt(var)
    bc = np.floor(float(np.float32(sb)) * np.asarray(bq, dtype=np.float64) / float(np.float32(so)) + 0.5)
    y = np.asarray(gq, dtype=np.float64) * mult * (x - mean) + bc
    y = np.copysign(np.floor(np.abs(y) + 0.5), y) + zo
    return np.clip(y, 0, 65535).astype(np.int64)


def mean_rows(n: int, c: int, ks: Sequence[int]) -> np.ndarray:
    """[1, len(ks), n] uint16 codes: the constant ``c`` with ``k`` codes one higher (``|k|`` one lower for k < 0;
    one higher and one lower for k = 0, so the mean is exactly ``c``): the exact mean is ``c + k / N``."""
    q = np.full((len(ks), n), c, dtype=np.int64)
    for i, k in enumerate(ks):
        if k > 0:
            q[i, :k] += 1
        elif k < 0:
            q[i, :-k] -= 1
        else:
            q[i, :2] += (1, -1)
    return q[None]


def implied_mean_units(q: np.ndarray, sim: np.ndarray, so: float, zo: int) -> np.ndarray:
    """Per row of :func:`mean_rows` (gamma codes 255 of scale 1/255, beta 0, eps negligible), the mean QNN subtracted,
    read from a constant element's code: ``(mean' - c) / u`` with ``u`` the float32 ulp of ``c``. The code is ``-(mean'
    - c) / sigma`` times 255 float32(1/255) / s_out, its gain within 2^-16 of exact: to about 1e-4 of ``u``
    where the code is about 10^4 (NaN where it saturates)."""
    x = q[0].astype(np.float64)
    c = x[:, -1]
    sigma = np.sqrt(((x - x.mean(axis=-1, keepdims=True)) ** 2).mean(axis=-1))
    gain = 255 * float(np.float32(1 / 255)) / float(np.float32(so))
    u = np.exp2(np.floor(np.log2(c)) - 23)
    y = sim[0, :, -1].astype(np.float64)
    return np.where((y > 0) & (y < 65535), -(y - zo) * sigma / gain / u, np.nan)  # NaN: saturated, unread


def ramp_rows(seed: int, rows: int = 64, n: int = 256) -> np.ndarray:
    """[1, rows, n] uint16 codes: symmetric ramps ``c + round(linspace(-a, a))`` (a from 50 to 12,000 codes, c from
    13,000 to 52,000): an exact mean and codes spread over the output range, which fixes each row's gain to ~1e-7."""
    rng = np.random.default_rng(seed)
    a, c = np.exp(rng.uniform(np.log(50), np.log(12000), rows)), rng.integers(13000, 52000, rows)
    return np.stack([c[i] + np.round(np.linspace(-a[i], a[i], n)).astype(np.int64) for i in range(rows)])[None]


def random_rows16(seed: int, rows: int, n: int) -> np.ndarray:
    """[1, rows, n] uint16 codes: normal rows, centres 3,000 to 62,000, standard deviations 20 to 10,000 codes."""
    rng = np.random.default_rng(seed)
    cen, sd = rng.uniform(3000, 62000, (rows, 1)), np.exp(rng.uniform(np.log(20), np.log(10000), (rows, 1)))
    return np.clip(np.rint(cen + sd * rng.standard_normal((rows, n))), 0, 65535).astype(np.int64)[None]


def probe_rows(seed: int = 1, n: int = 256) -> np.ndarray:
    """[1, 60, n] 8-bit codes: 30 uniform ramps around 128 (half-width 8 to 124) and 30 normal rows."""
    ramps = np.stack([np.round(np.linspace(128 - w, 127 + w, n)).astype(np.int64) for w in range(8, 128, 4)])
    rng = np.random.default_rng(seed)
    normal = np.clip(np.rint(128 + rng.uniform(5, 60, (30, 1)) * rng.standard_normal((30, n))), 0, 255)
    return np.concatenate([ramps, normal.astype(np.int64)])[None]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fidelity.layernorm_probe", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="73")
    p.add_argument("--bits", type=int, choices=(8, 16), default=8, help="8-bit probes (rules 1, 2) or 16-bit (rule 3)")
    args = p.parse_args(argv)
    missing = simulator_missing()
    if missing:
        print(missing)
        return 1
    if args.bits == 16:
        return _main16(args.arch)
    q = probe_rows()
    n = q.shape[-1]
    rng = np.random.default_rng(7)
    for so in (1 / 255, 4 / 255, 12 / 255, 0.01, 0.037):
        for gq, sg in ((np.full(n, 255), 1 / 255), (np.full(n, 100), 0.01), (rng.integers(100, 256, n), 1 / 200)):
            bq = rng.integers(-300, 300, n)
            sim = run_codes(args.arch, q, 0.05, 128, gq, sg, bq, 1e-3, so, 128)
            ours, ex = spec_codes(q, 0.05, gq, sg, bq, 1e-3, so, 128), exact_codes(q, 0.05, gq, sg, bq, 1e-3, so, 128)
            print(f"v{args.arch} s_out={so:.4f} gamma codes {int(gq.min())}..{int(gq.max())}, s_g={sg:.4f}: spec {np.mean(ours == sim):.2%} "
                  f"(max {int(np.abs(ours - sim).max())}), exact rounding {np.mean(ex == sim):.2%} of {sim.size}", flush=True)
    return 0


def _main16(arch: str) -> int:
    from openqnn.backends.htp.spec.qnn_layernorm import qf32_grid

    ks = list(range(-12, 13))
    for n, c in ((256, 40000), (256, 20000), (128, 40000), (512, 20000), (64, 40000), (100, 40000), (768, 40000)):
        q = mean_rows(n, c, ks)
        nq = q.shape[-1]
        sim = run_codes(arch, q, 1e-3, 32768, np.full(nq, 255), 1 / 255, np.zeros(nq, np.int64), 1e-3, 1e-5, 32768,
                        bits=16, eps=1e-12)
        got = implied_mean_units(q, sim, 1e-5, 32768)
        u = 2.0 ** (np.floor(np.log2(c)) - 23)
        want = qf32_grid(np.array(ks) / n / u + 1) if n & (n - 1) == 0 else None
        read = ~np.isnan(got)
        rule = "" if want is None else f", qf32_grid(k + 1): {np.mean(np.abs(got - want)[read] < 0.01):.0%} of {read.sum()} rows"
        print(f"v{arch} mean rows N={n} c={c}: mean' - exact (ulps) " + " ".join(f"{v - k / n / u:+.2f}" for k, v in
                                                                                 zip(ks, got)) + rule, flush=True)
    rng = np.random.default_rng(3)
    for name, q in (("ramp", ramp_rows(21)), ("normal N=256", random_rows16(4, 48, 256)),
                    ("normal N=64", random_rows16(5, 48, 64)), ("normal N=768", random_rows16(6, 24, 768)),
                    ("normal N=17", random_rows16(7, 48, 17))):
        n = q.shape[-1]
        for gq, sg, so in ((np.full(n, 255), 1 / 255, 1.75 / 32768), (rng.integers(131, 256, n), 0.004, 6e-5)):
            bq = rng.integers(-2000, 2000, n)
            sim = run_codes(arch, q, 1e-3, 32768, gq, sg, bq, 2e-4, so, 32768, bits=16)
            ours = spec16_codes(q, 1e-3, gq, sg, bq, 2e-4, so, 32768)
            plain = spec16_codes(q, 1e-3, gq, sg, bq, 2e-4, so, 32768, round_multiplier=False)
            ex = exact_codes(q, 1e-3, gq, sg, bq, 2e-4, so, 32768, bits=16)
            print(f"v{arch} {name} s_out={so:.3g}: spec {np.mean(ours == sim):.2%} (max {int(np.abs(ours - sim).max())}), "
                  f"multiplier unrounded {np.mean(plain == sim):.2%}, exact rounding {np.mean(ex == sim):.2%} of {sim.size}",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
