"""htp_config.arithmetic = "qnn": QNN's 16-bit Gelu (spec/qnn_gelu16.py). Fast path == reference == the spec on v68
and v73; the gate's exact piece, its measured table and simulator codes by hand; TFLite's arithmetic, 8-bit codes, v75 and the tanh form
keep exact rounding. (Against the simulator: tests/fidelity/test_qnn_gelu16.py.)"""

from __future__ import annotations

import math

import numpy as np
import pytest
from lut_steps import check_rule, run_step
from lut_steps import scale_zero as _sz
from test_elementwise import _enc, _graph

from openqnn.backends.htp.spec.qnn_gelu16 import gelu16_codes, gelu16_gate, gelu16_table_for, gelu16_z

N = 1 << 16




@pytest.mark.parametrize("arch", ["v68", "v73"])
@pytest.mark.parametrize("lo,hi,ohi", [(-6.0, 6.0, 6.0), (-3.0, 8.0, 9.0), (-1.0, 2.0, 2.5), (-10.0, 10.0, 12.0)])
def test_gelu16_is_the_spec(arch: str, lo: float, hi: float, ohi: float) -> None:
    shape = (1, 5, 7, 9)
    g = _graph("Gelu", [(shape, _enc(lo, hi, 16), None)], {"approximate": "none"})
    g.tensors["out"].encoding = _enc(-0.2, ohi, 16)
    _, zi = _sz(g.tensors["x0"].encoding)
    x = np.random.default_rng(5).integers(0, N, shape).astype(np.int64)
    x.flat[:3] = (0, zi, N - 1)
    check_rule(g, arch, x, gelu16_codes, lambda *enc: gelu16_table_for(arch, "qnn", *enc, 16, 16), 40)


def test_gelu16_declines_outside_the_rule() -> None:
    assert gelu16_table_for("v73", "qnn", 1e-4, 30000, 1e-4, 2000, 16, 16, approximate="tanh") is None
    assert gelu16_table_for("v73", "qnn", 1e-2, 100, 1e-2, 20, 8, 8) is None
    assert gelu16_table_for("v75", "qnn", 1e-4, 30000, 1e-4, 2000, 16, 16) is None
    assert gelu16_table_for("v73", "tflite", 1e-4, 30000, 1e-4, 2000, 16, 16) is None
    assert gelu16_z(np.arange(4), 2.0) is None


def test_gelu16_gate_below_z_1_is_z_times_a_quadratic() -> None:
    """Below ``z = 1`` the gate is ``2048 + rshr(Z R, 16)`` with ``R ~ 2^13 erf(z) / z``: within 2 of ``4096 Phi``
    (stop 26's equioscillation), 2048 at 0, 4095 from ``z = 4`` up."""
    z = np.arange(1 << 14)
    g = gelu16_gate(z)
    phi = 2048 * (1 + np.vectorize(math.erf)(z / 2.0**14))
    assert g[0] == 2048 and np.abs(g - phi).max() < 4
    assert (np.diff(g) >= -1).all()
    assert (gelu16_gate(np.arange(4 << 14, 6 << 14)) == 4095).all()


def test_gelu16_gate_from_1_to_4_is_the_measured_table() -> None:
    """From ``z = 1`` to 4 the gate is the table read off the simulator (``tables/gelu16_gate.safetensors``, read-only): within
    3.3 of ``4096 Phi``; it steps down as well as up, as the simulator's does (1,039 drops in [1, 2), 154 in [2, 3),
    2 in [3, 4)); 4097 on 381 values of ``Z`` in [2.67, 3); the flicker's first drops by hand (3771, 3772, 3771, 3772
    at ``Z`` = 16390..16393)."""
    from openqnn.backends.htp.spec.qnn_gelu16 import GELU16_TABLE_RANGE, gelu16_gate_table

    table = gelu16_gate_table()
    assert GELU16_TABLE_RANGE == (1 << 14, 1 << 16) and table.shape == (3 << 14,) and not table.flags.writeable
    z = np.arange(1 << 14, 4 << 14)
    g = gelu16_gate(z)
    np.testing.assert_array_equal(g, table)
    phi = 2048 * (1 + np.vectorize(math.erf)(z / 2.0**14))
    assert np.abs(g - phi).max() < 3.3
    drops = [int((np.diff(gelu16_gate(np.arange((j << 14) - 1, (j + 1) << 14))) == -1).sum()) for j in (1, 2, 3)]
    assert drops == [1039, 154, 2]
    assert int((g == 4097).sum()) == 381 and (z[g == 4097] >= 43718).all() and (z[g == 4097] < 3 << 14).all()
    np.testing.assert_array_equal(gelu16_gate(np.arange(16390, 16394)), [3771, 3772, 3771, 3772])


def test_gelu16_by_hand() -> None:
    """Simulator codes (v73, onnxruntime-qnn 2.7.0): at ``s = 2^-16``, ``z = 0`` (the output encoding the input's) the
    gates below ``z = 1``; at ``s = 2^-14``, ``z = 65535`` negative inputs (``4096 - G``)."""
    s = 2.0**-16
    q = np.array([1000, 20000, 40000, 65535])
    np.testing.assert_array_equal(gelu16_codes(q, s, 0, s, 0), [506, 12407, 29141, 55151])
    z = gelu16_z(np.array([65535]), s)
    assert z is not None and z[0] == (65535 * 23170 + (1 << 16)) >> 17
    q = np.array([0, 30000, 60000, 65534])
    np.testing.assert_array_equal(gelu16_codes(q, 2.0**-14, 65535, 2.0**-14, 65535), [65535, 65006, 63501, 65534])
    # a random encoding (v68 and v73): where the gate is 4097 a negative input gives the zero point (4096 - G clamped
    # at 0; unclamped it would be 14 codes above), a little further out 24 below it
    si, zi, so, zo = 0.00016524466216466814, 43481, 6.721276240069942e-05, 2996
    np.testing.assert_array_equal(gelu16_codes(np.array([20645, 20646, 23481]), si, zi, so, zo), [2996, 2996, 2972])


@pytest.mark.parametrize("bits", [8, 16])
def test_gelu_tanh_form_is_the_erf_form_on_the_htp(bits: int) -> None:
    """As the HTP computes it (measured), with QNN's arithmetic on v68 and v73 an ONNX ``approximate="tanh"`` Gelu runs as
    the erf form (every code, at 8 and 16 bits; the simulator's codes, tests/fidelity); TFLite's arithmetic and v75
    (not probed) keep the tanh form's exact rounding, which differs."""
    shape = (1, 5, 7, 9)
    n = 1 << bits
    x = np.random.default_rng(7).integers(0, n, shape).astype(np.int64)
    x.flat[:256] = np.arange(0, n, n // 256)  # (every 8-bit code)
    out = {}
    for approximate in ("none", "tanh"):
        g = _graph("Gelu", [(shape, _enc(-4.0, 4.0, bits), None)], {"approximate": approximate})
        g.tensors["out"].encoding = _enc(-0.2, 4.0, bits)
        for arch, arithmetic in (("v68", "qnn"), ("v73", "qnn"), ("v73", "tflite"), ("v75", "qnn")):
            out[approximate, arch, arithmetic] = run_step(g, arch, arithmetic, x)[1]
    for arch in ("v68", "v73"):
        np.testing.assert_array_equal(out["tanh", arch, "qnn"], out["none", arch, "qnn"])
    for key in (("v73", "tflite"), ("v75", "qnn")):
        assert (out[("tanh", *key)] != out[("none", *key)]).any()
