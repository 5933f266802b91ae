"""htp_config.arithmetic = "qnn" (the default): QNN's Softmax of rows of 3 to 16 8-bit codes (spec/qnn_softmax.short_codes:
exponentials from two nibble-indexed tables, their integer sum, nnlib's 16-bit reciprocal, a double rounding;
docs/htp-fidelity.md, stop 26). Fast path == reference == the spec on random, extreme and masked rows of every length,
both archs; within one code of exact rounding; other cases keep the general Softmax; the retired opt-in key is
refused. (Against the simulator: tests/fidelity/test_qnn_softmax.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_elementwise import _enc, _graph

from openqnn.backends.htp.arch import ARCHS
from openqnn.backends.htp.backend import HtpBackend
from openqnn.backends.htp.config import HtpConfig
from openqnn.backends.htp.kernels import HTP_KERNELS, HtpBuildContext
from openqnn.backends.htp.spec.qnn_softmax import RECIP16, SHORT_ROWS, short_codes, short_exp_table
from openqnn.ir.tensor import Encoding


def _softmax_graph(n: int, s_in: float, rows: tuple[int, ...] = (3, 5)):
    g = _graph("Softmax", [((*rows, n), _enc(-128 * s_in, 127 * s_in, 8), None)], {"axis": -1, "beta": 1.0})
    g.tensors["out"].encoding = Encoding(8, (1.0 / 256,), (0,))
    return g


def _step(n: int, arch: str, arithmetic: str, s_in: float):
    g = _softmax_graph(n, s_in)
    ctx = HtpBuildContext(g, ARCHS[arch], arithmetic=arithmetic)
    return HTP_KERNELS["Softmax"](g.nodes[0], ctx), g


def _exact(x: np.ndarray, s: float) -> np.ndarray:
    e = np.exp(s * (x - x.max(axis=-1, keepdims=True)))
    return np.clip(np.rint(256 * e / e.sum(axis=-1, keepdims=True)), 0, 255)


def _rows(rng: np.random.Generator, n: int) -> np.ndarray:
    """[R, n] codes: random rows, masked rows (a random tail at code 0 below high codes), and extremes (all equal,
    one maximum over zeros, two levels 255 / 0, neighbours of the maximum, sums at powers of two)."""
    rand = rng.integers(0, 256, (64, n))
    narrow = np.clip(200 + rng.integers(-6, 7, (64, n)), 0, 255)
    masked = rng.integers(200, 256, (64, n))
    masked[np.arange(n)[None, :] >= rng.integers(1, n + 1, 64)[:, None]] = 0
    extremes = [np.full(n, c) for c in (0, 1, 128, 255)]
    extremes += [np.r_[255, np.zeros(n - 1, np.int64)], np.r_[np.zeros(n - 1, np.int64), 255],
                 np.r_[255, 254, np.zeros(n - 2, np.int64)], np.arange(n) % 2 * 255, np.r_[255, np.full(n - 1, 254)]]
    return np.concatenate([rand, narrow, masked, np.stack(extremes)])


@pytest.mark.parametrize("arch", ["v68", "v73"])
@pytest.mark.parametrize("n", list(SHORT_ROWS))
def test_short_rows_fast_equals_reference_equals_spec(arch: str, n: int) -> None:
    rng = np.random.default_rng(n)
    for s_in in (0.004, 0.03, 0.1, 0.37, 1.3):
        step, g = _step(n, arch, "qnn", s_in)
        assert step.plan is not None and step.plan.kernel == "htp.softmax_short"
        s = float(g.tensors["x0"].encoding.scale[0])  # type: ignore[union-attr]
        np.testing.assert_array_equal(step.plan.arrays["exp"], short_exp_table(s))
        np.testing.assert_array_equal(step.plan.arrays["recip"], RECIP16)
        rows = _rows(rng, n)
        x = np.concatenate([rows, rows[: (-len(rows)) % 5]]).reshape(-1, 5, n)
        ref = step.reference(x)
        fast = step.fast(torch.from_numpy(x).to(torch.uint8))
        assert fast.dtype == torch.uint8
        np.testing.assert_array_equal(ref, fast.numpy().astype(np.int64))
        np.testing.assert_array_equal(ref, short_codes(x, s))
        assert np.abs(ref - _exact(x, s)).max() <= 1


def test_short_rows_are_not_exact_rounding() -> None:
    """QNN's route parts from exact rounding by a code now and then (its reciprocal has a relative error up to
    5.2e-4, its exponentials are off by up to about 2 units of 2^-15): on random rows of 16 at s_in = 0.05 between
    0.1% and 3% of the codes."""
    x = np.random.default_rng(0).integers(150, 256, (200, 5, 16))
    assert 0.001 < np.mean(short_codes(x, 0.05) != _exact(x, float(np.float32(0.05)))) < 0.03


@pytest.mark.parametrize("n,arch,arithmetic", [(3, "v73", "tflite"), (16, "v68", "tflite"), (8, "v69", "qnn"),
                                               (16, "v75", "qnn"), (17, "v73", "qnn"), (1, "v73", "qnn")])
def test_other_cases_keep_the_general_softmax(n: int, arch: str, arithmetic: str) -> None:
    step, g = _step(n, arch, arithmetic, 0.1)
    assert step.plan is not None and step.plan.kernel == "htp.softmax"
    s = float(g.tensors["x0"].encoding.scale[0])  # type: ignore[union-attr]
    if arithmetic == "tflite":  # exact exponentials in Q30, a rounded division
        table = np.asarray(step.plan.arrays["exp"], dtype=np.int64)
        np.testing.assert_array_equal(table, np.round(np.exp(-s * np.arange(256)) * 2.0**30).astype(np.int64))


def test_the_exponentials_are_two_nibble_tables_scaled_by_32767() -> None:
    """E[k] = vmpy(A[k >> 4], B[k & 15]) with tables of exp scaled by 32767: the row's maximum is 32766, and
    E[16 i + j] is the rounded Q15 product of E[16 i]'s and E[j]'s tables, off 2^15 exp(-k s) by up to 2 units."""
    s = float(np.float32(0.05))
    e = short_exp_table(s)
    assert e[0] == 32766
    a = np.floor(32767 * np.exp(-16 * s * np.arange(16)) + 0.5).astype(np.int64)
    b = np.floor(32767 * np.exp(-s * np.arange(16)) + 0.5).astype(np.int64)
    assert e[16 * 3 + 5] == (a[3] * b[5] + (1 << 14)) >> 15
    off = e - 2.0**15 * np.exp(-s * np.arange(256))
    assert np.abs(off).max() < 3 and np.abs(off).max() > 1


@pytest.mark.parametrize("path", ["fast", "reference"])
def test_short_rows_take_qnns_route_by_default_and_tflites_on_request(path: str) -> None:
    """Through prepare: the default config (arithmetic "qnn") gives the spec's codes; arithmetic "tflite" gives
    TFLite's (exact exponentials in Q30, a rounded division: nearer exact rounding)."""
    s_in = 0.05
    g = _softmax_graph(16, s_in, rows=(200, 5))
    s = float(g.tensors["x0"].encoding.scale[0])  # type: ignore[union-attr]
    x = np.random.default_rng(1).integers(150, 256, (200, 5, 16)).astype(np.uint8)
    outs = {}
    for cfg in (HtpConfig(dsp_arch="v73"), HtpConfig(dsp_arch="v73", arithmetic="tflite")):
        exe = HtpBackend(cfg, path=path).prepare(g)
        outs[cfg.arithmetic] = np.asarray(exe.run({"x0": x}, native_inputs=True, native_outputs=True)["out"])
    np.testing.assert_array_equal(outs["qnn"].astype(np.int64), short_codes(x, s))
    exact = _exact(x.astype(np.int64), s)
    assert np.mean(outs["tflite"] == exact) > np.mean(outs["qnn"] == exact)


