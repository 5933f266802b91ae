"""Probe how QNN's HTP simulator computes a Softmax of 16-bit codes (open: docs/htp-fidelity.md, "16-bit LayerNorm
(stop 26)", its Softmax paragraph).

``python -m tests.fidelity.softmax16_probe --arch 73``

Rows of two codes ``[65535, 65535 - k]`` (output scale 1/65536, zero point 0) read the exponential ``e(k)`` as the
ratio of the two output codes, to about 3e-5: against ``exp(-k s_in)`` its relative error is a periodic function
of ``t = k s_in log2(e)`` with period 1 (+1.8e-4 near frac(t) = 0.12, 0 near 0.28, -5.5e-4 near 0.7), which a cubic
``2^-f ~ (32768 - 22627 f + 7415 f^2 - 1172 f^3) / 32768`` (f = frac(t), exact at both ends) fits to the reading
precision: ``pair_codes``, ``round(65536 e_i / sum e)`` with those exponentials, gives 97.3% of the pair codes
(exact rounding 9-47%). Rows of five or more take more precise exponentials (the cubic does worse there than exact
rounding): not this route. Findings on onnxruntime-qnn 2.7.0, v73.

Rows of three or more (docs/htp-fidelity.md, "16-bit Softmax (stop 26)"): rows ``[max, max - k, far x 14]``
(``two_level_rows``) give the maximum's code as ``4 p - 2`` on every row (``(32767 r) >> 14`` with an even
reciprocal ``r = 2 p``), so ``read_exponentials`` recovers each row's Q15 exponential ``E[k]`` exactly (one integer
fits each row), and with it ``src/openqnn/backends/htp/spec/qnn_softmax16.py`` (a Q22 step, Q15 exponentials).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from tests.fidelity.harness import simulate, simulator_missing

CUBIC = (32768, -22627, 7415, -1172)  # 2^-f in units of 2^-15, fitted (not read from a library)


def _model(shape: tuple[int, ...], sx: np.float32, so: np.float32) -> bytes:
    from onnx import TensorProto, helper
    from onnx import numpy_helper as nh

    inits = [nh.from_array(np.array(sx), "sx"), nh.from_array(np.array(0, np.uint16), "zx"),
             nh.from_array(np.array(so), "so"), nh.from_array(np.array(0, np.uint16), "zo")]
    nodes = [helper.make_node("QuantizeLinear", ["xf", "sx", "zx"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["x"]),
             helper.make_node("Softmax", ["x"], ["y"], axis=-1),
             helper.make_node("QuantizeLinear", ["y", "so", "zo"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "so", "zo"], ["yo"])]
    g = helper.make_graph(nodes, "probe", [helper.make_tensor_value_info("xf", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("yo", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)]).SerializeToString()


def run_codes(arch: str, q: np.ndarray, sx: float, so: float = 1 / 65536) -> np.ndarray:
    """The simulator's uint16 output codes of the Softmax (last axis) of the uint16 codes ``q`` ([1, R, N])."""
    sx32, so32 = np.float32(sx), np.float32(so)
    sim = simulate(_model(q.shape, sx32, so32), [{"xf": (sx32 * q.astype(np.float32)).astype(np.float32)}], arch)
    if sim.outputs is None:
        raise RuntimeError(f"the simulator refused the probe: {sim.refusal}")
    return np.rint(sim.outputs[0]["yo"].astype(np.float64) / float(so32)).astype(np.int64)


def pair_codes(q: np.ndarray, sx: float) -> np.ndarray:
    """``round(65536 e_i / sum e)`` with ``e = 2^-n CUBIC(f) / 2^15``, ``n + f = (max - q) s_in log2(e)`` (float64)."""
    t = (q.max(axis=-1, keepdims=True) - q) * float(np.float32(sx)) * np.log2(np.e)
    n = np.floor(t)
    f = t - n
    e = (CUBIC[0] + f * (CUBIC[1] + f * (CUBIC[2] + f * CUBIC[3]))) / 32768.0 * 2.0**-n
    return np.floor(65536 * e / e.sum(axis=-1, keepdims=True) + 0.5).astype(np.int64)


