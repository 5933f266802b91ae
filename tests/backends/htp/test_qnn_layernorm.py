"""htp_config.arithmetic = "qnn": QNN's LayerNorm of 8- and 16-bit codes (spec/qnn_layernorm.py) on v68 and v73.
The kernels' fast paths equal their references, both equal a float64 reading of the spec, and other archs or
TFLite's arithmetic keep the general normalization. (Against QNN's simulator: tests/fidelity/test_qnn_layernorm.py.)"""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
import torch
from test_elementwise import _enc, _float, _graph, _param_enc

from openqnn.backends.htp.arch import ARCHS
from openqnn.backends.htp.kernels import HTP_KERNELS, HtpBuildContext, QParams
from openqnn.backends.htp.kernels.registry import storage_dtype
from openqnn.ir import Graph


def _ln_graph(rng: np.random.Generator, shape: tuple[int, ...], bw: int = 8, eps: float = 1e-5) -> Graph:
    n = shape[-1]
    gam, bet = rng.uniform(0.3, 1.7, n), rng.uniform(-0.5, 0.5, n)
    lo = -float(np.exp(rng.uniform(-3.0, 1.0)))
    g = _graph("LayerNorm", [(shape, _enc(lo, lo + float(np.exp(rng.uniform(-2.0, 2.0))), bw), None),
                             ((n,), _param_enc(gam), gam), ((n,), _param_enc(bet, 8), bet)],
               {"axes": [-1], "epsilon": eps})
    width = float(rng.uniform(2.0, 8.0))
    g.tensors["out"].encoding = _enc(-width / 2, width / 2, bw)
    return g


def _run(g: Graph, x: np.ndarray, arch: str, arithmetic: str) -> tuple[str, np.ndarray]:
    node = g.nodes[0]
    step = HTP_KERNELS[node.op_type](node, HtpBuildContext(g, ARCHS[arch], arithmetic=arithmetic))
    ref = step.reference(np.asarray(x, np.int64))
    bw = g.tensors["out"].encoding.bitwidth  # type: ignore[union-attr]
    fast = step.fast(torch.from_numpy(np.asarray(x, np.int64)).to(storage_dtype(bw)))
    np.testing.assert_array_equal(ref, fast.numpy().astype(np.int64))
    assert step.plan is not None
    return step.plan.kernel, ref


