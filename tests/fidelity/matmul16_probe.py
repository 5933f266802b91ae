"""Probe how QNN's HTP simulator computes MatMul of two 16-bit activations.

``python -m tests.fidelity.matmul16_probe --arch 73 [--seed 0]``

QDQ models ``DQ(a) @ DQ(b) -> Q`` with uint16 codes (``matmul_probe.model`` with 16 bits), three probes:

- ``convert``: in[1] takes every uint16 code (one row, 65,536 columns), in[0] two codes ``z_a +- 30000``: each
  output code then shows the uint8 code QNN EP's inserted Convert gave that in[1] code (one step of it is about
  234 output codes); compared with ``spec/qnn_matmul16.py``'s ``convert_codes`` and with exact rounding;
- ``sweep``: in[0] takes every uint16 code against 16 fixed weights: the accumulator's byte split and the
  requantization;
- ``random``: random products (K = 1 to 128, zero points on either side, multipliers 1e-5 to 1e-2): the spec,
  and exact rounding of the converted operand's product.

Findings on onnxruntime-qnn 2.7.0 (QNN 2.51): docs/htp-fidelity.md, "16-bit MatMul, Softmax and LayerNorm".
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from tests.fidelity.harness import simulator_missing
from tests.fidelity.matmul_probe import sim_codes


def convert_probe(arch: str, sb: float, zb: int, za: int = 32768) -> dict[str, float]:
    """Share of in[1]'s 65,536 uint16 codes whose converted uint8 code (read from the simulator) the spec's
    conversion and exact rounding give."""
    from openqnn.backends.htp.spec.qnn_matmul16 import convert_codes, converted_encoding

    s8, z8 = converted_encoding(sb, zb)
    qa = np.array([za + 30000, za - 30000]).reshape(1, 2, 1)
    qb = np.arange(65536).reshape(1, 1, 65536)
    sa, zo = 2e-4, 32768
    so = float(np.float32(sa * s8 * 128))  # one uint8 step of in[1]: 30000 * M = 234 output codes
    sim = sim_codes(arch, qa, qb, sa, za, sb, zb, so, zo, bits=16)[0].astype(np.float64)
    m = float(np.float32(sa)) * s8 / float(np.float32(so))
    v = np.stack([(sim[0] - zo) / (30000 * m), (sim[1] - zo) / (-30000 * m)])
    use = np.where(np.abs(v[0]) < 139, v[0], v[1])  # the row whose output did not saturate
    ok = np.abs(use) < 139
    seen = np.round(use).astype(np.int64) + z8
    q = np.arange(65536)
    exact = np.clip(np.round((q - zb) * float(np.float32(sb)) / s8) + z8, 0, 255)
    return {"spec": float(np.mean(convert_codes(q, zb, z8)[ok] == seen[ok])),
            "exact": float(np.mean(exact[ok] == seen[ok]))}


def candidates(arch: str, qa: np.ndarray, qb: np.ndarray, sa: float, za: int, sb: float, zb: int, so: float,
               zo: int) -> dict[str, np.ndarray]:
    """The spec's codes and exact rounding of the product with in[1] converted (the spec's conversion)."""
    from openqnn.backends.htp.spec.qnn_matmul16 import QnnMatMul16Spec, convert_codes, converted_encoding

    spec = QnnMatMul16Spec.of(f"v{arch}", sa, sb, zb, so, zo)
    s8, z8 = converted_encoding(sb, zb)
    acc = np.matmul(qa - za, convert_codes(qb, zb, z8) - z8)
    m = float(np.float32(sa)) * s8 / float(np.float32(so))
    return {"spec": spec.apply_np(qa, za, qb), "exact (converted)": np.clip(np.floor(acc * m + 0.5) + zo, 0, 65535)}


def sweep_probe(arch: str, za: int, m: float) -> dict[str, float]:
    """in[0] over every uint16 code against 16 weights (in[1] zero point 32768): share of identical codes."""
    from openqnn.backends.htp.spec.qnn_matmul16 import converted_encoding

    ws = np.array([1, 2, 3, 5, 7, 13, 64, 100, 127, -1, -2, -7, -128, -100, 37, 90])
    zb, sb, sa, zo = 32768, 1e-3, 1e-3, 30000
    s8, _ = converted_encoding(sb, zb)
    qb = np.clip(zb + 257 * ws, 0, 65535).reshape(1, 1, -1)
    qa = np.arange(65536).reshape(1, 65536, 1)
    so = float(np.float32(sa * s8 / m))
    sim = sim_codes(arch, qa, qb, sa, za, sb, zb, so, zo, bits=16)
    return {n: float(np.mean(c == sim)) for n, c in candidates(arch, qa, qb, sa, za, sb, zb, so, zo).items()}


def random_probe(arch: str, rng: np.random.Generator, k: int, za: int, zb: int) -> dict[str, float]:
    """A random [2, 16, K] x [2, K, 24] product of uint16 codes: share of identical codes per candidate."""
    from openqnn.backends.htp.spec.qnn_matmul16 import convert_codes, converted_encoding

    qa = rng.integers(0, 65536, (2, 16, k))
    qb = rng.integers(0, 65536, (2, k, 24))
    sa, sb = float(np.float32(rng.uniform(1e-4, 1e-3))), float(np.float32(rng.uniform(1e-4, 1e-3)))
    s8, z8 = converted_encoding(sb, zb)
    acc = np.matmul(qa - za, convert_codes(qb, zb, z8) - z8)
    so = float(np.float32(sa * s8 * max(float(acc.std()), 1.0) / float(rng.choice([300, 3000, 12000]))))
    zo = int(rng.integers(20000, 45000))
    sim = sim_codes(arch, qa, qb, sa, za, sb, zb, so, zo, bits=16)
    return {n: float(np.mean(c == sim)) for n, c in candidates(arch, qa, qb, sa, za, sb, zb, so, zo).items()}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fidelity.matmul16_probe", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="73")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    missing = simulator_missing()
    if missing:
        print(missing)
        return 1
    rng = np.random.default_rng(args.seed)
    for _ in range(6):
        zb, sb = int(rng.integers(0, 65536)), float(np.float32(10 ** rng.uniform(-5, -1)))
        print(f"v{args.arch} convert zb={zb:5d} sb={sb:.3g}:", convert_probe(args.arch, sb, zb), flush=True)
    for za in (32768, 0, 12345):
        for m in (0.01, 0.0017, 3e-4, 4.1e-5):
            print(f"v{args.arch} sweep za={za:5d} M={m:.2g}:", sweep_probe(args.arch, za, m), flush=True)
    total: dict[str, list[float]] = {}
    for k in (1, 2, 4, 16, 64, 128):
        for za, zb in ((32768, 32768), (12000, 20000), (50000, 43960), (0, 0), (65535, 3)):
            same = random_probe(args.arch, rng, k, za, zb)
            print(f"v{args.arch} K={k:3d} za={za:5d} zb={zb:5d}", "  ".join(f"{n} {v:.4f}" for n, v in same.items()),
                  flush=True)
            for n, v in same.items():
                total.setdefault(n, []).append(v)
    print("mean:", "  ".join(f"{n} {np.mean(v):.4%} (min {np.min(v):.4f})" for n, v in total.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
