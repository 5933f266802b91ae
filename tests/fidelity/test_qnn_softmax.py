"""QNN's 8-bit Softmax (openqnn's spec, src/openqnn/backends/htp/spec/qnn_softmax.py) against the HTP
simulator: random attention-like rows of 17 to 128 elements, with and without a masked tail, input scales
0.01 to 1.3, output 1/256 (tests/fidelity/softmax_probe.py)."""

from __future__ import annotations

import numpy as np
import pytest

from openqnn.backends.htp.spec.qnn_softmax import exp_step, short_codes, softmax_table_for
from tests.fidelity.harness import simulator_missing
from tests.fidelity.softmax_probe import exact_codes, random_probes, run_codes, spec_codes

_missing = simulator_missing()


def test_exponent_step_is_truncated_to_8_bits() -> None:
    assert exp_step(0.05) == 147 / 2048  # 0.0721348 * 2048 = 147.73
    assert exp_step(0.1) == 147 / 1024
    assert exp_step(0.3) == 221 / 512
    assert softmax_table_for("v73", "qnn", 16, 0.1, 1 / 256, 0, 8, 8, 1.0, True) is None  # rows of 3-16: short_codes
    assert softmax_table_for("v73", "tflite", 64, 0.1, 1 / 256, 0, 8, 8, 1.0, True) is None
    assert softmax_table_for("v68", "qnn", 17, 0.1, 1 / 256, 0, 8, 8, 1.0, True) is not None


@pytest.mark.skipif(_missing is not None, reason=_missing or "")
@pytest.mark.parametrize("arch", ["68", "73"])
def test_softmax_matches_the_simulator(arch: str) -> None:
    same = exact_same = total = 0
    probes = random_probes(np.random.default_rng(4), 16, lengths=(17, 40, 128), scales=(0.02, 0.1, 0.4))
    for _, sx, zx, _, q in probes:
        sim = run_codes(arch, q, sx, zx)
        ours = spec_codes(q, sx)
        assert int(np.abs(ours - sim).max()) <= 1
        same += int((ours == sim).sum())
        exact_same += int((exact_codes(q, sx) == sim).sum())
        total += sim.size
    print(f"v{arch} Softmax: spec {same / total:.4%} identical, exact rounding {exact_same / total:.4%} of {total}")
    assert same / total >= 0.999
    assert same > exact_same


@pytest.mark.skipif(_missing is not None, reason=_missing or "")
@pytest.mark.parametrize("arch", ["68", "73"])
def test_rows_of_two_are_a_sigmoid_of_the_difference(arch: str) -> None:
    """Rows of two: the second code is round(255 sigmoid((q1 - q0) s_in)) (half up), the first 255 minus it."""
    from openqnn.backends.htp.spec.qnn_softmax import pair_table

    rng = np.random.default_rng(3)
    exact_same = []
    for sx in (0.01, 0.2, 1.3):
        q = rng.integers(0, 256, (1, 128, 2))
        q[0, :10, 1] = q[0, :10, 0]  # ties: 127 and 128
        sim = run_codes(arch, q, sx, int(rng.integers(0, 256)))[0]
        c1 = pair_table(sx)[q[0, :, 1] - q[0, :, 0] + 255]
        np.testing.assert_array_equal(sim, np.stack([255 - c1, c1], axis=-1))
        exact_same.append(np.mean(exact_codes(q, sx)[0] == sim))
    assert np.mean(exact_same) < 0.85  # exact rounding of 256 p: 50% at s_in 0.01, more where rows saturate


