"""htp_config.arithmetic = "qnn" (the default): QNN's CumulativeSum of 8- and 16-bit codes along the last axis
(spec/qnn_cumsum.py: a float32 scan through the quantized output, each step rounded half to even and saturated;
docs/htp-fidelity.md, stop 27). Fast path == reference == the spec on random, narrow and saturating rows, both
widths and archs; the plan survives JSON; other cases (tflite, another axis, exclusive, reverse, other archs) keep
the cpu fallback. (Against the simulator: tests/fidelity/test_qnn_cumsum.py.)"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_elementwise import _enc, _graph

from openqnn.backends.htp.arch import ARCHS
from openqnn.backends.htp.backend import HtpBackend
from openqnn.backends.htp.config import HtpConfig
from openqnn.backends.htp.kernels import HTP_KERNELS, HtpBuildContext, Unsupported
from openqnn.backends.htp.kernels.registry import bind_step
from openqnn.backends.htp.spec.qnn_cumsum import cumsum_codes
from openqnn.backends.plan import StepPlan
from openqnn.ir.tensor import Encoding


def _cumsum_graph(shape: tuple[int, ...], bits: int, s_in: float, out: tuple[float, int], axis: int = -1,
                  exclusive: bool = False, reverse: bool = False):
    g = _graph("CumulativeSum", [(shape, _enc(-100 * s_in, 155 * s_in, bits) if bits == 8 else
                                   _enc(-30000 * s_in, 35535 * s_in, bits), None)],
               {"axis": axis, "exclusive": exclusive, "reverse": reverse})
    g.tensors["out"].encoding = Encoding(bits, (out[0],), (-out[1],))
    return g


def _codes(rng: np.random.Generator, shape: tuple[int, ...], bits: int) -> np.ndarray:
    hi = (1 << bits) - 1
    x = rng.integers(0, hi + 1, shape)
    w = (hi + 1) // 16
    x[::2] = np.clip(rng.integers(-w, w, x[::2].shape) + rng.integers(0, hi + 1, (*x[::2].shape[:-1], 1)), 0, hi)
    return x


@pytest.mark.parametrize("arch", ["v68", "v73"])
@pytest.mark.parametrize("bits,s_in,s_out,z_out", [(8, 0.03, 0.037, 120), (8, 0.02, 0.01, 3), (8, 2**-6, 2**-3, 165),
                                                   (16, 1e-4, 2.4e-4, 34118), (16, 3e-4, 1e-4, 60000)])
def test_fast_equals_reference_equals_spec(arch: str, bits: int, s_in: float, s_out: float, z_out: int) -> None:
    g = _cumsum_graph((6, 4, 9), bits, s_in, (s_out, z_out))
    step = HTP_KERNELS["CumulativeSum"](g.nodes[0], HtpBuildContext(g, ARCHS[arch], arithmetic="qnn"))
    assert step.plan is not None and step.plan.kernel == "htp.cumsum_qnn"
    enc = g.tensors["x0"].encoding
    assert enc is not None
    x = _codes(np.random.default_rng(bits + z_out), (6, 4, 9), bits)
    ref = step.reference(x)
    fast = step.fast(torch.from_numpy(x).to(torch.uint8 if bits == 8 else torch.int32)).numpy().astype(np.int64)
    np.testing.assert_array_equal(ref, fast)
    np.testing.assert_array_equal(ref, cumsum_codes(x, enc.scale[0], -enc.offset[0], s_out, z_out, bits))
    # the plan is data: through JSON and back, the same bits
    doc = json.loads(json.dumps(step.plan.to_json(), allow_nan=False))
    back = bind_step(StepPlan.from_json(doc, {k: np.array(v) for k, v in step.plan.stored_arrays().items()}))
    np.testing.assert_array_equal(ref, back.reference(x))


def test_each_step_rounds_and_saturates() -> None:
    """Ties go to the even output code (z_out odd: -16.5 + 165 -> 148), and a row that saturates carries on from the
    clamped code, not from the true sum; exact rounding of the sum differs on both counts."""
    s = np.float32(0.01)
    # ratio 1/8: 4 codes below z_in is half an output code below z_out
    y = cumsum_codes(np.array([[0, 255 - 4]]), float(s), 132, float(s * 8), 165, 8)
    assert y[0, 0] == 148  # -132 / 8 = -16.5 -> 148.5 -> 148 (even)
    ups = cumsum_codes(np.array([[0, 230]]), 0.05, 200, 0.01, 100, 8)
    assert ups[0].tolist() == [0, 150]  # from code 0 (saturated), not from -900 codes: exact gives 0
    exact = np.clip(np.rint(np.cumsum((np.array([0, 230]) - 200) * 5.0) + 100), 0, 255)
    assert exact.tolist() == [0.0, 0.0]


@pytest.mark.parametrize("why,kw", [("tflite", {"arithmetic": "tflite"}), ("arch", {"arch": "v75"}),
                                    ("axis", {"axis": 1}), ("exclusive", {"exclusive": True}),
                                    ("reverse", {"reverse": True})])
def test_other_cases_fall_back(why: str, kw: dict) -> None:
    g = _cumsum_graph((6, 4, 9), 8, 0.03, (0.05, 100), axis=kw.get("axis", -1), exclusive=kw.get("exclusive", False),
                      reverse=kw.get("reverse", False))
    ctx = HtpBuildContext(g, ARCHS[kw.get("arch", "v73")], arithmetic=kw.get("arithmetic", "qnn"))
    with pytest.raises(Unsupported, match="CumulativeSum"):
        HTP_KERNELS["CumulativeSum"](g.nodes[0], ctx)


@pytest.mark.parametrize("path", ["fast", "reference"])
def test_prepare_runs_it_on_the_htp(path: str) -> None:
    """Through prepare (default config, arithmetic "qnn"): the spec's codes, no cpu fallback."""
    g = _cumsum_graph((2, 5, 7, 9), 8, 0.026, (0.061, 116))
    enc = g.tensors["x0"].encoding
    assert enc is not None
    x = _codes(np.random.default_rng(5), (2, 5, 7, 9), 8).astype(np.uint8)
    exe = HtpBackend(HtpConfig(dsp_arch="v73"), path=path).prepare(g)
    out = np.asarray(exe.run({"x0": x}, native_inputs=True, native_outputs=True)["out"]).astype(np.int64)
    np.testing.assert_array_equal(out, cumsum_codes(x, enc.scale[0], -enc.offset[0], 0.061, 116, 8))