def _f32(a: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", a))[0])


def _fast_rsqrt(v: float) -> float:
    """float32's fast inverse square root, written apart from the spec: Python floats rounded to float32 by
    struct after every operation, the seed from the float32 bits."""
    v = _f32(v)
    y = struct.unpack("<f", struct.pack("<i", 0x5F3759DF - (struct.unpack("<i", struct.pack("<f", v))[0] >> 1)))[0]
    h = _f32(v * 0.5)
    for _ in range(2):
        y = _f32(y * _f32(1.5 - _f32(_f32(h * y) * y)))
    return y


def _spec(g: Graph, x: np.ndarray) -> np.ndarray:
    """The spec in float64: the mean floored to 1/64 from S1 * float32(1/N), the row multiplier
    floor(2^16 float32(s_g / s_out) / sigma) with 1 / sigma float32's fast inverse square root, gamma's codes,
    beta in output codes."""
    qi, qg, qb, qo = (QParams.of(g.tensors[t].encoding) for t in ("x0", "c1", "c2", "out"))  # type: ignore[arg-type]
    n = x.shape[-1]
    xf = x.astype(np.float64)
    mean = np.floor(xf.sum(-1, keepdims=True) * float(np.float32(1.0 / n)) * 64) / 64
    xi = x.astype(np.int64)
    w = n * (xi * xi).sum(-1, keepdims=True) - xi.sum(-1, keepdims=True) ** 2
    var = w / float(n * n) + float(g.nodes[0].attrs["epsilon"]) / float(qi.scale[0]) ** 2
    c = _f32(_f32(float(qg.scale[0])) / _f32(float(qo.scale[0]))) * 2.0**16
    r = np.vectorize(lambda v: math.floor(c * _fast_rsqrt(v)) if v > 0 else 0)(var).astype(np.float64)
    gq = np.asarray(g.tensors["c1"].encoding and np.rint(g.tensors["c1"].data / qg.scale[0]), np.float64)
    beta = (np.rint(g.tensors["c2"].data / qb.scale[0])) * qb.scale[0]
    y = np.floor(gq * (xf - mean) * r / 2.0**16 + np.floor(beta / qo.scale[0] + 0.5) + 0.5) - qo.offset[0]
    return np.clip(y, qo.qmin, qo.qmax).astype(np.int64)


@pytest.mark.parametrize("arch", ["v68", "v73"])
@pytest.mark.parametrize("seed", range(6))
def test_layernorm_fast_equals_reference_equals_spec(arch: str, seed: int) -> None:
    rng = np.random.default_rng(1200 + seed)
    n = int(rng.choice([17, 64, 100, 256, 768]))
    g = _ln_graph(rng, (2, int(rng.integers(1, 9)), n), eps=float(rng.choice([1e-5, 1e-3, 0.1])))
    spread = rng.uniform(1, 80, (2, g.tensors["x0"].shape[1], 1))
    x = np.clip(np.rint(rng.uniform(60, 200) + spread * rng.standard_normal(g.tensors["x0"].shape)), 0, 255)
    x[0, 0] = 130  # a constant row
    kernel, got = _run(g, x.astype(np.int64), arch, "qnn")
    assert kernel == "htp.layernorm_qnn"
    want = _spec(g, x.astype(np.int64))
    assert np.mean(got == want) >= 0.999 and np.abs(got - want).max() <= 1  # float64 ties aside, identical
    qo = QParams.of(g.tensors["out"].encoding)  # type: ignore[arg-type]
    y = np.clip(np.rint(_float(g, {"x0": x.astype(np.int64)}) / qo.scale[0]) - qo.offset[0], qo.qmin, qo.qmax)
    assert np.abs(got - y).max() <= 2  # within two codes of float (gamma's and beta's own rounding)


@pytest.mark.parametrize("arithmetic,bw,arch", [("tflite", 8, "v73"), ("tflite", 16, "v73"), ("qnn", 16, "v69"),
                                              ("qnn", 8, "v69")])
def test_layernorm_elsewhere_keeps_the_general_kernel(arithmetic: str, bw: int, arch: str) -> None:
    rng = np.random.default_rng(7)
    g = _ln_graph(rng, (1, 3, 32), bw=bw)
    x = rng.integers(0, 1 << bw, (1, 3, 32))
    kernel, _ = _run(g, x, arch, arithmetic)
    assert kernel == "htp.norm"


@pytest.mark.parametrize("shape", [(1, 16, 768), (2, 8, 768), (1, 30, 768), (1, 10, 768), (1, 8, 1024), (1, 24, 256)])
def test_layernorm_large_shapes_follow_the_rule(shape: tuple[int, ...]) -> None:
    """BERT-sized rows: fast path = reference = the float64 spec, nonzero multiples of 4 from the zero point
    included (the simulator's graph outputs lack them on such shapes: its float16 output dequantization, not
    the LayerNorm's, docs/htp-fidelity.md)."""
    rng = np.random.default_rng(sum(shape))
    g = _ln_graph(rng, shape)
    x = np.clip(np.rint(128 + rng.uniform(5, 60, (*shape[:-1], 1)) * rng.standard_normal(shape)), 0, 255).astype(np.int64)
    kernel, got = _run(g, x, "v73", "qnn")
    assert kernel == "htp.layernorm_qnn"
    want = _spec(g, x)
    assert np.mean(got == want) >= 0.999 and np.abs(got - want).max() <= 1
    qo = QParams.of(g.tensors["out"].encoding)  # type: ignore[arg-type]
    z = got + qo.offset[0]
    assert 0.15 < np.mean((z % 4 == 0) & (z != 0)) < 0.35


def test_rsqrt_is_float32_fast_inverse_square_root() -> None:
    """spec/qnn_layernorm.rsqrt_f32 equals the struct-rounded reading above, and lies 0 to 4.7e-6 below 1/sqrt(v)
    (below, float32 rounding aside: what takes a multiplier just above an integer one lower)."""
    from openqnn.backends.htp.spec.qnn_layernorm import rsqrt_f32

    rng = np.random.default_rng(5)
    v = np.exp(rng.uniform(-3, 12, 4000)).astype(np.float32)
    got = rsqrt_f32(v).astype(np.float64)
    assert np.array_equal(got, [_fast_rsqrt(float(a)) for a in v])
    err = 1 - got * np.sqrt(v.astype(np.float64))
    assert err.min() >= -2e-7 and 3e-6 < err.max() < 4.8e-6  # float32 rounding aside, never above


# -- 16-bit codes (rule 3) -----------------------------------------------------------------------


def _qf32_kept(t: float) -> float:
    """The qf32 grid read apart from the spec: the nearest of the values 1, 2 or 3 above a multiple of 4 units,
    exact multiples of 4 going one up and the upper half of (2.5, 4) down to 3 (quic/qemu's rnd_sat_qf_sig)."""
    base = 4 * math.floor(t / 4)
    f = t - base
    return base + (1 if f <= 1.5 else 2 if f <= 2.5 else 3)


def _spec16(g: Graph, x: np.ndarray) -> np.ndarray:
    """Rule 3 in Python floats, row by row: the mean on the qf32 grid of its binade, the row multiplier
    float32(s_g) / float32(s_out) / sigma rounded to 16 significant bits (saturated), gamma's codes, beta in
    output codes, the sum rounded half away from zero."""
    qi, qg, qb, qo = (QParams.of(g.tensors[t].encoding) for t in ("x0", "c1", "c2", "out"))  # type: ignore[arg-type]
    n = x.shape[-1]
    gq = np.rint(g.tensors["c1"].data / qg.scale[0]).astype(np.int64)  # type: ignore[operator]
    bc = np.floor(np.rint(g.tensors["c2"].data / qb.scale[0]) * qb.scale[0] / qo.scale[0] + 0.5)  # type: ignore[operator]
    c = _f32(_f32(float(qg.scale[0])) / _f32(float(qo.scale[0])))
    eps = float(g.nodes[0].attrs["epsilon"]) / float(qi.scale[0]) ** 2
    out = np.zeros(x.shape, np.int64)
    for idx in np.ndindex(*x.shape[:-1]):
        row = [int(v) for v in x[idx]]
        s1 = sum(row)
        if s1 == 0:
            mean = 0.0
        else:
            pow2 = n & (n - 1) == 0
            t = s1 / n if pow2 else s1 * _f32(1.0 / n)
            unit = 2.0 ** (math.frexp(t)[1] - 1 - 23)
            mean = _qf32_kept(t / unit + (1 if pow2 else 0)) * unit
        w = n * sum(v * v for v in row) - s1 * s1
        var = w / float(n * n) + (mean - s1 / n) ** 2 + eps
        if var > 0:
            xm = c / math.sqrt(var)
            k = math.frexp(xm)[1] - 16
            m = min(math.floor(math.ldexp(xm, -k) + 0.5), 65535)
        else:
            k = m = 0
        for j, v in enumerate(row):
            y = math.ldexp(float(gq[j] * m) * (v - mean), k) + bc[j]
            out[(*idx, j)] = math.copysign(math.floor(abs(y) + 0.5), y) - qo.offset[0]
    return np.clip(out, qo.qmin, qo.qmax)


@pytest.mark.parametrize("arch", ["v68", "v73"])
@pytest.mark.parametrize("seed", range(6))
def test_layernorm16_fast_equals_reference_equals_spec(arch: str, seed: int) -> None:
    rng = np.random.default_rng(1600 + seed)
    n = int(rng.choice([17, 64, 100, 256, 768]))
    g = _ln_graph(rng, (2, int(rng.integers(1, 6)), n), bw=16, eps=float(rng.choice([1e-5, 1e-3, 0.1])))
    shape = g.tensors["x0"].shape
    spread = np.exp(rng.uniform(np.log(2), np.log(15000), (2, shape[1], 1)))
    x = np.clip(np.rint(rng.uniform(500, 65000, (2, shape[1], 1)) + spread * rng.standard_normal(shape)), 0, 65535)
    x[0, 0] = 40000  # a constant row
    x[-1, -1, :3] += 1  # a row whose mean is exact, a few 1/N above its constant
    x = x.astype(np.int64)
    kernel, got = _run(g, x, arch, "qnn")
    assert kernel == "htp.layernorm_qnn16"
    want = _spec16(g, x)
    assert np.array_equal(got, want)
    qo = QParams.of(g.tensors["out"].encoding)  # type: ignore[arg-type]
    y = np.clip(np.rint(_float(g, {"x0": x}) / qo.scale[0]) - qo.offset[0], qo.qmin, qo.qmax)
    assert np.abs(got - y).max() <= 2  # within two codes of float (gamma's and beta's own rounding)


def test_qf32_grid_never_keeps_a_multiple_of_four_units() -> None:
    from openqnn.backends.htp.spec.qnn_layernorm import mean16, qf32_grid

    t = np.arange(-40, 40, 0.25)
    got = qf32_grid(t)
    assert np.array_equal(got, [_qf32_kept(float(v)) for v in t])
    assert not np.any(got % 4 == 0) and np.all(np.abs(got - t) <= 1.5)
    # a constant row of 256 codes plus k codes one higher, mean in [2^15, 2^16): k + 1 ulps kept as qf32_grid keeps them
    k = np.arange(-12, 13)
    got = (mean16(256 * 40000 + k, 256) - 40000) * 256
    assert list(got) == [_qf32_kept(float(v) + 1) for v in k]


def test_row_multiplier16_saturates_below_a_power_of_two() -> None:
    from openqnn.backends.htp.spec.qnn_layernorm import row_multipliers16

    m, k = row_multipliers16(1.0, np.array([4.0**-3, 4.0**-3 * (1 + 1e-9), 3.0]))
    assert list(m) == [32768, 65535, round(2**16 / math.sqrt(3))]
    assert list(k) == [-12, -13, -16]