def test_short_rows_reciprocal_is_the_4_segment_recip16() -> None:
    """The reciprocal of rows of 3 to 16 (spec/qnn_softmax.recip16, the 16-bit 4-segment quadratic of Qualcomm's
    Hexagon NN library without refinement): its gain r d / 2^29 has the swings read off the codes
    (docs/htp-fidelity.md): +5.1e-4 at m = 1.05, 1 near 1.117, -5.2e-4 near 1.19, smaller in later quarters."""
    from openqnn.backends.htp.spec.qnn_softmax import recip16

    d = np.arange(1 << 14, 1 << 15)
    gain = recip16(d) * d / 2.0**29 - 1
    m = d / 2.0**14
    assert 5.0e-4 < gain.max() < 5.2e-4 and -5.2e-4 < gain.min() < -5.0e-4  # no Newton step (that gives 5e-5)
    assert gain[np.abs(m - 1.05).argmin()] > 4e-4 and gain[np.abs(m - 1.19).argmin()] < -4e-4
    assert gain[(m > 1.10) & (m < 1.11)].min() > 0 and gain[(m > 1.125) & (m < 1.13)].max() < 0
    quarters = [np.abs(gain[(m >= 1 + j / 4) & (m < 1.25 + j / 4)]).max() for j in range(4)]
    assert quarters == sorted(quarters, reverse=True)


@pytest.mark.skipif(_missing is not None, reason=_missing or "")
@pytest.mark.parametrize("arch", ["68", "73"])
def test_short_rows_match_the_simulator(arch: str) -> None:
    """Rows of 3 to 16 (spec/qnn_softmax.short_codes, what openqnn's htp runs with arithmetic "qnn"): random
    attention-like rows, with and without a masked tail, input scales 0.01 to 1.3: every code of the rows of 5 to 16
    identical, at least 99.9% of all, every code within one, where exact rounding misses about 1%."""
    same = exact = total = 0
    for n, sx, zx, _, q in random_probes(np.random.default_rng(8), 64, lengths=(3, 4, 5, 8, 11, 16),
                                         scales=(0.01, 0.05, 0.2, 1.3)):
        sim = run_codes(arch, q, sx, zx)
        ours = short_codes(q, sx)
        assert int(np.abs(ours - sim).max()) <= 1
        if n >= 5:
            np.testing.assert_array_equal(ours, sim)
        same += int((ours == sim).sum())
        exact += int((exact_codes(q, sx) == sim).sum())
        total += sim.size
    print(f"v{arch} Softmax rows of 3-16: spec {same / total:.4%}, exact rounding {exact / total:.4%} of {total}")
    assert same / total >= 0.999 and exact / total < 0.995


@pytest.mark.skipif(_missing is not None, reason=_missing or "")
def test_short_rows_normalization_gain_depends_on_the_sums_mantissa() -> None:
    """Rows (max, max - k, far) for k = 0..255: the maximum's code is 256 g(S) / S rounded, g within +-5.3e-4
    of 1 as the mantissa of S runs through quarters (exact rounding misses a few % of these codes, the spec none
    or nearly)."""
    from tests.fidelity.softmax_probe import short_fit_codes

    ks = np.arange(256)
    q = np.stack([np.full(256, 255), 255 - ks, np.zeros(256, np.int64)], axis=-1)[None]
    fit = exact = total = 0
    for sx in np.geomspace(0.004, 0.06, 12):
        sim = run_codes("73", q, float(sx), 128)[0, :, 0]
        exact += int((exact_codes(q, float(sx))[0, :, 0] == sim).sum())
        fit += int((short_fit_codes(q, float(sx))[0, :, 0] == sim).sum())
        total += sim.size
    print(f"maximum's codes: fit {fit / total:.4%}, exact rounding {exact / total:.4%} of {total}")
    assert exact / total < 0.975 and fit / total > 0.999


