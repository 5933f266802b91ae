"""Caffe nets written by the tests, and Caffe's forward pass re-implemented in PyTorch as their oracle.

``write_net`` writes a ``.prototxt`` and its ``.caffemodel`` (a ``NetParameter`` holding each layer's blobs,
as Caffe saves them); ``caffe_forward`` runs the net layer by layer with torch ops that reproduce Caffe's
semantics (ceil-mode pooling, LRN's alpha / size, BatchNorm's scale factor, Eltwise coefficients, in-place
layers), independently of the converter's ONNX route.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from google.protobuf import text_format

from openqnn.frontends.caffe.schema import message_class


def parse(prototxt: str):
    net = message_class("NetParameter")()
    text_format.Parse(prototxt, net)
    return net


def write_net(tmp_path: Path, prototxt: str, weights: dict[str, list[np.ndarray]], stem: str = "net") -> Path:
    """``<stem>.prototxt`` and ``<stem>.caffemodel`` under ``tmp_path``; returns the ``.prototxt``."""
    path = tmp_path / f"{stem}.prototxt"
    path.write_text(prototxt)
    model = message_class("NetParameter")()
    for name, blobs in weights.items():
        lay = model.layer.add(name=name)
        for arr in blobs:
            b = lay.blobs.add()
            b.shape.dim.extend(arr.shape)
            b.data.extend(np.asarray(arr, np.float32).reshape(-1).tolist())
    path.with_suffix(".caffemodel").write_bytes(model.SerializeToString())
    return path


def random_weights(prototxt: str, inputs: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Seeded blobs for every layer that has weights, shaped by running the net's shapes forward."""
    rng = np.random.default_rng(seed)
    net = parse(prototxt)
    weights: dict[str, list[np.ndarray]] = {}
    shapes = dict(inputs)

    def blob(*shape: int, lo: float = -0.5, hi: float = 0.5) -> np.ndarray:
        return rng.uniform(lo, hi, shape).astype(np.float32)

    feeds = {k: torch.zeros(v) for k, v in inputs.items()}
    for lay in net.layer:
        x = shapes.get(lay.bottom[0]) if lay.bottom else None
        if lay.type in ("Convolution", "Deconvolution"):
            p = lay.convolution_param
            k = list(p.kernel_size) or [p.kernel_h, p.kernel_w]
            kh, kw = (k[0], k[0]) if len(k) == 1 else k
            cin = x[1]
            fan = cin // p.group * kh * kw
            w = (blob(p.num_output, cin // p.group, kh, kw) if lay.type == "Convolution"
                 else blob(cin, p.num_output // p.group, kh, kw)) * (3.0 / np.sqrt(fan))
            weights[lay.name] = [w] + ([blob(p.num_output)] if p.bias_term else [])
        elif lay.type == "InnerProduct":
            p = lay.inner_product_param
            k = int(np.prod(x[1:]))
            weights[lay.name] = [blob(p.num_output, k) * (3.0 / np.sqrt(k))] + ([blob(p.num_output)] if p.bias_term else [])
        elif lay.type == "BatchNorm":
            c = x[1]
            factor = np.float32(rng.uniform(0.5, 2.0))
            weights[lay.name] = [blob(c) * factor, blob(c, lo=0.5, hi=1.5) * factor, np.array([factor], np.float32)]
        elif lay.type == "Scale" and len(lay.bottom) == 1:
            c = x[1]
            weights[lay.name] = [blob(c, lo=0.5, hi=1.5)] + ([blob(c)] if lay.scale_param.bias_term else [])
        elif lay.type == "Bias" and len(lay.bottom) == 1:
            weights[lay.name] = [blob(x[1])]
        elif lay.type == "PReLU":
            weights[lay.name] = [blob(1 if lay.prelu_param.channel_shared else x[1], lo=0.0, hi=0.5)]
        elif lay.type == "Normalize":
            weights[lay.name] = [blob(1 if lay.norm_param.channel_shared else x[1], lo=5.0, hi=20.0)]
        if lay.name in weights:
            weights[lay.name] = [np.asarray(a, np.float32) for a in weights[lay.name]]
        if lay.type in ("Input", "PriorBox", "DetectionOutput"):
            continue
        outs = _layer(lay, [feeds[b] for b in lay.bottom], [torch.from_numpy(w) for w in weights.get(lay.name, [])])
        for top, y in zip(lay.top, outs):
            feeds[top] = y
            shapes[top] = tuple(y.shape)
    return weights


def caffe_forward(prototxt: str, weights: dict[str, list[np.ndarray]],
                  inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every blob after Caffe's forward pass (in-place layers overwrite their blob)."""
    net = parse(prototxt)
    blobs = {k: torch.from_numpy(v).double() for k, v in inputs.items()}
    with torch.no_grad():
        for lay in net.layer:
            if lay.type in ("Input", "PriorBox", "DetectionOutput"):
                continue
            ws = [torch.from_numpy(w).double() for w in weights.get(lay.name, [])]
            for top, y in zip(lay.top, _layer(lay, [blobs[b] for b in lay.bottom], ws)):
                blobs[top] = y
    return {k: v.float().numpy() for k, v in blobs.items()}


def _pair(values, single, h, w, default):
    if h or w:
        return [h, w]
    vals = list(values) if not isinstance(values, int) else ([values] if single else [])
    if not vals:
        return [default, default]
    return vals * 2 if len(vals) == 1 else vals


def _layer(lay, xs: list[torch.Tensor], ws: list[torch.Tensor]) -> list[torch.Tensor]:
    t = lay.type
    x = xs[0]
    if t in ("Convolution", "Deconvolution"):
        p = lay.convolution_param
        stride = _pair(p.stride, False, p.stride_h, p.stride_w, 1)
        pad = _pair(p.pad, False, p.pad_h, p.pad_w, 0)
        dil = _pair(p.dilation, False, 0, 0, 1)
        bias = ws[1] if p.bias_term else None
        if t == "Convolution":
            return [F.conv2d(x, ws[0], bias, stride, pad, dil, p.group)]
        return [F.conv_transpose2d(x, ws[0], bias, stride, pad, 0, p.group, dil)]
    if t == "InnerProduct":
        y = x.flatten(1) @ ws[0].T
        return [y + ws[1] if lay.inner_product_param.bias_term else y]
    if t == "Pooling":
        p = lay.pooling_param
        if p.global_pooling:
            return [x.mean((2, 3), keepdim=True) if p.pool == 1 else x.amax((2, 3), keepdim=True)]
        k = _pair(p.kernel_size, True, p.kernel_h, p.kernel_w, 0)
        s = _pair(p.stride, True, p.stride_h, p.stride_w, 1)
        pad = _pair(p.pad, True, p.pad_h, p.pad_w, 0)
        ceil = p.round_mode == 0
        if p.pool == 0:
            return [F.max_pool2d(x, k, s, pad, ceil_mode=ceil)]
        return [F.avg_pool2d(x, k, s, pad, ceil_mode=ceil, count_include_pad=True)]
    if t == "ReLU":
        return [F.leaky_relu(x, lay.relu_param.negative_slope)]
    if t == "PReLU":
        return [F.prelu(x, ws[0])]
    if t == "Sigmoid":
        return [torch.sigmoid(x)]
    if t == "TanH":
        return [torch.tanh(x)]
    if t in ("Dropout", "Split"):
        return [x] * len(lay.top)
    if t == "BatchNorm":
        f = ws[2].reshape(-1)[0]
        f = 0 if f == 0 else 1 / f
        mean, var = (ws[0] * f).view(1, -1, 1, 1), (ws[1] * f).view(1, -1, 1, 1)
        return [(x - mean) / torch.sqrt(var + lay.batch_norm_param.eps)]
    if t == "Scale":
        scale = (xs[1] if len(xs) == 2 else ws[0])
        view = (1, -1) + (1,) * (x.dim() - 2)
        y = x * scale.reshape(view)
        if lay.scale_param.bias_term:
            y = y + ws[-1].reshape(view)
        return [y]
    if t == "Eltwise":
        p = lay.eltwise_param
        if p.operation == 0:
            y = xs[0]
            for other in xs[1:]:
                y = y * other
            return [y]
        if p.operation == 2:
            y = xs[0]
            for other in xs[1:]:
                y = torch.maximum(y, other)
            return [y]
        coeff = list(p.coeff) or [1.0] * len(xs)
        return [sum(c * v for c, v in zip(coeff, xs))]
    if t == "Concat":
        return [torch.cat(xs, lay.concat_param.axis)]
    if t == "Softmax":
        return [torch.softmax(x, lay.softmax_param.axis)]
    if t == "LRN":
        p = lay.lrn_param
        if p.norm_region == 0:
            return [F.local_response_norm(x, p.local_size, p.alpha, p.beta, p.k)]
        pad = (p.local_size - 1) // 2
        avg = F.avg_pool2d(x * x, p.local_size, 1, pad, count_include_pad=True)
        return [x * (1 + p.alpha * avg) ** -p.beta]
    if t == "Flatten":
        return [x.flatten(lay.flatten_param.axis, lay.flatten_param.end_axis)]
    if t == "Reshape":
        dims = [x.shape[i] if d == 0 else d for i, d in enumerate(lay.reshape_param.shape.dim)]
        return [x.reshape(dims)]
    if t == "Slice":
        p = lay.slice_param
        points = [0, *p.slice_point, x.shape[p.axis]]
        return [x.narrow(p.axis, a, b - a) for a, b in pairwise(points)]
    if t == "Power":
        p = lay.power_param
        return [(p.shift + p.scale * x) ** p.power]
    if t == "Permute":
        return [x.permute(*lay.permute_param.order)]
    if t == "Normalize":
        p = lay.norm_param
        dims = tuple(range(1, x.dim())) if p.across_spatial else (1,)
        norm = torch.sqrt((x * x).sum(dims, keepdim=True) + p.eps)
        scale = ws[0].reshape(-1)
        return [x / norm * (scale.view(1, -1, 1, 1) if scale.numel() > 1 else scale)]
    raise NotImplementedError(t)
