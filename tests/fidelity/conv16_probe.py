"""Probe how QNN's HTP simulator requantizes a convolution with 16-bit activations and int8 weights (W8A16).

``python -m tests.fidelity.conv16_probe --arch 73``

A 1x1 convolution of one input channel (uint16 codes ``x``, zero point ``zx``) to ``C`` output channels of
weight ``w_c`` (int8) and bias ``b_c`` (int32, on the accumulators' scale) gives each channel the accumulators
``w_c * (x - zx) + b_c``; with the input codes chosen so that they take every integer of a range, every output
code threshold shows. The output is uint16 (scale ``so``, zero point ``zo``). The image is 64 x 128 (the
simulator's outputs leave the float grid when an image is 256 or more wide).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tests.fidelity.harness import recover_codes, simulate

H, W = 64, 128
N = H * W


@dataclass
class Probe:
    acc: np.ndarray  # exact accumulators [C, N], int64
    codes: np.ndarray  # simulator's output codes [C, N]
    real: np.ndarray  # M per channel, float64 from the float32 scales
    zo: int
    x: np.ndarray
    zx: int


def run(arch: str, x: np.ndarray, zx: int, w: Sequence[int], bias: Sequence[int], sx: float, sw: Sequence[float],
        so: float, zo: int, per_tensor: bool = False, sb: float | None = None) -> Probe:
    from onnx import TensorProto, helper
    from onnx import numpy_helper as nh

    w_ = np.asarray(w, np.int64)
    if w_.ndim == 1:
        w_ = w_[:, None]
    cout, cin = w_.shape
    sw_ = np.broadcast_to(np.asarray(sw, np.float32), (cout,)).astype(np.float32)
    sx_, so_ = np.float32(sx), np.float32(so)
    b_ = np.asarray(bias, np.int64)
    sb_ = (sx_ * sw_).astype(np.float32) if sb is None else np.full(cout, sb, np.float32)  # the bias scale
    one = (lambda a: a[:1].reshape(())) if per_tensor else (lambda a: a)
    axis = {} if per_tensor else {"axis": 0}
    inits = [nh.from_array(w_.astype(np.int8).reshape(cout, cin, 1, 1), "wq"), nh.from_array(one(sw_), "sw"),
             nh.from_array(one(np.zeros(cout, np.int8)), "zw"),
             nh.from_array(b_.astype(np.int32), "bq"), nh.from_array(one(sb_), "sb"),
             nh.from_array(one(np.zeros(cout, np.int32)), "zb"), nh.from_array(np.array(sx_), "sx"),
             nh.from_array(np.array(zx, np.uint16), "zx"), nh.from_array(np.array(so_), "so"),
             nh.from_array(np.array(zo, np.uint16), "zo")]
    nodes = [helper.make_node("QuantizeLinear", ["xf", "sx", "zx"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"]),
             helper.make_node("DequantizeLinear", ["wq", "sw", "zw"], ["w"], **axis),
             helper.make_node("DequantizeLinear", ["bq", "sb", "zb"], ["b"], **axis),
             helper.make_node("Conv", ["xd", "w", "b"], ["y"]),
             helper.make_node("QuantizeLinear", ["y", "so", "zo"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "so", "zo"], ["yo"])]
    shape = (1, cin, H, W)
    g = helper.make_graph(nodes, "conv16_probe", [helper.make_tensor_value_info("xf", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("yo", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    xs = np.asarray(x, np.int64).reshape(cin, N)
    xf = (sx_ * (xs - zx).astype(np.float32)).astype(np.float32).reshape(shape)
    out = simulate(model.SerializeToString(), [{"xf": xf}], arch)
    if out.outputs is None:
        raise RuntimeError(f"the simulator refused the probe: {out.refusal}")
    codes = recover_codes(out.outputs[0]["yo"], float(so_), -zo, 16).reshape(cout, N)
    acc = w_ @ (xs - zx) + b_[:, None]
    real = float(sx_) * sw_.astype(np.float64) / float(so_)
    return Probe(acc, codes.astype(np.int64), real, zo, xs, zx)


def bias_ties(sx: float, sw: Sequence[float] | float, so: float, zo: int, around: float,
              residues: Sequence[int] = tuple(range(-6, 6)), reps: int = 5) -> np.ndarray:
    """v68's W8A16 bias seen at the ties of its units of 256: biases (one per output channel, at most 64) whose
    float32 sum with the output zero point's share, ``fl(value + fl(zo / M_c))`` (spec/qnn_requant.py's
    ``_v68_bias``), lands on ``256 j + r`` for ``r`` in ``residues`` (``reps`` multiples ``j`` each, from about
    ``around``); ``sw`` one weight scale (per-tensor) or one per channel (docs/htp-fidelity.md, "The W8A16 bias
    in float32 (stop 27)")."""
    targets = [(int(around) // 256 + 2) * 256 + 768 * j + r for r in residues for j in range(reps)][:64]
    n = len(targets)
    f32 = np.float32
    w = np.broadcast_to(np.asarray(sw, f32), (n,)) if np.ndim(sw) == 0 else np.asarray(sw, f32)[:n]
    w_max = w.max()
    big_m = f32(f32(f32(sx) * w_max) / f32(so))
    share = (f32(zo) / (big_m * (w / w_max).astype(f32)).astype(f32)).astype(f32).astype(np.float64)
    return np.array([round(t - s) for t, s in zip(targets, share)], np.int64)


def bias_offsets(sx: float, sw: Sequence[float] | float, so: float, zo: int, zx: int, bias: Sequence[int],
                 per_tensor: bool = True, sb: float | None = None) -> tuple[list[list[int]], np.ndarray]:
    """Run a v68 probe of one input channel (codes ``0, 8, .., 65528``) to one output channel per bias, weights 1,
    so each output steps every 256 input codes and shows its bias's units of 256 exactly; per channel, the
    offsets ``d`` (units of 256, -3..3) with which ``conv16_v68`` (``qbz`` ``Conv16Spec.bias``'s plus ``256 d``)
    gives every simulator code, and that ``qbz``; ``sb``: the bias scale (per-tensor; default ``fl(s_x s_w)``)."""
    from openqnn.backends.htp.spec.qnn_conv16 import Conv16Spec, conv16_v68

    b = np.asarray(bias, np.int64)
    c = b.size
    w = np.full(c, np.float32(sw), np.float32) if np.ndim(sw) == 0 else np.asarray(sw, np.float32)[:c]
    x = np.arange(N, dtype=np.int64) * 8 % 65536
    p = run("68", x[None, :], zx, np.ones(c, np.int64), b, sx, w, so, zo, per_tensor=per_tensor, sb=sb)
    real = p.real[:1] if per_tensor else p.real
    ws = w[:1] if per_tensor else w
    if per_tensor and sb is None:
        sb = float(np.float32(np.float32(sx) * w[0]))
    qbz = np.broadcast_to(Conv16Spec.of(real, zo, "v68").bias(b, float(np.float32(sx)), ws, sb, real), (c,))
    found = []
    for ch in range(c):
        r = p.real[ch:ch + 1]
        found.append([d for d in range(-3, 4) if np.array_equal(
            conv16_v68((x >> 8)[:, None], (x & 255)[:, None], np.ones(1, np.int64), qbz[ch:ch + 1] + 256 * d, zx,
                       r)[:, 0], p.codes[ch])])
    return found, np.asarray(qbz)


def strided_dw_offsets(arch: str, seed: int, zo: int, channels: int = 64) -> tuple[list[list[int]], dict[str, Any]]:
    """A strided depthwise W8A16 probe (3x3, stride 2, pad 1, per-channel weight scales over a factor 6, random
    biases to 6e5 of both signs, input zero point 33956; the output and input scales of the fidelity case
    ``conv_depthwise/64_k3_s2_p1/a16_pc``): each channel's one centre tap has weight 1 and the sampled input codes
    are consecutive, so every code threshold of ``acc + pre`` shows; per channel, the offsets ``d`` (-6..6) with
    which spec/qnn_requant.py's "dw_strided" form with ``pre = round(zo / M) + d`` gives every simulator code, and
    the probe's parameters (``sx``, ``sw``, ``so``, ``bias``, ``real``, ``pre64``: ``round(zo / M)``)."""
    from onnx import TensorProto, helper
    from onnx import numpy_helper as nh

    from openqnn.backends.htp.spec.qnn_requant import QnnRequantSpec

    f32 = np.float32
    rng = np.random.default_rng(seed)
    c, zx = channels, 33956
    sx, so = f32(0.0001157692), f32(0.00022184837)
    sw = (0.01 * rng.uniform(0.15, 1.0, c)).astype(f32)
    bias = rng.integers(-600000, 600000, c)
    real = float(sx) * sw.astype(np.float64) / float(so)
    wq = np.zeros((c, 1, 3, 3), np.int8)
    wq[:, 0, 1, 1] = 1
    inits = [nh.from_array(wq, "wq"), nh.from_array(sw, "sw"), nh.from_array(np.zeros(c, np.int8), "zw"),
             nh.from_array(bias.astype(np.int32), "bq"), nh.from_array((sx * sw).astype(f32), "sb"),
             nh.from_array(np.zeros(c, np.int32), "zb"), nh.from_array(np.array(sx), "sx"),
             nh.from_array(np.array(zx, np.uint16), "zx"), nh.from_array(np.array(so), "so"),
             nh.from_array(np.array(zo, np.uint16), "zo")]
    nodes = [helper.make_node("QuantizeLinear", ["xf", "sx", "zx"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"]),
             helper.make_node("DequantizeLinear", ["wq", "sw", "zw"], ["w"], axis=0),
             helper.make_node("DequantizeLinear", ["bq", "sb", "zb"], ["b"], axis=0),
             helper.make_node("Conv", ["xd", "w", "b"], ["y"], group=c, kernel_shape=[3, 3], strides=[2, 2],
                              pads=[1, 1, 1, 1]),
             helper.make_node("QuantizeLinear", ["y", "so", "zo"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "so", "zo"], ["yo"])]
    shape = (1, c, H, W)
    g = helper.make_graph(nodes, "dw16_probe", [helper.make_tensor_value_info("xf", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("yo", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    n = (H // 2) * (W // 2)
    # consecutive input codes at the sampled positions, centred where the channel's output is mid-range
    centre = np.clip(zx + np.round((32768 - zo) / real - bias).astype(np.int64), 2048, 63000)
    x = np.full((c, H, W), zx, np.int64)
    for ch in range(c):
        x[ch, ::2, ::2] = (np.clip(int(centre[ch]) - n // 2, 0, 65535 - n) + np.arange(n)).reshape(H // 2, W // 2)
    xf = (sx * (x - zx).astype(f32)).astype(f32).reshape(shape)
    out = simulate(model.SerializeToString(), [{"xf": xf}], arch)
    if out.outputs is None:
        raise RuntimeError(f"the simulator refused the probe: {out.refusal}")
    codes = recover_codes(out.outputs[0]["yo"], float(so), -zo, 16).reshape(c, -1)
    acc = (x[:, ::2, ::2].reshape(c, -1) - zx) + bias[:, None]
    spec = QnnRequantSpec.of(f"v{arch}", real, zo, 16, "dw_strided")
    found = []
    for ch in range(c):
        k = int(spec.k[ch])
        found.append([d for d in range(-6, 7) if np.array_equal(
            np.clip(((acc[ch] + spec.pre[ch] + d) * spec.mult[ch] + (1 << (k - 1))) >> k, 0, 65535), codes[ch])])
    return found, {"sx": sx, "sw": sw, "so": so, "bias": bias, "real": real, "pre64": spec.pre}
