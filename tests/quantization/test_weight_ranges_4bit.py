"""4-bit weight ranges: by default, per-channel (per-row, per-block) 4-bit weights take the clipping range
that minimizes each channel's quantize-dequantize MSE; an explicit --param_quantizer_calibration wins.

End to end: digits CNNs with depthwise convolutions, trained here with other seeds, schedules and
architectures than tests/quantization/digits.py, keep their fp32 accuracy under W4A8 per-channel
(cpu simulation and htp integer emulation) and W8A8."""

from __future__ import annotations

import functools
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest

import openqnn
from openqnn.backends.htp import HtpBackend
from openqnn.quantization import QuantizerConfig
from openqnn.quantization.algorithms import range_from_array
from openqnn.quantization.encodings import math as qmath
from quantization.digits import digits_split

BATCH = 108  # the test split's 540 images in 5 batches


def _qdq_error(w: np.ndarray, t: np.ndarray, bitwidth: int) -> np.ndarray:
    """Sum of squared quantize-dequantize errors of each row of ``w`` on the symmetric grid of absmax t."""
    scale, _ = qmath.symmetric(t, bitwidth)
    scale = np.asarray(scale)[:, None]
    half = 1 << (bitwidth - 1)
    q = np.clip(np.round(w / scale), -half, half - 1)
    return ((q * scale - w) ** 2).sum(axis=1)


@pytest.mark.parametrize("bitwidth", [3, 4])
def test_per_channel_mse_search_matches_brute_force(bitwidth: int) -> None:
    rng = np.random.default_rng(7)
    w = rng.standard_normal((12, 9)) * rng.uniform(0.05, 3.0, (12, 1))  # depthwise 3x3 channels
    w[:, 4] *= rng.uniform(1.0, 6.0, 12)  # a dominant centre tap in some channels
    w[3] = 0.0  # a dead channel
    lo, hi = range_from_array("mse", w.T, bitwidth, True, axis=1)  # channels on the last axis, as Conv2d's
    np.testing.assert_array_equal(lo, -hi)
    amax = np.abs(w).max(axis=1)
    factors = np.linspace(0.3, 1.0, 2801)
    brute = np.stack([_qdq_error(w, np.maximum(amax * f, 1e-12), bitwidth) for f in factors], axis=1).min(axis=1)
    found = _qdq_error(w, hi, bitwidth)
    minmax = _qdq_error(w, amax, bitwidth)
    live = amax > 0
    # as good as the dense brute-force search (its grid is finite: allow it 0.1% more), never worse than min-max
    assert np.all(found[live] <= brute[live] * 1.001 + 1e-12), (found, brute)
    assert np.all(found <= minmax + 1e-12)
    assert found[3] == 0.0
    if bitwidth == 4:  # at 16 levels, clipping helps most of these channels
        assert np.sum(found[live] < minmax[live] * (1 - 1e-6)) >= 6, (found, minmax)
        assert found.sum() < 0.95 * minmax.sum(), (found, minmax)


def test_default_param_method_by_bitwidth_and_granularity() -> None:
    assert QuantizerConfig(weights_bitwidth=4).param_method(per_axis=True) == ("mse", True)
    assert QuantizerConfig(weights_bitwidth=4).param_method(per_axis=False) == ("min-max", True)
    assert QuantizerConfig(weights_bitwidth=8).param_method(per_axis=True) == ("min-max", True)
    explicit = QuantizerConfig(weights_bitwidth=4, param_quantizer_calibration="min-max")
    assert explicit.param_method(per_axis=True) == ("min-max", True)
    assert QuantizerConfig(weights_bitwidth=4, param_quantizer_calibration="sqnr").param_method(True)[0] == "sqnr"
    assert QuantizerConfig(weights_bitwidth=4, param_quantizer="tf").param_method(per_axis=True)[0] == "tf"
    assert QuantizerConfig(weights_bitwidth=4, param_quantizer_schema="asymmetric").param_method(True) == ("mse", False)


# (seed, architecture, schedule): two architectures with depthwise 3x3 convolutions, two schedules
MODELS = [(1, "wide", "adam"), (2, "wide", "onecycle"), (3, "mobile", "adam"), (4, "mobile", "onecycle"),
          (5, "mobile", "onecycle")]


def _network(arch: str):  # type: ignore[no-untyped-def]
    from torch import nn

    if arch == "wide":  # conv, conv, pool, depthwise, two FC
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1, groups=32), nn.ReLU6(),
            nn.Flatten(), nn.Linear(32 * 16, 64), nn.ReLU(), nn.Linear(64, 10))
    # MobileNet-like: conv, depthwise, pointwise, pool, depthwise, FC
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 24, 1), nn.BatchNorm2d(24), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(24, 24, 3, padding=1, groups=24), nn.ReLU(),
        nn.Flatten(), nn.Linear(24 * 16, 10))


