"""Probe how QNN's HTP simulator adds a convolution's int32 bias: the accumulator offset it applies per channel.

``python -m tests.fidelity.conv_bias_probe --arch 73``

A 1x1 convolution of two input channels (codes ``x1`` 0..255 with weight 1, ``x2`` 0..31 with weight 127, zero
point 0) makes each output channel's accumulator take every integer from ``b`` to ``b + 4192`` (``b`` its bias),
so every one of its code thresholds is seen. With the spec's requantization (src/openqnn/backends/htp/spec/
qnn_requant.py) the simulator's codes are then ``spec(acc + d)`` for one integer ``d`` per channel, which the
probe reports ("." 0, "-" -1, "+" +1, "?" none in -4..4).

Findings on onnxruntime-qnn 2.7.0 (QNN 2.51), v73: ``d`` is QNN's own conversion of the bias, which the spec
models (src/openqnn/backends/htp/spec/qnn_requant.py's ``qnn_bias``, docs/htp-fidelity.md "The bias"):
per-tensor, the bias dequantized with its scale and divided by ``fl(s_x s_w)`` in float32, truncated;
per-channel, the biases re-quantized against the largest ``|bias|`` (2^28 steps) in units of the largest
``fl(s_x s_w_c)``, in float32, truncated. So ``d`` is 0 or one step toward zero while the largest ``|bias|`` is
below 2^28 and larger beyond (the ``--big`` rows). v68 takes the same float32 value but rounds it together with
the output zero point's share ``zo / M_c`` (``qnn_bias`` with the spec; ``M_c`` the largest multiplier times the
weight-scale ratio: every channel), so ``d = 0`` where the largest bias is small; ``tie_biases`` places biases
finely beside the ties that tell the share's float32 arithmetic.

The simulator's outputs are off the output grid when the image is 256 or more wide (whatever the model), so the
probe lays the 8192 accumulators out 64 x 128.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from openqnn.backends.htp.spec.qnn_requant import QnnRequantSpec
from tests.fidelity.harness import recover_codes, simulate, simulator_missing

X2, WIDTH = 32, 128
# ResNet-18's first convolution (64x64 input, W8A8 per channel): input, weight (channel 0) and output scales
SX, SW, SO = np.float32(0.03138083102656346), np.float32(0.00042531293208204854), np.float32(0.0046933319054397885)


def _model(sw: np.ndarray, bias: np.ndarray, zo: int, sb: np.ndarray | None = None,
           per_tensor: bool = False) -> tuple[bytes, np.ndarray, np.ndarray]:
    """(QDQ model, float input on the grid, exact accumulators [channels, 8192]); ``sb``: the bias scales
    (default ``s_x * s_w``); ``per_tensor``: one weight and bias scale (``sw[0]``, ``sb[0]``)."""
    from onnx import TensorProto, helper
    from onnx import numpy_helper as nh

    cout = len(sw)
    wq = np.zeros((cout, 2, 1, 1), np.int8)
    wq[:, 0], wq[:, 1] = 1, 127
    sw = sw.astype(np.float32)
    sb = (SX * sw).astype(np.float32) if sb is None else np.asarray(sb, np.float32)
    one = (lambda a: a[:1].reshape(())) if per_tensor else (lambda a: a)
    axis = {} if per_tensor else {"axis": 0}
    inits = [nh.from_array(wq, "wq"), nh.from_array(one(sw), "sw"), nh.from_array(one(np.zeros(cout, np.int8)), "zw"),
             nh.from_array(bias.astype(np.int32), "bq"), nh.from_array(one(sb), "sb"),
             nh.from_array(one(np.zeros(cout, np.int32)), "zb"), nh.from_array(np.array(SX), "sx"),
             nh.from_array(np.array(0, np.uint8), "zx"), nh.from_array(np.array(SO), "so"),
             nh.from_array(np.array(zo, np.uint8), "zo")]
    nodes = [helper.make_node("QuantizeLinear", ["xf", "sx", "zx"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["x"]),
             helper.make_node("DequantizeLinear", ["wq", "sw", "zw"], ["w"], **axis),
             helper.make_node("DequantizeLinear", ["bq", "sb", "zb"], ["b"], **axis),
             helper.make_node("Conv", ["x", "w", "b"], ["y"]),
             helper.make_node("QuantizeLinear", ["y", "so", "zo"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "so", "zo"], ["yo"])]
    shape = (1, 2, X2 * 256 // WIDTH, WIDTH)
    g = helper.make_graph(nodes, "bias_probe", [helper.make_tensor_value_info("xf", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("yo", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    x1 = np.tile(np.arange(256), X2)
    x2 = np.repeat(np.arange(X2), 256)
    xf = (SX * np.stack([x1, x2]).astype(np.float32)).reshape(shape).astype(np.float32)
    acc = (x1 + 127 * x2)[None, :].astype(np.int64) + bias.astype(np.int64)[:, None]
    return model.SerializeToString(), xf, acc


def offsets(arch: str, bias: Sequence[int], sw: Sequence[float] | None = None, zo: int = 110,
            sb: Sequence[float] | None = None, per_tensor: bool = False, reach: int = 4) -> list[list[int]]:
    """Per output channel, the offsets ``d`` in -reach..reach with which the spec reproduces every simulator code
    (``spec(acc + d)``); ``sw``: per-channel weight scales (default ResNet-18's conv1 channel 0's); ``sb``:
    the bias scales (default ``s_x * s_w``); ``per_tensor``: one weight and bias scale, the first."""
    b = np.asarray(bias, dtype=np.int64)
    w = np.full(b.size, SW, np.float32) if sw is None else np.asarray(sw, np.float32)
    model, xf, acc = _model(w, b, zo, None if sb is None else np.asarray(sb, np.float32), per_tensor)
    out = simulate(model, [{"xf": xf}], arch)
    if out.outputs is None:
        raise RuntimeError(f"the simulator refused the probe: {out.refusal}")
    codes = recover_codes(out.outputs[0]["yo"], float(SO), -zo, 8).reshape(b.size, -1)
    mults = float(SX) * w.astype(np.float64) / float(SO)
    found = []
    for c in range(b.size):
        spec = QnnRequantSpec.of(f"v{arch}", mults[c:c + 1], zo)
        found.append([d for d in range(-reach, reach + 1) if np.array_equal(spec.apply_np((acc[c] + d)[:, None])[:, 0], codes[c])])
    return found


def tie_biases(sw: float, zo: int, around: int, spread: int = 600, n: int = 63) -> np.ndarray:
    """v68's ties, seen finely: ``n`` biases in ``around +- spread`` whose float32 values (QNN's per-channel
    re-quantization, every channel of weight scale ``sw``) lie at evenly spread offsets of up to about one
    float32 step of ``zo / M`` beside the integers, after a first bias that sets those steps (its own
    channel saturates). With a share ``zo / M`` within a step of a half, where the rounding turns shows which
    float32 share QNN adds (docs/htp-fidelity.md, "The v68 bias ties (stop 25)")."""
    from openqnn.backends.htp.spec.qnn_requant import _bias_f32

    m = np.float32(np.float64(SX) * np.float64(np.float32(sw)) / np.float64(SO))
    step = float(np.spacing(np.float32(np.float32(zo) / m) + np.float32(around)))  # the float32 step of the sums
    big = int(2.0 ** 28 * step * 2) + 12345  # re-quantization steps of about two float32 steps
    cand = np.arange(around - spread, around + spread)
    b = np.r_[big, cand]
    delta = _bias_f32(b, float(SX), np.full(b.size, sw, np.float32), None)[1:].astype(np.float64) - cand
    order = np.argsort(delta)
    return np.r_[big, cand[order[np.linspace(0, len(order) - 1, n).astype(int)]]]


def pattern(found: Sequence[Sequence[int]]) -> str:
    """One character per channel: "." 0, "-" -1, "+" +1, "?" no single offset."""
    return "".join({0: ".", -1: "-", 1: "+"}.get(f[0], "?") if len(f) == 1 else "?" for f in found)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fidelity.conv_bias_probe", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="73")
    p.add_argument("--big", action="store_true", help="also biases 1000..1062 beside one of 2^30, per-channel")
    args = p.parse_args(argv)
    missing = simulator_missing()
    if missing:
        print(missing)
        return 1
    ar = np.arange(32)
    for name, bias in (("biases 0..31", ar), ("biases 0..31, then 32 zeros", np.r_[ar, np.zeros(32, np.int64)]),
                       ("biases 0..31, then 32 x 63", np.r_[ar, np.full(32, 63)]), ("biases 0..63", np.arange(64)),
                       ("biases -32..-1", ar - 32), ("biases 1..32 negated", -(ar + 1))):
        print(f"v{args.arch} {name:30s} {pattern(offsets(args.arch, bias))}", flush=True)
    print(f"v{args.arch} {'per-tensor biases 1, 3, .., 63':30s} {pattern(offsets(args.arch, ar * 2 + 1, per_tensor=True))}")
    if args.big:
        b = np.r_[np.arange(1000, 1063), 1 << 30]
        print(f"v{args.arch} biases 1000..1062 beside 2^30: offsets {[f[0] if len(f) == 1 else None for f in offsets(args.arch, b, reach=8)][:63]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
