"""htp_config.arithmetic = "qnn": QNN's BatchNorm (spec/qnn_batchnorm.py). 16-bit codes run the integer form
(``htp.batchnorm_qnn``), 8-bit ones a table per channel; fast path == reference == the spec, the spec == the
documented rule and a few of the simulator's own codes. (Against the simulator: tests/fidelity/test_qnn_batchnorm.py.)"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from test_elementwise import _enc, _graph

from openqnn.backends.htp.arch import ARCHS
from openqnn.backends.htp.kernels import HTP_KERNELS, HtpBuildContext
from openqnn.backends.htp.spec.qnn_batchnorm import (
    K_RANGE,
    QnnBatchnormSpec,
    batchnorm_form,
    batchnorm_spec_for,
    exact_table,
    requantize_param,
    v73_table,
)
from openqnn.backends.htp.spec.qnn_unary import batchnorm_table
from openqnn.ir.tensor import Encoding

F32 = np.float32


def _graph16(c: int, seed: int, bits: int = 16, w_hi: float = 1.6):
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.3, w_hi, c)
    b = rng.uniform(-0.4, 0.3, c)
    g = _graph("Batchnorm", [((1, 3, 7, c), _enc(-2.1, 3.0, bits), None), ((c,), _enc(0.0, float(w.max()), 8), w),
                             ((c,), _enc(float(min(b.min(), 0)), float(max(b.max(), 0)), 8), b)])
    g.tensors["out"].encoding = _enc(-3.0, 4.0, bits)
    return g


def _run(g, arch: str, arithmetic: str, x: np.ndarray, bits: int):
    node = g.nodes[0]
    step = HTP_KERNELS[node.op_type](node, HtpBuildContext(g, ARCHS[arch], arithmetic=arithmetic))
    assert step.plan is not None
    ref = step.reference(x)
    fast = step.fast(torch.from_numpy(x).to(torch.uint8 if bits == 8 else torch.int32))
    np.testing.assert_array_equal(ref, fast.numpy().astype(np.int64))
    return step.plan.kernel, ref


def _params(g) -> tuple[float, int, np.ndarray, np.ndarray, float, int]:
    """(s_in, z_in, weight, bias, s_out, z_out) as QNN EP reads them (the codes' values)."""
    qi, qw, qb, qo = (g.tensors[n].encoding for n in ("x0", "c1", "c2", "out"))
    assert qi is not None and qw is not None and qb is not None and qo is not None

    def deq(name: str, q: Encoding) -> np.ndarray:
        codes = np.round(np.asarray(g.tensors[name].data, np.float64) / q.scale[0]) - q.offset[0]
        return (codes + q.offset[0]) * float(F32(q.scale[0]))

    return qi.scale[0], -qi.offset[0], deq("c1", qw), deq("c2", qb), qo.scale[0], -qo.offset[0]


def _rule(q: int, c: int, s_in: float, z_in: int, weight: np.ndarray, bias: np.ndarray, s_out: float, z_out: int,
          bits: int) -> int:
    """The documented integer form, one code at a time (spec/qnn_batchnorm.py's docstring)."""
    wc, ws, wz = requantize_param(weight)
    bc, bs, bz = requantize_param(bias)
    acc = F32(F32(s_in) * F32(ws))
    m_real = F32(acc / F32(s_out))
    k = 14 - math.floor(math.log2(float(m_real)))
    m = math.floor(float(m_real) * 2.0**k + 0.5)
    b = round(float(F32(F32(F32(bc[c] - bz) * F32(bs)) * F32(F32(1) / acc))))  # Python's round: half to even
    z = math.floor(float(F32(F32(F32(z_out) / m_real) + F32(0.5))))
    carry = (2048 if bits == 16 else 512) if k >= 16 else 0
    y = (((q - z_in) * int(wc[c] - wz) + b + z) * m + carry + 2 ** (k - 1)) >> k
    return min(max(y, 0), 2**bits - 1)


@pytest.mark.parametrize("arch", ["v68", "v73"])
def test_16bit_batchnorm_is_the_integer_form(arch: str) -> None:
    g = _graph16(6, 3)
    x = (np.arange(3 * 7 * 6) * 1543 % 65536).reshape(1, 3, 7, 6).astype(np.int64)
    kernel, ref = _run(g, arch, "qnn", x, 16)
    assert kernel == "htp.batchnorm_qnn"
    s_in, z_in, w, b, s_out, z_out = _params(g)
    spec = batchnorm_spec_for(arch, "qnn", s_in, z_in, w, b, s_out, z_out, 16)
    assert spec is not None and spec.carry == 2048
    np.testing.assert_array_equal(ref, spec.apply_np(x))
    for i in range(0, x.size, 7):
        q, c = int(x.reshape(-1)[i]), i % 6
        assert ref.reshape(-1)[i] == _rule(q, c, s_in, z_in, w, b, s_out, z_out, 16)
    kernel, tfl = _run(g, arch, "tflite", x, 16)
    assert kernel == "htp.batchnorm"
    assert np.abs(tfl - ref).max() <= 1 and (tfl != ref).any()


def test_16bit_batchnorm_of_large_weights_has_no_carry() -> None:
    """``k < 16`` (M >= 1/4): no carry; the fast path still equals the reference."""
    g = _graph16(4, 5, w_hi=600.0)
    x = (np.arange(3 * 7 * 4) * 977 % 65536).reshape(1, 3, 7, 4).astype(np.int64)
    kernel, ref = _run(g, "v73", "qnn", x, 16)
    assert kernel == "htp.batchnorm_qnn"
    spec = batchnorm_spec_for("v73", "qnn", *_params(g), 16)
    assert spec is not None and spec.shift < 16 and spec.carry == 0
    np.testing.assert_array_equal(ref, spec.apply_np(x))


@pytest.mark.parametrize("arch", ["v68", "v73"])
def test_8bit_batchnorm_tables(arch: str) -> None:
    """8-bit: a table per channel; v68's (two or more channels) is the integer form, v73's its convolution form."""
    g = _graph16(5, 1, bits=8)
    x = (np.arange(3 * 7 * 5) * 7 % 256).reshape(1, 3, 7, 5).astype(np.int64)
    kernel, ref = _run(g, arch, "qnn", x, 8)
    assert kernel == "htp.channel_table"
    p = _params(g)
    spec = batchnorm_spec_for(arch, "qnn", *p, 8)
    assert (spec is not None) == (arch == "v68")
    table = spec.table() if spec is not None else v73_table(*p)
    assert table is not None
    np.testing.assert_array_equal(ref, table[np.arange(5), x])
    np.testing.assert_array_equal(table, batchnorm_table(arch, *p))
    if spec is not None:
        assert spec.carry == 512
        for i in range(0, x.size, 5):
            q, c = int(x.reshape(-1)[i]), i % 5
            assert ref.reshape(-1)[i] == _rule(q, c, *p, 8)
    # one channel: exact rounding on both archs
    one = (p[0], p[1], p[2][:1], p[3][:1], p[4], p[5])
    np.testing.assert_array_equal(batchnorm_table(arch, *one), exact_table(*one))


def _v73_rule(q: int, c: int, s_in: float, z_in: int, weight: np.ndarray, bias: np.ndarray, s_out: float,
              z_out: int) -> int:
    """v73's 8-bit form, one code at a time (spec/qnn_batchnorm.py's docstring)."""
    wc, ws, wz = requantize_param(weight)
    bc, bs, bz = requantize_param(bias)
    w = int(wc[c] - wz)
    wx = min(max(w, -128), 127)
    ratio = 1.0
    if wx != w:
        mant, ex = math.frexp(w / wx)
        ratio = math.ldexp(math.floor(mant * 4096 + 0.5) / 4096, ex)
    acc_scale = F32(F32(F32(s_in) * F32(ws)) * F32(ratio))
    mult = float(F32(F32(F32(F32(s_in) * F32(ws)) / F32(s_out)) * F32(ratio)))
    b = math.trunc(float(F32(F32(F32(bc[c] - bz) * F32(bs)) / acc_scale)))
    k = 11 - math.floor(math.log2(mult))
    m = math.floor(mult * 2.0**k + 0.5)
    s = max(0, math.floor(-math.log2(mult)) - 3)
    acc = (q - z_in) * wx + b
    if s > 0:
        y = ((((acc >> s) << s) + 2 ** (s - 1)) * m + 2 ** (k - 1)) >> k
    else:
        y = ((acc * 2 ** (16 - k) + 1) * m + 2**15) >> 16
    return min(max(y + z_out, 0), 255)


@pytest.mark.parametrize("seed,w_hi,signed", [(2, 1.6, False), (4, 1.6, True), (6, 60.0, False)])
def test_v73_table_is_the_documented_form(seed: int, w_hi: float, signed: bool) -> None:
    """Weights beyond int8 (clamped, the scale grown), of both signs, and large ones (no dropped bits)."""
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.05, 1.0, 6) * w_hi * (np.where(rng.random(6) < 0.5, -1, 1) if signed else 1)
    b = rng.uniform(-0.4, 0.3, 6)
    p = (0.013, 121, w, b, 0.021, 130)
    table = v73_table(*p)
    assert table is not None
    for c in range(6):
        for q in range(0, 256, 3):
            assert table[c, q] == _v73_rule(q, c, *p)