@pytest.mark.skipif(_missing is not None, reason=_missing or "")
def test_short_rows_take_one_route_for_3_4_and_another_for_5_to_16() -> None:
    """Rows (max, max - k1, max - k2) padded with far elements (exponential 0): rows of 3 and 4 give the same
    codes, rows of 5, 8 and 16 the same codes, the groups differ in a few (never by more than one code); the spec
    (the reciprocal reads another mantissa of the sum in each group) reproduces every code of the rows of 5 and more
    and 99.95% or more of the rows of 3."""
    from tests.fidelity.softmax_probe import triple_rows

    for sx in (0.05, 0.1):
        codes = {n: run_codes("73", triple_rows(n), sx, 0)[0] for n in (3, 4, 5, 8, 16)}
        for n in (4, 5, 8, 16):
            assert not codes[n][:, 3:].any()
        np.testing.assert_array_equal(codes[3], codes[4][:, :3])
        np.testing.assert_array_equal(codes[5][:, :3], codes[8][:, :3])
        np.testing.assert_array_equal(codes[5][:, :3], codes[16][:, :3])
        diff = codes[5][:, :3] - codes[3]
        assert 0 < np.count_nonzero(diff) < 0.001 * diff.size and np.abs(diff).max() == 1
        assert np.mean(short_codes(triple_rows(3), sx)[0] == codes[3]) > 0.9995
        np.testing.assert_array_equal(short_codes(triple_rows(5), sx)[0], codes[5])


@pytest.mark.skipif(_missing is not None, reason=_missing or "")
def test_short_rows_of_bert_attention() -> None:
    """BERT's attention rows (bert/16/a8_pc_calibrated, layer 1: 16 elements, a masked tail, few levels, s_in =
    0.10303). The maximum of (max x 5, max - 7 x 6, max - 15, far x 4) is 31.487 codes (exact), 31.498 through
    recip16 (gain +3.4e-4): QNN writes 31. In (max x 5, max - 8 x 5, max - 16 x 2, far x 4) the last level is 6.4985
    codes (exact); through the spec it is exactly 6.5 (1664 units of 2^-8) if the sum's top 15 bits are rounded
    (d = 31036), 6.496 with the spec's 16 truncated bits below the sum's leading one (u = 58609, as with stop 26's
    first offset of 5/8: d = 31037): QNN writes 6 (stop 25's description wrote 7, which turned the calibrated
    encoder's logits into 79-89% identical)."""
    rng = np.random.default_rng(0)
    for levels, level, code in (([243] * 5 + [236] * 6 + [228] + [0] * 4, 243, 31),
                                ([243] * 5 + [235] * 5 + [227] * 2 + [0] * 4, 227, 6)):
        q = np.stack([rng.permutation(np.array(levels)) for _ in range(64)])[None]
        sim = run_codes("73", q, 0.10302581612166821, 243)
        np.testing.assert_array_equal(short_codes(q, 0.10302581612166821), sim)
        assert set(sim[q == level].tolist()) == {code}


@pytest.mark.skipif(_missing is not None, reason=_missing or "")
@pytest.mark.parametrize("arch", ["68", "73"])
def test_short_rows_of_bert_attention_under_default_quantization(arch: str) -> None:
    """The rows of 16 (12 unmasked) where openqnn's htp parted from the simulator in bert/16/a8_pc (layers 0 and 1,
    fed alone; docs/htp-fidelity.md, "The BERT-style encoder under default quantization (stop 26)"): one code of
    each lies one unit of the first rounding below a .5 boundary and QNN rounds it up. The reciprocal reading the
    sum's 16 truncated bits below its leading one gives them; its top 15 bits with an offset of 5/8 (the spec before)
    do not."""
    from openqnn.backends.htp.spec.qnn_softmax import recip16, short_exp_table

    rows = [(0.10187072306871414, [240, 242, 241, 243, 250, 245, 248, 240, 244, 248, 241, 234]),
            (0.10302581638097763, [245, 244, 239, 239, 241, 239, 253, 241, 243, 246, 242, 239]),
            (0.10302581638097763, [241, 246, 244, 246, 246, 246, 240, 245, 246, 239, 247, 244])]
    for sx, row in rows:
        rng = np.random.default_rng(len(row))
        q = np.stack([np.r_[rng.permutation(np.array(row)), np.zeros(4, np.int64)] for _ in range(16)])[None]
        sim = run_codes(arch, q, sx, 243)
        np.testing.assert_array_equal(short_codes(q, sx), sim)
        e = short_exp_table(sx)[q.max(axis=-1, keepdims=True) - q]  # the earlier mantissa: top 15 bits + 5/8
        s = e.sum(axis=-1, keepdims=True)
        b = np.frexp(s.astype(np.float64))[1].astype(np.int64)
        t = (e * recip16((s + ((5 << (b - 15)) >> 3)) >> (b - 15)) + (1 << 15)) >> 16
        assert np.any(((t + (1 << (b - 11))) >> (b - 10)) != sim)