@functools.cache
def _trained(seed: int, arch: str, schedule: str) -> bytes:
    import torch
    from torch import nn

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    xtr, ytr, _, _ = digits_split()
    model = _network(arch)
    xt, yt = torch.from_numpy(xtr), torch.from_numpy(ytr)
    batches = (len(xt) + 63) // 64
    if schedule == "adam":
        epochs = 15
        opt: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        sched = None
    else:  # SGD with momentum, one-cycle learning rate
        epochs = 8
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=epochs * batches)
    for _epoch in range(epochs):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            b = perm[i:i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[b]), yt[b]).backward()
            opt.step()
            if sched is not None:
                sched.step()
    model.eval()
    with warnings.catch_warnings(), tempfile.TemporaryDirectory() as tmp:
        warnings.simplefilter("ignore")
        path = Path(tmp) / "digits.onnx"
        torch.onnx.export(model, (torch.zeros(1, 1, 8, 8),), str(path), input_names=["image"],
                          output_names=["logits"], opset_version=13, dynamo=False,
                          dynamic_axes={"image": {0: "n"}, "logits": {0: "n"}})
        return path.read_bytes()


def _accuracy(run, x: np.ndarray, y: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    preds = np.concatenate([run({"image": x[i:i + BATCH]})["logits"].argmax(axis=-1) for i in range(0, len(x), BATCH)])
    return float(np.mean(preds == y)) * 100


@pytest.mark.parametrize("seed,arch,schedule", MODELS)
def test_w4a8_per_channel_keeps_fp32_accuracy(seed: int, arch: str, schedule: str, tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(_trained(seed, arch, schedule))
    graph = openqnn.convert(tmp_path / "m.onnx", input_dims={"image": (BATCH, 1, 8, 8)})
    xtr, _, xte, yte = digits_split()
    calib = [{"image": xtr[i:i + BATCH]} for i in range(0, 2 * BATCH, BATCH)]
    w8 = openqnn.quantize(graph, calib, QuantizerConfig(use_per_channel_quantization=True))
    w4 = openqnn.quantize(graph, calib, QuantizerConfig(weights_bitwidth=4, use_per_channel_quantization=True))
    acc = {"fp32": _accuracy(openqnn.Session(graph).run, xte, yte),
           "w8a8": _accuracy(openqnn.Session(w8).run, xte, yte),
           "w4a8": _accuracy(openqnn.Session(w4).run, xte, yte),
           "w4a8 htp": _accuracy(HtpBackend().prepare(w4).run, xte, yte)}
    print(f"\ndigits {arch}/{schedule} seed {seed}: " + ", ".join(f"{k} {v:.2f}%" for k, v in acc.items()))
    assert acc["w8a8"] >= acc["fp32"] - 0.5, acc
    assert acc["w4a8"] >= acc["fp32"] - 2.0, acc
    assert abs(acc["w4a8 htp"] - acc["w4a8"]) <= 0.5, acc

    # the convolutions' 4-bit weights (per-channel) took mse ranges, the per-tensor FC weights min-max
    depthwise = 0
    for node in w4.nodes:
        if node.op_type not in ("Conv2d", "DepthWiseConv2d", "FullyConnected"):
            continue
        w = w4.tensors[node.inputs[1]]
        assert w.encoding is not None and w.data is not None and w.encoding.bitwidth == 4
        axis = w.encoding.axis
        depthwise += node.op_type == "DepthWiseConv2d"
        method = "min-max" if axis is None else "mse"
        lo, hi = range_from_array(method, w.data, 4, True, axis=axis)
        np.testing.assert_allclose(w.encoding.scale, qmath.symmetric(np.maximum(-lo, hi), 4)[0], rtol=1e-6)
    assert depthwise >= 1
    assert w4.metadata["quantization"]["param_calibration"] == "mse"


def test_explicit_param_calibration_wins(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(_trained(*MODELS[2]))
    graph = openqnn.convert(tmp_path / "m.onnx", input_dims={"image": (BATCH, 1, 8, 8)})
    xtr = digits_split()[0]
    calib = [{"image": xtr[:BATCH]}]
    default = openqnn.quantize(graph, calib, QuantizerConfig(weights_bitwidth=4, use_per_channel_quantization=True))
    minmax = openqnn.quantize(graph, calib, QuantizerConfig(weights_bitwidth=4, use_per_channel_quantization=True,
                                                            param_quantizer_calibration="min-max"))
    assert minmax.metadata["quantization"]["param_calibration"] == "min-max"
    clipped = 0
    for node in minmax.nodes:
        if node.op_type in ("Conv2d", "DepthWiseConv2d"):
            w = minmax.tensors[node.inputs[1]]
            assert w.data is not None and w.encoding is not None and w.encoding.axis is not None
            amax = np.abs(np.moveaxis(w.data, w.encoding.axis, 0).reshape(w.shape[w.encoding.axis], -1)).max(axis=1)
            np.testing.assert_allclose(w.encoding.scale, qmath.symmetric(amax, 4)[0], rtol=1e-6)
            ours = np.asarray(default.tensors[w.name].encoding.scale)
            assert np.all(ours <= np.asarray(w.encoding.scale) * (1 + 1e-9))
            clipped += int(np.sum(ours < np.asarray(w.encoding.scale) * 0.999))
    assert clipped > 0  # the default does clip somewhere: the two configs differ