def test_v73_table_outside_its_range() -> None:
    w, b = np.array([0.5, 0.0]), np.array([0.1, -0.2])
    assert v73_table(0.01, 0, w, b, 0.01, 0) is None  # a zero weight
    assert v73_table(1e-4, 0, np.array([0.5, 1.0]), b, 10.0, 0) is None  # k above 22


def test_where_the_forms_apply() -> None:
    assert batchnorm_form("v68", "qnn", 8, 2) == "integer"
    assert batchnorm_form("v68", "qnn", 8, 1) == batchnorm_form("v73", "qnn", 8, 1) == "exact"
    assert batchnorm_form("v73", "qnn", 8, 4) == "v73"
    assert batchnorm_form("v73", "qnn", 16, 1) == batchnorm_form("v68", "qnn", 16, 3) == "integer"
    assert batchnorm_form("v75", "qnn", 16, 3) is None and batchnorm_form("v73", "tflite", 16, 3) is None
    w, b = np.array([0.5, 1.0]), np.array([0.1, -0.2])
    # M = s_in s_w' / s_out: a shift k outside K_RANGE is not established
    assert batchnorm_spec_for("v73", "qnn", 1e-5, 0, w, b, 1.0, 0, 16) is None  # k far above 25
    assert batchnorm_spec_for("v73", "qnn", 1.0, 0, w, b, 1e-3, 0, 16) is None  # k below 14
    spec = batchnorm_spec_for("v73", "qnn", 0.01, 0, w, b, 0.01, 0, 16)
    assert spec is not None and K_RANGE[0] <= spec.shift <= K_RANGE[1]