@pytest.mark.skipif(_missing is not None, reason=_missing or "")
@pytest.mark.parametrize("arch", ["68", "73"])
def test_bert_default_quantization_is_bit_exact_layer_by_layer(arch: str) -> None:
    """bert/16/a8_pc with every quantized activation a graph output (``model_layers``): every code of every tensor
    is the simulator's, v68 and v73. Its Softmax rows of 16 (12 unmasked) were the only ops that parted (one code in
    three rows of 2,048 fed alone, v68 and v73; 62.7% / 61.4% identical logits), through the reciprocal's input."""
    from tests.fidelity.model_layers import layer_results

    res = layer_results(arch, feeds=2, variant="a8_pc")
    assert sum(r.op == "Softmax" for r in res) == 4
    off = [(r.op, r.name, r.identical, r.max) for r in res if r.identical < 1.0]
    assert not off, off


@pytest.mark.skipif(_missing is not None, reason=_missing or "")
def test_bert_64_tokens_default_quantization_is_bit_exact_op_by_op() -> None:
    """bert/64/a8_pc, every op fed alone with openqnn's own input codes (``model_layers --alone``): every op gives
    every code of the simulator's, the Softmax (rows of 64, 60 unmasked: the long-row route) included since its table's
    last segment (stop 28; stop 26 / 27: a few codes a layer, each within 3e-4 of a .5 boundary)."""
    from tests.fidelity.model_layers import alone_results

    res = alone_results("73", feeds=2, full=True, variant="a8_pc")
    assert len(res) > 60 and sum(r.op == "Softmax" for r in res) == 4
    off = [(r.op, r.name, r.identical) for r in res if r.identical < 1.0]
    assert not off, off


