"""16-bit linear Resize on QNN's float route (spec/qnn_resize.py, ``quantize16``): the fast path equals the numpy
reference and the spec; the plan round-trips; other cases keep their kernels (docs/htp-fidelity.md, "16-bit
Resize (stop 27)")."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_pool_movement import In, near, one_node, rand_enc

from openqnn.backends.htp.arch import ARCHS
from openqnn.backends.htp.kernels import HTP_KERNELS
from openqnn.backends.htp.kernels.registry import HtpBuildContext, bind_step
from openqnn.backends.plan import StepPlan

V68, V73 = ARCHS["v68"], ARCHS["v73"]


def _graph(rng: np.random.Generator, mode: str, in_shape=(2, 5, 6, 3), out_shape=(2, 11, 7, 3)):
    e = rand_enc(rng, 16)
    o = near(rng, e)
    attrs = {"output_shape": list(out_shape), "interpolation_mode": "linear", "transformation_mode": mode,
             "antialias": False}
    return one_node("Resize", [In(in_shape, e)], attrs, [o])


def _run(g, arch, arithmetic: str, seed: int = 1) -> tuple[np.ndarray, np.ndarray, StepPlan, np.ndarray]:
    node = g.nodes[0]
    step = HTP_KERNELS[node.op_type](node, HtpBuildContext(g, arch, arithmetic=arithmetic))
    x = g.tensors[node.inputs[0]]
    q = np.random.default_rng(seed).integers(0, 1 << 16, size=x.shape, dtype=np.int64)
    return np.asarray(step.reference(q)), step.fast(torch.from_numpy(q).to(torch.int32)).numpy().astype(np.int64), \
        step.plan, q


@pytest.mark.parametrize("arch", [V68, V73], ids=["v68", "v73"])
@pytest.mark.parametrize("mode", ["half_pixel", "align_corners", "asymmetric", "pytorch_half_pixel"])
def test_resize16_fast_equals_the_spec(mode: str, arch) -> None:
    from openqnn.backends.htp.spec import qnn_resize

    rng = np.random.default_rng(71)
    for i in range(3):
        g = _graph(rng, mode)
        ref, fast, plan, q = _run(g, arch, "qnn", seed=i)
        assert plan.kernel == "htp.resize_float" and plan.attrs["bitwidth"] == 16
        np.testing.assert_array_equal(ref, fast)
        # the spec by hand: float32 dequantization, QNN's float32 taps per axis from the sizes, the float32
        # product rounded half away
        a = plan.attrs
        v = qnn_resize.dequantize(q, a["s_in"], a["z_in"])
        for ax in (1, 2):
            taps = qnn_resize.linear_taps(mode, q.shape[ax], int(g.nodes[0].attrs["output_shape"][ax]))
            assert taps is not None
            v = qnn_resize.filter_axes(v, [(ax, *taps)])
        np.testing.assert_array_equal(ref, qnn_resize.quantize16(v, a["s_out"], a["z_out"], 65535))
        tfl, _, tplan, _ = _run(g, arch, "tflite", seed=i)
        assert tplan.kernel == "htp.resize_filter" and np.abs(ref - tfl).max() <= 1
        back = StepPlan.from_json(json.loads(json.dumps(plan.to_json(), allow_nan=False)), plan.stored_arrays())
        np.testing.assert_array_equal(np.asarray(bind_step(back).reference(q)), ref)


def test_quantize16_by_hand() -> None:
    """float32(float32(y * float32(1 / s_out)) + z_out) rounded half up, then clamped to [0, 65535]: no float16 step
    (12345.4 codes would be float16 12344); -2.5 + 100 goes up to 98; 32700.498046875 + 100 is 32800.5 in float32
    (the sum's ulp 2^-8), so 32801 where the product alone would give 32800."""
    from openqnn.backends.htp.spec import qnn_resize

    s = 2.0**-12
    y = np.array([12345.4, 2.5, -2.5, -0.4999, 70000.0, -70000.0, 32700.498046875], dtype=np.float32) * np.float32(s)
    want = [12445, 103, 98, 100, 65535, 0, 32801]
    assert qnn_resize.quantize16(y, s, 100, 65535).tolist() == want
    t = qnn_resize.quantize16_t(torch.from_numpy(y), s, 100, 65535)
    assert t.tolist() == want


def test_resize16_keeps_the_other_kernels_elsewhere() -> None:
    rng = np.random.default_rng(72)
    assert _run(_graph(rng, "half_pixel"), ARCHS["v75"], "qnn")[2].kernel == "htp.resize_filter"
    assert _run(_graph(rng, "half_pixel"), V73, "tflite")[2].kernel == "htp.resize_filter"


def test_linear_taps_by_hand() -> None:
    """QNN's coordinates from the sizes in float32: 7 -> 10 half_pixel at r = 0.7 (not the model's 1 / 1.5), 7 -> 21
    at float32(1 / 3), align_corners 7 -> 14 at float32(6 / 13)."""
    from openqnn.backends.htp.spec import qnn_resize

    f32 = np.float32
    taps = qnn_resize.linear_taps("half_pixel", 7, 10)
    assert taps is not None
    idx, w = taps
    xo = np.clip((np.arange(10, dtype=f32) + f32(0.5)) * (f32(7) / f32(10)) - f32(0.5), 0, 6).astype(f32)
    np.testing.assert_array_equal(idx[:, 0], np.floor(xo))
    np.testing.assert_array_equal(w[:, 1], (xo - np.floor(xo)).astype(f32))
    np.testing.assert_array_equal(w[:, 0], (f32(1) - w[:, 1]).astype(f32))
    assert idx[1].tolist() == [0, 1] and w[1, 1] == f32(f32(1.5) * f32(0.7) - f32(0.5))
    taps3 = qnn_resize.linear_taps("half_pixel", 7, 21)
    assert taps3 is not None and taps3[1][12, 1] == f32(f32(12.5) * f32(1 / 3) - f32(0.5)) - f32(3)
    taps_a = qnn_resize.linear_taps("align_corners", 7, 14)
    assert taps_a is not None and taps_a[1][5, 1] == f32(f32(5) * f32(f32(6) / f32(13))) - f32(2)
    assert taps_a[0][-1].tolist() == [6, 6] and taps_a[1][-1].tolist() == [1.0, 0.0]
    assert qnn_resize.linear_taps("tf_half_pixel_for_nn", 7, 14) is None