def _probe(si: float, zi: int, so: float, zo: int, w: tuple[int, ...], sw: float, b: tuple[int, ...], sb: float,
           zb: int) -> tuple[float, int, np.ndarray, np.ndarray, float, int]:
    """A probe's encodings (tests/fidelity/batchnorm_probe.py, weight zero point 0) as the spec's arguments."""
    return (si, zi, np.asarray(w, np.float64) * float(F32(sw)), (np.asarray(b, np.float64) - zb) * float(F32(sb)),
            so, zo)


# Simulator codes (onnxruntime-qnn 2.7.0, v68 = v73): (arch, bits, probe, [(channel, input code, output code)], the
# one alternative each set rules out). From `python -m tests.fidelity.batchnorm_probe --save`.
_MEASURED = [
    # z_out / M = 11746653 in float32, odd in [2^23, 2^24): fl(z + 1/2) rounds up to 11746654
    ("v73", 16, _probe(3.3291813148259423e-05, 58654, 1.698638300323327e-05, 52187, (146, 104, 255),
                       0.0022667919670455467, (159, 148, 230), 0.001069029162726657, 50),
     [(1, 58225, 58164), (2, 58237, 63043), (1, 58528, 58304)], "zero_rounded_half_up"),
    # k = 15: no carry
    ("v73", 16, _probe(6.584556179255599e-05, 32768, 2.674629177042916e-05, 57283, (124, 241, 155),
                       0.277272389225385, (71, 37, 144), 0.0025716679148526343, 231),
     [(0, 32277, 426), (0, 32279, 595), (0, 32281, 764)], "carry_2048"),
    # the bias on the accumulator's scale is 6186182.5 in float32: half to even, 6186182
    ("v68", 16, _probe(6.0704971150129756e-05, 32768, 3.389473365211912e-05, 32768, (20, 5, 45),
                       0.0022018050427619297, (128, 155, 248), 0.003647860634596774, 208),
     [(2, 1481, 31520), (2, 21171, 35014), (2, 53287, 40713)], "bias_half_up"),
    # 8-bit: a carry of 512, not 2048 (as with 16-bit codes) nor 0
    ("v68", 8, _probe(0.010387856035283168, 128, 0.027804230050700252, 128, (210, 242, 64, 80, 222),
                      0.0028087820356056882, (65, 104, 164, 140, 21), 0.003381027745319033, 108),
     [(4, 227, 140)], "carry_2048"),
    ("v68", 8, _probe(0.010530837678054355, 128, 0.004125245372639733, 108, (159, 93, 157, 198, 234),
                      0.006529508515739008, (135, 223, 117, 94, 15), 0.0009085266718876953, 183),
     [(4, 123, 52)], "carry_0"),
]


