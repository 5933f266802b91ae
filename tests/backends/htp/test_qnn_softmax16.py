"""htp_config.arithmetic = "qnn" (the default): QNN's Softmax of unsigned 16-bit codes, rows of 3 or more
(spec/qnn_softmax16.py: a Q22 step, Q15 exponentials, an even reciprocal, ``(E r) >> (b - 2)``;
docs/htp-fidelity.md, "16-bit Softmax (stop 26)"). Fast path == reference == the spec on random, extreme and
masked rows, both archs; other cases keep the general Softmax. (Against the simulator:
tests/fidelity/test_qnn_softmax16.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_elementwise import _enc, _graph

from openqnn.backends.htp.arch import ARCHS
from openqnn.backends.htp.backend import HtpBackend
from openqnn.backends.htp.config import HtpConfig
from openqnn.backends.htp.kernels import HTP_KERNELS, HtpBuildContext
from openqnn.backends.htp.spec.qnn_softmax16 import (
    codes_of,
    exp_step16,
    exp_table16,
    pow2_frac,
    softmax16_codes,
)
from openqnn.ir.tensor import Encoding


def _softmax_graph(n: int, s_in: float, rows: tuple[int, ...] = (3, 5), out_scale: float = 1 / 65536):
    g = _graph("Softmax", [((*rows, n), _enc(-32768 * s_in, 32767 * s_in, 16), None)], {"axis": -1, "beta": 1.0})
    g.tensors["out"].encoding = Encoding(16, (out_scale,), (0,))
    return g


def _step(n: int, arch: str, arithmetic: str, s_in: float, out_scale: float = 1 / 65536):
    g = _softmax_graph(n, s_in, out_scale=out_scale)
    ctx = HtpBuildContext(g, ARCHS[arch], arithmetic=arithmetic)
    return HTP_KERNELS["Softmax"](g.nodes[0], ctx), g


def _exact(x: np.ndarray, s: float) -> np.ndarray:
    e = np.exp(s * (x - x.max(axis=-1, keepdims=True)))
    return np.clip(np.rint(65536 * e / e.sum(axis=-1, keepdims=True)), 0, 65535)


def _rows(rng: np.random.Generator, n: int) -> np.ndarray:
    """[R, n] codes: random rows, narrow rows, masked rows (a tail at code 0) and extremes (all equal, one maximum
    over zeros, two levels, neighbours of the maximum)."""
    rand = rng.integers(0, 65536, (64, n))
    narrow = np.clip(40000 + rng.integers(-3000, 3001, (64, n)), 0, 65535)
    masked = rng.integers(50000, 65536, (64, n))
    masked[np.arange(n)[None, :] >= rng.integers(1, n + 1, 64)[:, None]] = 0
    extremes = [np.full(n, c) for c in (0, 1, 32768, 65535)]
    extremes += [np.r_[65535, np.zeros(n - 1, np.int64)], np.r_[np.zeros(n - 1, np.int64), 65535],
                 np.r_[65535, 65534, np.zeros(n - 2, np.int64)], np.arange(n) % 2 * 65535,
                 np.r_[65535, np.full(n - 1, 65534)]]
    return np.concatenate([rand, narrow, masked, np.stack(extremes)])


@pytest.mark.parametrize("arch", ["v68", "v73"])
@pytest.mark.parametrize("n", [3, 5, 16, 17, 64, 300])
def test_fast_equals_reference_equals_spec(arch: str, n: int) -> None:
    rng = np.random.default_rng(n)
    for s_in in (5e-5, 2e-4, 3.7e-4, 2e-3):
        step, g = _step(n, arch, "qnn", s_in)
        assert step.plan is not None and step.plan.kernel == "htp.softmax16"
        s = float(g.tensors["x0"].encoding.scale[0])  # type: ignore[union-attr]
        np.testing.assert_array_equal(step.plan.arrays["exp"], exp_table16(s))
        rows = _rows(rng, n)
        x = np.concatenate([rows, rows[: (-len(rows)) % 5]]).reshape(-1, 5, n)
        ref = step.reference(x)
        fast = step.fast(torch.from_numpy(x.astype(np.int32)))
        np.testing.assert_array_equal(ref, fast.numpy().astype(np.int64))
        np.testing.assert_array_equal(ref, softmax16_codes(x, s))
        # near exact: small exponentials floored to Q15 shrink the sum (a maximum up to 0.4% high), and the step's
        # truncation to 2^-22 moves an exponential by up to 65535 (C - C') ln 2 relative
        exact = _exact(x, s)
        rel = 65535 * (s * np.log2(np.e) - exp_step16(s)) * np.log(2) + 1 / 256
        assert np.all(np.abs(ref - exact) <= 3 + exact * rel)


def test_the_route_in_integers() -> None:
    """The step is ``s_in log2(e)`` truncated to a multiple of 2^-22 (2.5e-4: 1512 / 2^22 against 1512.78; 3.5e-4:
    2117 / 2^22 against 2117.9, where 11 significant bits would keep 1058 / 2^21); the maximum's exponential is 32767
    and its code ``4 p - 2`` for a multiplier ``R = 4 p`` (``b = 16``); constant rows of n give the simulator's codes,
    just below ``65536 / n`` (the multiplier saturates at 65535 for n = 16 and 64; n = 4 is a miss: 16384 against
    QNN's 16383, the reciprocal's rounding is open)."""
    assert exp_step16(2.5e-4) == 1512 / 2**22
    assert exp_step16(3.5e-4) == 2117 / 2**22
    assert exp_step16(2e-4) == 1210 / 2**22
    e = exp_table16(2e-4)
    assert e[0] == 32767 and e[65535] == 0
    assert pow2_frac(np.array([0, 65535]))[0] == 32767 and pow2_frac(np.array([65535]))[0] == 16384
    assert np.all(np.diff(e) <= 0)
    two = codes_of(np.array([[32767, 6000, 0, 0]]))
    s = 32767 + 6000
    p = int(np.floor(2.0**29 / s + 0.5))
    assert two[0, 0] == 4 * p - 2 and two[0, 0] % 4 == 2
    for n, code in ((3, 21845), (9, 7281), (16, 4095), (64, 1023), (128, 511)):
        assert codes_of(np.full((1, n), 32767))[0, 0] == code


@pytest.mark.parametrize("n,arch,arithmetic,out_scale", [(17, "v73", "tflite", 1 / 65536), (2, "v73", "qnn", 1 / 65536),
                                                         (17, "v69", "qnn", 1 / 65536), (17, "v68", "qnn", 1 / 32768)])
def test_other_cases_keep_the_general_softmax(n: int, arch: str, arithmetic: str, out_scale: float) -> None:
    step, _ = _step(n, arch, arithmetic, 3e-4, out_scale)
    assert step.plan is not None and step.plan.kernel == "htp.softmax"


@pytest.mark.parametrize("path", ["fast", "reference"])
def test_qnns_route_by_default_and_tflites_on_request(path: str) -> None:
    """Through prepare: the default config (arithmetic "qnn") gives the spec's codes; arithmetic "tflite" gives
    TFLite's (exact exponentials in Q30, a rounded division: nearer exact rounding)."""
    g = _softmax_graph(17, 3e-4, rows=(64, 5))
    s = float(g.tensors["x0"].encoding.scale[0])  # type: ignore[union-attr]
    x = np.random.default_rng(1).integers(20000, 65536, (64, 5, 17)).astype(np.uint16)
    outs = {}
    for cfg in (HtpConfig(dsp_arch="v73"), HtpConfig(dsp_arch="v73", arithmetic="tflite")):
        exe = HtpBackend(cfg, path=path).prepare(g)
        outs[cfg.arithmetic] = np.asarray(exe.run({"x0": x}, native_inputs=True, native_outputs=True)["out"])
    np.testing.assert_array_equal(outs["qnn"].astype(np.int64), softmax16_codes(x, s))
    exact = _exact(x.astype(np.int64), s)
    assert np.mean(outs["tflite"] == exact) > np.mean(outs["qnn"] == exact)