def test_ratio_bounds_hold_the_ratio_of_an_exact_division() -> None:
    """``softmax_probe.ratio_bounds`` on codes an exact division of a known table gives: every interval holds the
    table's ratio and is narrow; codes of another table's ratio fall outside."""
    from tests.fidelity.softmax_probe import level_rows, ratio_bounds

    q, meta = level_rows(64, range(1, 9), range(1, 9), range(1, 30))
    for table in (np.floor(np.exp2(-np.arange(256) * 0.1494) * 2**15), np.round(np.exp2(-np.arange(256) * 0.21) * 32767)):
        e = table.astype(np.int64)[q.max(axis=-1, keepdims=True) - q]
        codes = np.clip((2 * (e << 8) + e.sum(-1, keepdims=True)) // (2 * e.sum(-1, keepdims=True)), 0, 255)
        bounds = ratio_bounds(codes, meta)
        for k, (lo, hi) in bounds.items():
            rho = table[k] / table[0]
            assert lo <= rho <= hi and hi - lo < 2e-3 * rho
            assert not lo <= rho * 1.01 <= hi


@pytest.mark.skipif(_missing is not None, reason=_missing or "")
@pytest.mark.parametrize("arch", ["68", "73"])
def test_long_rows_take_q15_exponentials_and_a_16_bit_reciprocal(arch: str) -> None:
    """Rows of 64 with j maxima, m elements k below and the rest far (``level_rows``) at the BERT encoder's layer-0
    input scale: the spec (Q15 exponentials ``g(f16) >> n``, the sum's 16-bit reciprocal) misses under 0.01% of the
    codes, under a third of what Q30 exponentials with an exact division miss (stop 26: 158 against 1,062 of 5.6M at
    three scales), and fewer than stop 26's table ``floor(2^15 2^(-k C'))`` with the same division (stop 27: 25
    against 79 at this scale; 70 against 158 at three; with ``long_recip``'s correction 11 against 65, 35 at three)."""
    from openqnn.backends.htp.spec.qnn_softmax import exp_step, long_codes_of
    from tests.fidelity.softmax_probe import level_rows

    sx = 0.10401418060064316
    q, _ = level_rows(64, range(1, 48), range(1, 17), range(1, 40))
    sim = run_codes(arch, q, sx, 128)
    ours = spec_codes(q, sx)
    k = q.max(-1, keepdims=True) - q
    x = np.exp2(-np.arange(256) * exp_step(sx))
    e = np.round(x * 2.0**30).astype(np.int64)[k]
    s = e.sum(axis=-1, keepdims=True)
    q30 = np.clip((2 * (e << 8) + s) // (2 * s), 0, 255)
    trunc = long_codes_of(np.minimum(np.floor(x * 2.0**15), 2**15 - 1).astype(np.int64)[k])
    miss, miss30, miss_trunc = (int((c != sim).sum()) for c in (ours, q30, trunc))
    print(f"v{arch} level rows: spec misses {miss}, stop 26's table {miss_trunc}, Q30 exact {miss30} of {sim.size}")
    assert miss < 1e-4 * sim.size and 3 * miss < miss30 and 2 * miss < miss_trunc


def test_threshold_rows_have_the_sums_they_are_built_for() -> None:
    """``softmax_probe.threshold_rows``: every row holds the maximum and its exponentials sum to ``bits`` bits, each
    within two units of a code boundary of one of its elements (no simulator)."""
    from openqnn.backends.htp.spec.qnn_softmax import exp_table
    from tests.fidelity.softmax_probe import threshold_rows

    table = exp_table(0.10401)
    q = threshold_rows(table, 17, np.random.default_rng(0))
    e = table[q.max(axis=-1, keepdims=True) - q]
    s = e.sum(axis=-1)
    assert q.shape[1] > 1000 and np.all(q.max(axis=-1) == 255)
    assert np.all((s >= 1 << 16) & (s < 1 << 17))
    v = 256 * e / s[..., None]
    assert np.all(np.abs(v - np.floor(v) - 0.5).min(axis=-1) * s / v.max(axis=-1).clip(1) < 3)


@pytest.mark.skipif(_missing is not None, reason=_missing or "")
@pytest.mark.parametrize("arch", ["68", "73"])
def test_long_rows_reciprocal_is_within_one_unit_above_the_floor(arch: str) -> None:
    """At a step ``C'`` of exactly 1 (``power_rows``) the exponentials are ``32767 >> k`` (``exp_table``; ``32768 >> k``
    misses 30x more codes), so the sum is known: every row's codes then admit ``r = floor(2^(b + 15) / S)`` or one more,
    never less, and some need the one more (stop 27: the reciprocal is within one unit above the floor; which one:
    ``long_recip``, mostly, ``test_long_rows_reciprocal_corrects_the_floor_with_a_product_truncated_at_2_16``)."""
    from openqnn.backends.htp.spec.qnn_softmax import exp_table, long_codes_of
    from tests.fidelity.softmax_probe import power_rows

    sx = 0.6932
    q = power_rows(np.random.default_rng(5), 12000)
    sim = run_codes(arch, q, sx, 128)[0]
    table = exp_table(sx)
    assert table[:16].tolist() == [32767 >> k for k in range(16)]
    e = table[q[0].max(axis=-1, keepdims=True) - q[0]]
    s = e.sum(axis=-1, keepdims=True)
    b = np.frexp(s.astype(np.float64))[1]
    r0 = (np.int64(1) << (b + 15)) // s
    ok = [np.all(np.clip((e * r + (np.int64(1) << (b + 6))) >> (b + 7), 0, 255) == sim, axis=-1) for r in (r0, r0 + 1)]
    assert np.all(ok[0] | ok[1]) and np.any(~ok[0]) and np.any(~ok[1])
    shifted = np.where(np.arange(256) < 16, 32768 >> np.minimum(np.arange(256), 15), 0)
    shifted[0] = 32767
    assert 10 * int((long_codes_of(e) != sim).sum()) < int((long_codes_of(shifted[q[0].max(-1, keepdims=True) - q[0]]) != sim).sum())


def test_reciprocal_rows_put_a_boundary_between_the_floor_and_one_more() -> None:
    """``softmax_probe.reciprocal_rows``: at a step of exactly 1 every row's exponentials ``32767 >> k`` sum to the
    ``S`` it is built for, and its element ``k`` crosses from code ``c`` to ``c + 1`` exactly between the reciprocals
    ``F = floor(2^(b + 15) / S)`` and ``F + 1`` (no simulator)."""
    from openqnn.backends.htp.spec.qnn_softmax import exp_table
    from tests.fidelity.softmax_probe import reciprocal_rows

    table = exp_table(0.6932)
    for bits in (16, 19):
        q, meta = reciprocal_rows(bits)
        e = table[255 - q[0]]
        s = e.sum(axis=-1)
        assert q.shape[1] > 80 and np.all(q[0].max(axis=-1) == 255) and np.array_equal(s, meta[:, 0])
        f = (1 << (bits + 15)) // s
        ek = table[meta[:, 1]]
        t2 = (2 * meta[:, 2] + 1) << (bits + 6)
        assert np.all((f * ek < t2) & (t2 <= (f + 1) * ek))


@pytest.mark.skipif(_missing is not None, reason=_missing or "")
@pytest.mark.parametrize("arch", ["68", "73"])
def test_long_rows_reciprocal_corrects_the_floor_with_a_product_truncated_at_2_16(arch: str) -> None:
    """``reciprocal_rows`` (a step of 1, the sum known, an element's code boundary between ``F`` and ``F + 1``) tell
    QNN's reciprocal sum by sum: always ``F`` or ``F + 1``, one more in 112 of 214 sums of 16 bits, 88 of 236 of 17,
    22 of 191 of 18, 4 of 149 of 19. ``long_recip`` (``F`` corrected once with ``(S F) >> 16``) gets 207 and 189 of the
    sums of 17 and 18 bits and every one of 19 bits (the floor 148, 169, 145), the product truncated at 2^15 or 2^17
    fewer; sums of 16 bits stay open (``ceil``: 112, the floor 102; stop 27)."""
    from openqnn.backends.htp.spec.qnn_softmax import exp_table, long_codes_of
    from tests.fidelity.softmax_probe import reciprocal_rows

    table = exp_table(0.6932)
    one = np.int64(1)
    for bits, want in ((17, 200), (18, 185), (19, 149)):
        q, _ = reciprocal_rows(bits)
        sim = run_codes(arch, q, 0.6932, 128)[0]
        e = table[255 - q[0]]
        s = e.sum(axis=-1, keepdims=True)
        f = (one << (bits + 15)) // s

        def rows_ok(r: np.ndarray, e: np.ndarray = e, sim: np.ndarray = sim, bits: int = bits) -> int:
            return int(np.all(np.clip((e * r + (one << (bits + 6))) >> (bits + 7), 0, 255) == sim, axis=-1).sum())

        def truncated(t: int, s: np.ndarray = s, f: np.ndarray = f, bits: int = bits) -> np.ndarray:
            return f + ((((one << (bits + 15 - t)) - ((s * f) >> t)) * f) >> (bits + 15 - t))

        assert rows_ok(f) + rows_ok(f + 1) == len(s)  # one of the two, never both, never another
        spec = int(np.all(long_codes_of(e) == sim, axis=-1).sum())
        print(f"v{arch} sums of {bits} bits: long_recip {spec}, floor {rows_ok(f)}, 2^15 {rows_ok(truncated(15))}, "
              f"2^17 {rows_ok(truncated(17))} of {len(s)}")
        assert spec == rows_ok(truncated(16)) >= want
        assert spec > max(rows_ok(f), rows_ok(truncated(15)), rows_ok(truncated(17)))


_LEVEL_SCALES = ((0.10401418060064316, 64), (0.10292, 64), (0.10199, 64), (0.02, 64), (0.05, 64), (0.3, 64), (0.6, 64),
                 (0.0137, 40), (0.037, 40), (0.081, 40))


@pytest.mark.skipif(_missing is not None, reason=_missing or "")
@pytest.mark.parametrize("arch", ["68", "73"])
def test_long_rows_table_has_its_own_last_segment(arch: str) -> None:
    """Rows of j maxima, m elements k below and the rest at code 0 (``level_rows``) at ten input scales, and the random
    rows of seeds 0-1: the table ``long_pow2`` (``pow2_frac`` with the last segment, ``f16 < 16384``, (34675, 16404,
    7230) and saturated at 32767) misses 1, 7, 1, 0, 0, 1, 0, 34, 5, 0 level codes (49 of 14.3M) and 6 random codes of
    863,744, where ``pow2_frac`` (stop 27) misses 11, 23, 1, 18, 36, 21, 20, 70, 6, 0 (206) and 18; the Exp16 cubic as
    ``2^-f = 2^(1 - f) / 2`` (``spec/qnn_exp16.exp16_pow2(65536 - f16) / 2``) 559 and 50 (stop 28)."""
    import math

    from openqnn.backends.htp.spec.qnn_exp16 import exp16_pow2
    from openqnn.backends.htp.spec.qnn_softmax import exp_table, long_codes_of, long_pow2
    from openqnn.backends.htp.spec.qnn_softmax16 import pow2_frac
    from tests.fidelity.softmax_probe import level_rows

    def table_of(g_of):  # type: ignore[no-untyped-def]
        def table(sx: float) -> np.ndarray:
            mant, ex = math.frexp(exp_step(sx))
            t = np.arange(256, dtype=np.int64) * math.floor(mant * 256.0)
            t16 = t << (8 + ex) if ex >= -8 else t >> (-8 - ex)  # k C' in units of 2^-16 (exact at these scales)
            n = t16 >> 16
            return np.where(n < 16, g_of(t16 & 0xFFFF) >> np.minimum(n, 15), 0)
        return table

    old = table_of(pow2_frac)
    cubic = table_of(lambda f: exp16_pow2(np.where(f == 0, 65535, 65536 - f)) >> 1)
    for sx, _ in _LEVEL_SCALES:
        assert np.array_equal(table_of(long_pow2)(sx), exp_table(sx))
    level: dict[str, list[int]] = {"spec": [], "old": [], "cubic": []}
    for sx, n in _LEVEL_SCALES:
        q, _ = level_rows(n, range(1, 48), range(1, 17), range(1, 40))
        sim = run_codes(arch, q, sx, 128)
        k = q.max(-1, keepdims=True) - q
        for name, tf in (("spec", exp_table), ("old", old), ("cubic", cubic)):
            level[name].append(int((long_codes_of(tf(sx)[k]) != sim).sum()))
    rand = {"spec": 0, "old": 0, "cubic": 0}
    for seed in (0, 1):
        for _, sx, zx, _, q in random_probes(np.random.default_rng(seed), 128):
            sim = run_codes(arch, q, sx, zx)
            k = q.max(-1, keepdims=True) - q
            for name, tf in (("spec", exp_table), ("old", old), ("cubic", cubic)):
                rand[name] += int((long_codes_of(tf(sx)[k]) != sim).sum())
    print(f"v{arch} level misses {level}, random {rand}")
    assert level["spec"] == [1, 7, 1, 0, 0, 1, 0, 34, 5, 0] and rand["spec"] == 6
    assert level["old"] == [11, 23, 1, 18, 36, 21, 20, 70, 6, 0] and rand["old"] == 18
    assert sum(level["cubic"]) == 559 and rand["cubic"] == 50
