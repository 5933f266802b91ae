"""QNN's Where of 8-bit operands (openqnn's spec: each run-time operand requantized by ``QnnConvertSpec``,
src/openqnn/backends/htp/spec/qnn_eltwise.py, as Max / Min do) against the HTP simulator: every pair of codes
at random encodings, a random boolean condition (tests/fidelity/minmax_probe.py --op Where)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fidelity.eltwise_probe import random_encodings
from tests.fidelity.harness import simulator_missing
from tests.fidelity.minmax_probe import combine, exact_requant, probe, spec_codes

_missing = simulator_missing()
pytestmark = pytest.mark.skipif(_missing is not None, reason=_missing or "")


@pytest.mark.parametrize("arch", ["68", "73"])
def test_where_matches_the_simulator(arch: str) -> None:
    rng = np.random.default_rng([5, 17])
    q = np.arange(256)
    exact_same = total = 0
    for enc in random_encodings(rng, 3, 8):
        sa, za, sb, zb, so, zo = enc
        y = probe(arch, "Where", enc)["y"]
        ours = spec_codes("Where", enc)
        assert ours is not None
        np.testing.assert_array_equal(combine("Where", *ours), y)
        exact_same += int((combine("Where", exact_requant(q, sa, za, so, zo), exact_requant(q, sb, zb, so, zo))
                           == y).sum())
        total += y.size
    print(f"v{arch} Where: spec 100% of {total}, exact rounding {exact_same / total:.4%}")
    assert exact_same < total


@pytest.mark.parametrize("arch", ["68", "73"])
@pytest.mark.parametrize("op", ["Max", "Min", "Where"])
def test_16_bit_operands_match_the_simulator(op: str, arch: str) -> None:
    """uint16 operands of Max / Min / Where requantized by ``QnnConvert16Spec`` (Where's 2^14 above Max / Min's):
    every code of one operand (Where: both, under a random condition), four ratios; exact rounding parts."""
    from openqnn.backends.htp.spec.qnn_eltwise import QnnConvert16Spec
    from tests.fidelity.minmax_probe import probe16

    rng = np.random.default_rng(21)
    same = exact_same = other_same = total = 0
    for ratio in (0.01, 0.4, 1.3, 9.0):
        sim, e = probe16(arch, op, rng, ratio)
        q = np.arange(65536)
        ok = (sim > 0) & (sim < 65535)
        sel = op == "Where"
        specs = [QnnConvert16Spec.of(e["sa"], int(e["za"]), e["so"], int(e["zo"]), sel),
                 QnnConvert16Spec.of(e["sb"], int(e["zb"]), e["so"], int(e["zo"]), sel)]
        others = [QnnConvert16Spec.of(e["sa"], int(e["za"]), e["so"], int(e["zo"]), not sel),
                  QnnConvert16Spec.of(e["sb"], int(e["zb"]), e["so"], int(e["zo"]), not sel)]
        assert specs[0] is not None and specs[1] is not None and others[0] is not None and others[1] is not None
        ra, rb = (float(np.float32(e[s])) / float(np.float32(e["so"])) for s in ("sa", "sb"))
        exact_a = np.clip(np.floor((q - e["za"]) * ra + 0.5) + e["zo"], 0, 65535)
        if sel:
            qb, c = e["qb"], e["c"]
            ours = np.where(c, specs[0].apply_np(q), specs[1].apply_np(qb))
            other = np.where(c, others[0].apply_np(q), others[1].apply_np(qb))
            exact = np.where(c, exact_a, np.clip(np.floor((qb - e["zb"]) * rb + 0.5) + e["zo"], 0, 65535))
        else:
            ours, other, exact = specs[0].apply_np(q), others[0].apply_np(q), exact_a
        same += int((ours == sim)[ok].sum())
        other_same += int((other == sim)[ok].sum())
        exact_same += int((exact == sim)[ok].sum())
        total += int(ok.sum())
    print(f"v{arch} {op} 16-bit: spec {same / total:.4%}, the other form {other_same / total:.4%}, "
          f"exact rounding {exact_same / total:.4%} of {total}")
    assert same == total and other_same < total and exact_same < total


@pytest.mark.parametrize("arch", ["68", "73"])
def test_16_bit_clip_matches_the_simulator(arch: str) -> None:
    """A uint16 Clip: every input code requantized by Where's form (``QnnConvert16Spec``, select) and clamped to the
    bounds' codes (rounded half away from zero, as openqnn's ``code_of``); Max / Min's form and exact rounding part."""
    from openqnn.backends.htp.kernels.elementwise import code_of
    from openqnn.backends.htp.kernels.registry import QParams
    from openqnn.backends.htp.spec.qnn_eltwise import QnnConvert16Spec
    from tests.fidelity.minmax_probe import probe16_clip

    rng = np.random.default_rng(31)
    same = other_same = exact_same = total = 0
    for _ in range(4):
        sim, e = probe16_clip(arch, rng)
        qo = QParams(16, np.array([e["so"]]), np.array([-int(e["zo"])]), None, False)
        lo, hi = code_of(e["lo"], qo), code_of(e["hi"], qo)
        q = np.arange(65536)
        spec = QnnConvert16Spec.of(e["sx"], int(e["zx"]), e["so"], int(e["zo"]), select=True)
        other = QnnConvert16Spec.of(e["sx"], int(e["zx"]), e["so"], int(e["zo"]))
        assert spec is not None and other is not None
        r = float(np.float32(e["sx"])) / float(np.float32(e["so"]))
        exact = np.floor((q - e["zx"]) * r + 0.5) + e["zo"]
        same += int((np.clip(spec.apply_np(q), lo, hi) == sim).sum())
        other_same += int((np.clip(other.apply_np(q), lo, hi) == sim).sum())
        exact_same += int((np.clip(exact, lo, hi) == sim).sum())
        total += q.size
    print(f"v{arch} Clip 16-bit: spec {same / total:.4%}, Max / Min's form {other_same / total:.4%}, "
          f"exact rounding {exact_same / total:.4%} of {total}")
    assert same == total and other_same < total and exact_same < total
