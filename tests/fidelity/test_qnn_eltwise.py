"""QNN's Add, Sub and Mul (openqnn's spec, src/openqnn/backends/htp/spec/qnn_eltwise.py) against the HTP simulator:
every pair of 8-bit codes, random 16-bit codes, random encodings, broadcasts of either operand
(tests/fidelity/eltwise_probe.py)."""

from __future__ import annotations

import numpy as np
import pytest

from openqnn.backends.htp.spec.qnn_eltwise import QnnAddSpec, complements
from tests.fidelity.eltwise_probe import (
    Encodings,
    exact_codes,
    input_codes,
    probe,
    probe_many,
    random_encodings,
    spec_codes,
    wide_codes,
    wide_encodings,
)
from tests.fidelity.harness import simulator_missing

_missing = simulator_missing()
pytestmark = pytest.mark.skipif(_missing is not None, reason=_missing or "")


@pytest.mark.parametrize("arch", ["68", "73"])
@pytest.mark.parametrize("op", ["Add", "Sub", "Mul"])
@pytest.mark.parametrize("bits,shape", [(8, "same"), (8, "rows"), (8, "scalar_first"), (16, "same"),
                                        (16, "channel"), (16, "scalar_first")])
def test_add_sub_mul_match_the_simulator(op: str, arch: str, bits: int, shape: str) -> None:
    rng = np.random.default_rng([bits, ["Add", "Sub", "Mul"].index(op), len(shape)])
    same = exact_same = total = 0
    for enc in random_encodings(rng, 3, bits, product=op == "Mul"):
        qa, qb = input_codes(rng, bits, shape)
        p = probe(arch, op, enc, qa, qb, bits)
        ours = spec_codes(p, op, enc, bits, complements(qa.shape, qb.shape))
        np.testing.assert_array_equal(ours, p["y"])
        same += int((ours == p["y"]).sum())
        exact_same += int((exact_codes(p, op, enc, bits) == p["y"]).sum())
        total += ours.size
    print(f"v{arch} {op} a{bits} {shape}: spec 100% of {total}, exact rounding {exact_same / total:.4%}")


_BERT_MASK_ADD = (0.00947863588146135, 117, 39.21568627450981, 255, 0.10187072365307341, 244)  # layer 0's


@pytest.mark.parametrize("arch", ["68", "73"])
@pytest.mark.parametrize("op", ["Add", "Sub"])
def test_add_sub_with_output_steps_finer_than_the_inputs_sum_over_64(op: str, arch: str) -> None:
    """QNN's rsh < 0 (a + b >= 64: an attention mask's Add): the sum less its zero shifted left, z_o after;
    s_b / s_o from 66 to 10^6 (rsh -1 to -14), either operand the large one, small outputs in one graph."""
    rng = np.random.default_rng([len(op), int(arch)])
    encs = [_BERT_MASK_ADD, *wide_encodings(rng, 10), *wide_encodings(rng, 4, 1e6)]
    for enc, y in zip(encs, probe_many(arch, op, encs)):
        spec = QnnAddSpec.of(*enc, subtract=op == "Sub")
        assert spec is not None and spec.lsh > 0
        np.testing.assert_array_equal(spec.apply_np(*wide_codes(enc)), y, err_msg=str(enc))


def _sub16_candidates(enc: Encodings, qa: np.ndarray, qb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    signed = QnnAddSpec.of(*enc, subtract=True, bitwidth=16)
    ones = QnnAddSpec.of(*enc, subtract=True, bitwidth=16, complement=True)
    assert signed is not None and ones is not None
    return signed.apply_np(qa, qb), ones.apply_np(qa, qb)


@pytest.mark.parametrize("arch", ["68", "73"])
def test_sub16_takes_the_ones_complement_only_for_broadcasts_within_a_batch_element(arch: str) -> None:
    """Inputs chosen where the two forms part: equal shapes and a batch broadcast take the signed form, a
    channel broadcast the one's complement."""
    rng = np.random.default_rng(21)
    parted = {False: 0, True: 0}
    for enc in random_encodings(rng, 4, 16)[1:]:
        for sa, sb in [((1, 16, 32, 32), (1, 16, 32, 32)), ((4, 16, 32, 32), (1, 16, 32, 32)),
                       ((1, 64, 64, 64), (1, 64, 1, 64))]:
            complement = complements(sa, sb)
            if sa == sb:  # keep the pairs (of 3 M random ones) where the forms part, then some others
                qa, qb = rng.integers(0, 65536, 3_000_000), rng.integers(0, 65536, 3_000_000)
                signed, ones = _sub16_candidates(enc, qa, qb)
                keep = np.concatenate([np.nonzero(signed != ones)[0][:2000], np.arange(2000)])
                qa, qb = qa[keep], qb[keep]
            else:
                qa, qb = rng.integers(0, 65536, sa), rng.integers(0, 65536, sb)
            p = probe(arch, "Sub", enc, qa, qb, 16)
            signed, ones = (np.broadcast_to(c, p["y"].shape) for c in _sub16_candidates(enc, qa, qb))
            np.testing.assert_array_equal(ones if complement else signed, p["y"])
            parted[complement] += int((signed != ones).sum())
    assert parted[False] > 0 and parted[True] > 0  # the probes did tell the forms apart


@pytest.mark.parametrize("arch", ["68", "73"])
@pytest.mark.parametrize("op", ["Add", "Sub", "Mul"])
def test_constant_operands(op: str, arch: str) -> None:
    """A constant channel vector follows the spec; a constant 8-bit scalar takes another path: exact rounding
    for Add and Sub, for Mul neither exact rounding nor the spec (about 99.5% each; open). openqnn keeps
    TFLite's arithmetic for constant scalars, which rounds nearly exactly."""
    rng = np.random.default_rng([["Add", "Sub", "Mul"].index(op), 5])
    spec_same = exact_same = total = 0
    for enc in random_encodings(rng, 6, 8, product=op == "Mul"):
        qa = rng.integers(0, 256, (1, 16, 16, 16))
        p = probe(arch, op, enc, qa, rng.integers(0, 256, (1, 16, 1, 1)), 8, const_b=True)
        np.testing.assert_array_equal(spec_codes(p, op, enc, 8), p["y"])
        p = probe(arch, op, enc, qa, rng.integers(0, 256, (1, 1, 1, 1)), 8, const_b=True)
        spec_same += int((spec_codes(p, op, enc, 8) == p["y"]).sum())
        exact_same += int((exact_codes(p, op, enc, 8) == p["y"]).sum())
        total += p["y"].size
    print(f"v{arch} {op} constant scalar: spec {spec_same / total:.4%}, exact rounding {exact_same / total:.4%}")
    if op == "Mul":
        assert exact_same / total >= 0.99 and spec_same / total >= 0.99
    else:
        assert exact_same == total and spec_same < total