@pytest.mark.parametrize("value", [True, False])
def test_the_retired_key_is_refused(value: bool) -> None:
    """htp_config.enable_approximate_short_softmax (stop 25's opt-in) is retired: refused with the reason, from the API
    and from a config file."""
    from openqnn.errors import InvalidConfigError
    from openqnn.runtime.config import parse_backend_config

    with pytest.raises(InvalidConfigError, match="retired"):
        HtpConfig(dsp_arch="v73", enable_approximate_short_softmax=value)
    with pytest.raises(InvalidConfigError, match="retired"):
        parse_backend_config({"htp_config": {"enable_approximate_short_softmax": value}})


def test_the_plan_is_data_and_binds_back_to_the_same_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plan (the exponentials' table, the reciprocal's coefficients) survives JSON and binds without prepare-time
    work."""
    import json

    from openqnn.backends.htp.kernels import normalization
    from openqnn.backends.htp.kernels.registry import bind_step
    from openqnn.backends.htp.spec import qnn_softmax
    from openqnn.backends.plan import StepPlan

    step, _ = _step(16, "v73", "qnn", 0.07)
    made = step.plan
    assert made is not None
    doc = json.loads(json.dumps(made.to_json(), allow_nan=False))
    back = StepPlan.from_json(doc, {k: np.array(v) for k, v in made.stored_arrays().items()})
    for mod, name in ((qnn_softmax, "short_exp_table"), (normalization, "short_table_for")):
        monkeypatch.setattr(mod, name, lambda *a, **k: (_ for _ in ()).throw(AssertionError("prepare work on bind")))
    x = np.random.default_rng(2).integers(0, 256, (3, 5, 16))
    a, b = bind_step(made), bind_step(back)
    np.testing.assert_array_equal(a.reference(x), b.reference(x))
    np.testing.assert_array_equal(b.reference(x), b.fast(torch.from_numpy(x).to(torch.uint8)).numpy())


def test_short_rows_reciprocal_reads_the_sums_mantissa() -> None:
    """Rows of 5 to 16: the reciprocal reads the sum's 16 bits below its leading one, truncated (Q16); rows of 3 or 4
    its top 15 bits with an offset of a quarter of their last bit (14 bits below the leading one: u's two low bits 0)."""
    from openqnn.backends.htp.spec.qnn_softmax import short_mantissa

    s = np.arange((1 << 15) - 2, 1 << 19, 7, dtype=np.int64)
    b = np.frexp(s.astype(np.float64))[1].astype(np.int64)
    bits = [format(int(v), "b") for v in s]
    below = np.array([int((x[1:] + "0" * 16)[:16], 2) for x in bits])
    for n in (5, 8, 16):
        np.testing.assert_array_equal(short_mantissa(s, b, n), below)
    for n in (3, 4):
        u = short_mantissa(s, b, n)
        assert not np.any(u & 3)
        assert np.all(np.abs(u - below) <= 4 + 1) and np.any(u != below)