def _alternative(spec: QnnBatchnormSpec, name: str) -> QnnBatchnormSpec:
    if name == "zero_rounded_half_up":  # floor(z + 1/2) in float64
        return dataclasses.replace(spec, offset=spec.offset - 1)
    if name == "bias_half_up":
        return dataclasses.replace(spec, offset=spec.offset + np.array([0, 0, 1]))
    return dataclasses.replace(spec, carry=int(name.split("_")[1]))


@pytest.mark.parametrize("case", range(len(_MEASURED)))
def test_spec_gives_the_simulators_codes(case: int) -> None:
    arch, bits, p, codes, alternative = _MEASURED[case]
    spec = batchnorm_spec_for(arch, "qnn", *p, bits)
    assert spec is not None
    other = _alternative(spec, alternative)
    for c, q, y in codes:
        x = np.zeros((1, spec.weight.size), np.int64)
        x[0, c] = q
        assert spec.apply_np(x)[0, c] == y
        assert other.apply_np(x)[0, c] != y


def _probe_zw(si: float, zi: int, so: float, zo: int, w: tuple[int, ...], sw: float, zw: int, b: tuple[int, ...],
              sb: float, zb: int) -> tuple[float, int, np.ndarray, np.ndarray, float, int]:
    """A probe's encodings with a weight zero point (tests/fidelity/batchnorm_probe.py) as the spec's arguments."""
    return (si, zi, (np.asarray(w, np.float64) - zw) * float(F32(sw)), (np.asarray(b, np.float64) - zb) * float(F32(sb)),
            so, zo)


# v73, 8-bit codes: simulator codes (onnxruntime-qnn 2.7.0) that the form's alternatives miss.
_MEASURED_V73 = [
    # a weight code of -255 (signed weights): clamped to -128, not -127
    (_probe_zw(0.007511836688292418, 128, 0.007406314757660174, 160, (102, 105, 42, 184, 158), 0.005831481145214866,
               198, (23, 79, 191, 64, 101), 0.003750453454589887, 203), [(0, 60, 107), (0, 104, 82), (0, 185, 36)]),
    # large weights (k <= 15, nothing dropped): the centre 2^(k-16) of a step is still added
    (_probe_zw(0.009810184147857065, 16, 0.013175379431918712, 165, (228, 255, 201, 91), 0.15493502761151123, 0,
               (3, 85, 112, 51), 0.0036976848612280777, 171), [(0, 21, 250), (1, 15, 112), (2, 11, 33)]),
    # a weight code of 132: 127 and the ratio 132 / 127 rounded to 12 significant bits, not exact
    (_probe_zw(0.00934791966681705, 8, 0.0040511203087292055, 29, (255, 100, 227, 132, 108), 0.006281826380838516, 0,
               (0, 0, 0, 0, 0), 0.002, 0), [(3, 37, 85), (3, 60, 129), (3, 83, 173)]),
]


@pytest.mark.parametrize("case", range(len(_MEASURED_V73)))
def test_v73_table_gives_the_simulators_codes(case: int) -> None:
    p, codes = _MEASURED_V73[case]
    table = v73_table(*p)
    assert table is not None
    for c, q, y in codes:
        assert table[c, q] == y


def test_16bit_plan_round_trips() -> None:
    """The ``htp.batchnorm_qnn`` plan (ints and int64 arrays) survives a context's JSON and binds to the same step."""
    import json

    from openqnn.backends.htp.kernels.registry import bind_step
    from openqnn.backends.plan import StepPlan

    g = _graph16(6, 7)
    node = g.nodes[0]
    step = HTP_KERNELS[node.op_type](node, HtpBuildContext(g, ARCHS["v68"], arithmetic="qnn"))
    plan = step.plan
    assert plan is not None and plan.kernel == "htp.batchnorm_qnn"
    arrays = {k: np.array(v) for k, v in plan.stored_arrays().items()}
    back = StepPlan.from_json(json.loads(json.dumps(plan.to_json(), allow_nan=False)), arrays)
    assert back.to_json() == plan.to_json()
    again = bind_step(back)
    x = (np.arange(3 * 7 * 6) * 2039 % 65536).reshape(1, 3, 7, 6).astype(np.int64)
    np.testing.assert_array_equal(again.reference(x), step.reference(x))
    np.testing.assert_array_equal(again.fast(torch.from_numpy(x).to(torch.int32)).numpy().astype(np.int64),
                                  step.reference(x))