def exact_codes(q: np.ndarray, sx: float) -> np.ndarray:
    x = float(np.float32(sx)) * q.astype(np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return np.floor(65536 * e / e.sum(axis=-1, keepdims=True) + 0.5).astype(np.int64)


def two_level_rows(sx: float, n: int = 16) -> np.ndarray:
    """Rows ``[65535, 65535 - k, 0 x (n - 2)]`` for every ``k`` with ``k s_in < 14`` (the zeros' exponentials are 0)."""
    ks = np.arange(0, min(65535, int(14 / sx)))
    q = np.zeros((1, len(ks), n), np.int64)
    q[0, :, 0] = 65535
    q[0, :, 1] = 65535 - ks
    return q


def read_exponentials(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From ``two_level_rows``' codes (``[R, n]``): the reciprocal ``r = (c0 + 2) / 2`` (the maximum's code is
    ``(32767 r) >> 14``) and the interval ``[lo, hi]`` of integers ``E`` with ``(E r) >> 14`` equal to the second
    code; row 0 (``k = 0``) is the all-maxima row. Returns ``(lo, hi)``."""
    c0, c1 = codes[:, 0].astype(np.int64), codes[:, 1].astype(np.int64)
    r = (c0 + 2) // 2
    lo = -((-c1 << 14) // r)
    hi = -((-(c1 + 1) << 14) // r) - 1
    return lo, hi


def read_pow2(arch: str, steps: Sequence[int]) -> tuple[dict[int, int], int]:
    """QNN's ``g``: for each step ``C' = m 2^-22`` (``m`` in ``steps``; ``s_in = (m + 1/2) 2^-22 / log2(e)``), rows
    ``[max, max - k, far x 14]`` for every ``k`` with ``k C' < 1`` read ``E[k] = g(f16)``, ``f16 = (k m >> 6) mod 2^16``
    the fraction's top 16 bits. Returns ``({f16: g}, conflicts)``: reads of one ``f16`` that differ (none seen)."""
    g: dict[int, int] = {}
    conflicts = 0
    for m in steps:
        sx = float(np.float32((m + 0.5) * 2.0**-22 / np.log2(np.e)))
        ks = np.arange(0, (1 << 22) // m + 1)
        q = np.zeros((1, len(ks), 16), np.int64)
        q[0, :, 0] = 65535
        q[0, :, 1] = 65535 - ks
        lo, hi = read_exponentials(run_codes(arch, q, sx)[0])
        t = ks * m
        for k in np.nonzero((t >> 22 == 0) & (lo == hi) & (ks > 0))[0]:
            f16, e = int((t[k] >> 6) & 0xFFFF), int(lo[k])
            conflicts += int(g.setdefault(f16, e) != e)
    return g, conflicts


def random_rows(rng: np.random.Generator, n: int, rows: int = 64) -> np.ndarray:
    return np.clip(np.rint(rng.uniform(20000, 60000, (rows, 1)) + rng.uniform(100, 8000, (rows, 1))
                           * rng.standard_normal((rows, n))), 0, 65535).astype(np.int64)[None]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fidelity.softmax16_probe", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="73")
    args = p.parse_args(argv)
    missing = simulator_missing()
    if missing:
        print(missing)
        return 1
    ks = np.arange(0, 10400, 4)
    q = np.stack([np.full_like(ks, 65535), 65535 - ks], axis=1)[None]
    sim = run_codes(args.arch, q, 2e-4)
    print(f"v{args.arch} pairs (k = 0..10396, s_in 2e-4): cubic {np.mean(pair_codes(q, 2e-4) == sim):.2%}, "
          f"exact rounding {np.mean(exact_codes(q, 2e-4) == sim):.2%} of {sim.size}")
    rng = np.random.default_rng(5)
    for n in (2, 5, 17, 64):
        q = np.clip(np.rint(rng.uniform(20000, 60000, (32, 1)) + rng.uniform(100, 8000, (32, 1))
                            * rng.standard_normal((32, n))), 0, 65535).astype(np.int64)[None]
        sim = run_codes(args.arch, q, 4e-4)
        print(f"v{args.arch} random rows n={n}: cubic {np.mean(pair_codes(q, 4e-4) == sim):.2%}, exact rounding "
              f"{np.mean(exact_codes(q, 4e-4) == sim):.2%} of {sim.size}")
    from openqnn.backends.htp.spec.qnn_softmax16 import exp_table16, pow2_frac, softmax16_codes
    for sx in (2e-4, 3e-4, 3.7e-4):
        q = two_level_rows(sx)
        sim = run_codes(args.arch, q, sx)[0]
        lo, hi = read_exponentials(sim)
        ok = (sim[1:, 0] % 4 == 2).mean()
        e = exp_table16(sx)[: len(lo)]
        print(f"v{args.arch} two-level rows s_in {sx}: max code 4p-2 on {ok:.4%} of {len(lo) - 1} rows, one E fits "
              f"{np.mean(lo[1:] == hi[1:]):.4%}, spec's E {np.mean(e[1:] == lo[1:]):.2%}")
    g, conflicts = read_pow2(args.arch, np.random.default_rng(7).choice(np.arange(1100, 2000), 30, replace=False))
    f16 = np.array(sorted(g))
    read = np.array([g[int(x)] for x in f16])
    print(f"v{args.arch} g read at {len(g)} fractions (30 steps), {conflicts} conflicting reads; the spec's g "
          f"{np.mean(pow2_frac(f16) == read):.2%}, floor(2^15 2^-f) "
          f"{np.mean(np.minimum(np.floor(2.0 ** (15 - f16 / 65536.0)), 32767) == read):.2%} of them")
    rng = np.random.default_rng(11)
    for n in (3, 5, 8, 17, 64, 200):
        for sx in (2e-4, 3.5e-4):
            q = random_rows(rng, n)
            sim = run_codes(args.arch, q, sx)
            print(f"v{args.arch} random rows n={n} s_in {sx}: spec {np.mean(softmax16_codes(q, sx) == sim):.2%}, "
                  f"exact rounding {np.mean(exact_codes(q, sx) == sim):.2%} of {sim.size}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
