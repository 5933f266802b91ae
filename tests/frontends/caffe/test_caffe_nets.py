"""Caffe nets of the classic zoo's shapes, written by the tests, against Caffe's semantics in PyTorch
(``caffe_oracle``): float32 on the cpu backend within rtol 1e-3."""

from __future__ import annotations

import numpy as np
import pytest
from caffe_oracle import caffe_forward, random_weights, write_net

import openqnn


def _conv(name, bottom, top, n, k, stride=1, pad=0, group=1, bias=True, kind="Convolution"):
    return (f'layer {{ name: "{name}" type: "{kind}" bottom: "{bottom}" top: "{top}" convolution_param {{ '
            f'num_output: {n} kernel_size: {k} stride: {stride} pad: {pad} group: {group} '
            f'bias_term: {str(bias).lower()} }} }}\n')


def _act(name, kind, blob, extra=""):
    return f'layer {{ name: "{name}" type: "{kind}" bottom: "{blob}" top: "{blob}" {extra}}}\n'


def _pool(name, bottom, top, k, stride, pool="MAX", pad=0, extra=""):
    return (f'layer {{ name: "{name}" type: "Pooling" bottom: "{bottom}" top: "{top}" pooling_param {{ pool: {pool} '
            f'kernel_size: {k} stride: {stride} pad: {pad} {extra}}} }}\n')


def _fc(name, bottom, top, n):
    return (f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" top: "{top}" '
            f'inner_product_param {{ num_output: {n} }} }}\n')


def _bn_scale(name, blob):
    return (f'layer {{ name: "{name}_bn" type: "BatchNorm" bottom: "{blob}" top: "{blob}" '
            f'batch_norm_param {{ use_global_stats: true eps: 0.001 }} }}\n'
            f'layer {{ name: "{name}_scale" type: "Scale" bottom: "{blob}" top: "{blob}" scale_param {{ bias_term: true }} }}\n')


def _input(shape, name="data"):
    dims = " ".join(f"dim: {d}" for d in shape)
    return f'name: "net"\ninput: "{name}"\ninput_shape {{ {dims} }}\n'


ALEXNET = (_input((1, 3, 67, 67))
           + _conv("conv1", "data", "conv1", 8, 11, stride=4) + _act("relu1", "ReLU", "conv1")
           + 'layer { name: "norm1" type: "LRN" bottom: "conv1" top: "norm1" lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 } }\n'
           + _pool("pool1", "norm1", "pool1", 3, 2)
           + _conv("conv2", "pool1", "conv2", 12, 5, pad=2, group=2) + _act("relu2", "ReLU", "conv2")
           + 'layer { name: "norm2" type: "LRN" bottom: "conv2" top: "norm2" lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 k: 2 } }\n'
           + _pool("pool2", "norm2", "pool2", 3, 2)
           + _fc("fc6", "pool2", "fc6", 32) + _act("relu6", "ReLU", "fc6")
           + _act("drop6", "Dropout", "fc6", "dropout_param { dropout_ratio: 0.5 } ")
           + _fc("fc8", "fc6", "fc8", 10)
           + 'layer { name: "prob" type: "Softmax" bottom: "fc8" top: "prob" }\n')

VGG = ('name: "vgg"\nlayer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 20 dim: 20 } } }\n'
       + _conv("conv1_1", "data", "conv1_1", 8, 3, pad=1) + _act("relu1_1", "ReLU", "conv1_1")
       + _conv("conv1_2", "conv1_1", "conv1_2", 8, 3, pad=1) + _act("relu1_2", "ReLU", "conv1_2")
       + _pool("pool1", "conv1_2", "pool1", 2, 2)
       + _conv("conv2_1", "pool1", "conv2_1", 16, 3, pad=1) + _act("relu2_1", "ReLU", "conv2_1")
       + _pool("pool2", "conv2_1", "pool2", 2, 2)
       + _fc("fc6", "pool2", "fc6", 24) + _act("relu6", "ReLU", "fc6") + _fc("fc7", "fc6", "fc7", 10))

GOOGLENET = (_input((1, 8, 15, 15))
             + _conv("i_1x1", "data", "i_1x1", 4, 1) + _act("i_relu_1x1", "ReLU", "i_1x1")
             + _conv("i_3x3_reduce", "data", "i_3x3_reduce", 4, 1) + _act("i_relu_3r", "ReLU", "i_3x3_reduce")
             + _conv("i_3x3", "i_3x3_reduce", "i_3x3", 6, 3, pad=1) + _act("i_relu_3x3", "ReLU", "i_3x3")
             + _conv("i_5x5_reduce", "data", "i_5x5_reduce", 2, 1) + _act("i_relu_5r", "ReLU", "i_5x5_reduce")
             + _conv("i_5x5", "i_5x5_reduce", "i_5x5", 3, 5, pad=2) + _act("i_relu_5x5", "ReLU", "i_5x5")
             + _pool("i_pool", "data", "i_pool", 3, 1, pad=1)
             + _conv("i_pool_proj", "i_pool", "i_pool_proj", 3, 1) + _act("i_relu_pp", "ReLU", "i_pool_proj")
             + 'layer { name: "i_output" type: "Concat" bottom: "i_1x1" bottom: "i_3x3" bottom: "i_5x5" '
               'bottom: "i_pool_proj" top: "i_output" }\n'
             + _pool("pool3", "i_output", "pool3", 3, 2)
             + _pool("pool5", "pool3", "pool5", 7, 1, pool="AVE")
             + _fc("loss3", "pool5", "loss3", 5))

RESNET = (_input((1, 8, 14, 14))
          + _conv("res2a_branch1", "data", "res2a_branch1", 16, 1, stride=2, bias=False) + _bn_scale("bn2a_branch1", "res2a_branch1")
          + _conv("res2a_branch2a", "data", "res2a_branch2a", 8, 3, stride=2, pad=1, bias=False)
          + _bn_scale("bn2a_branch2a", "res2a_branch2a") + _act("res2a_branch2a_relu", "ReLU", "res2a_branch2a")
          + _conv("res2a_branch2b", "res2a_branch2a", "res2a_branch2b", 16, 3, pad=1, bias=False)
          + _bn_scale("bn2a_branch2b", "res2a_branch2b")
          + 'layer { name: "res2a" type: "Eltwise" bottom: "res2a_branch1" bottom: "res2a_branch2b" top: "res2a" '
            'eltwise_param { operation: SUM coeff: 0.5 coeff: -1.5 } }\n'
          + _act("res2a_relu", "ReLU", "res2a")
          + _pool("pool", "res2a", "pool", 3, 2, pool="AVE", pad=1)
          + _fc("fc", "pool", "fc", 7))

SQUEEZENET = (_input((1, 3, 32, 32))
              + _conv("conv1", "data", "conv1", 16, 3, stride=2) + _act("relu_conv1", "ReLU", "conv1")
              + _pool("pool1", "conv1", "pool1", 3, 2)
              + _conv("fire2/squeeze1x1", "pool1", "fire2/squeeze1x1", 4, 1) + _act("fire2/relu_s", "ReLU", "fire2/squeeze1x1")
              + _conv("fire2/expand1x1", "fire2/squeeze1x1", "fire2/expand1x1", 8, 1) + _act("fire2/relu_e1", "ReLU", "fire2/expand1x1")
              + _conv("fire2/expand3x3", "fire2/squeeze1x1", "fire2/expand3x3", 8, 3, pad=1) + _act("fire2/relu_e3", "ReLU", "fire2/expand3x3")
              + 'layer { name: "fire2/concat" type: "Concat" bottom: "fire2/expand1x1" bottom: "fire2/expand3x3" top: "fire2/concat" }\n'
              + _pool("pool3", "fire2/concat", "pool3", 3, 2)
              + _act("drop9", "Dropout", "pool3")
              + _conv("conv10", "pool3", "conv10", 10, 1) + _act("relu_conv10", "ReLU", "conv10")
              + _pool("pool10", "conv10", "pool10", 1, 1, pool="AVE", extra="global_pooling: true ")
              + 'layer { name: "prob" type: "Softmax" bottom: "pool10" top: "prob" }\n')

MOBILENET = (_input((1, 3, 24, 24))
             + _conv("conv0", "data", "conv0", 8, 3, stride=2, pad=1, bias=False) + _bn_scale("conv0", "conv0")
             + _act("conv0/relu", "ReLU", "conv0")
             + _conv("conv1/dw", "conv0", "conv1/dw", 8, 3, pad=1, group=8, bias=False) + _bn_scale("conv1/dw", "conv1/dw")
             + _act("conv1/dw/relu", "PReLU", "conv1/dw")
             + _conv("conv1", "conv1/dw", "conv1", 16, 1, bias=False) + _bn_scale("conv1", "conv1")
             + _act("conv1/relu", "ReLU", "conv1", "relu_param { negative_slope: 0.1 } ")
             + _conv("up", "conv1", "up", 8, 4, stride=2, pad=1, group=1, kind="Deconvolution")
             + _act("up/sig", "Sigmoid", "up")
             + _pool("pool6", "up", "pool6", 1, 1, pool="AVE", extra="global_pooling: true ")
             + _fc("fc7", "pool6", "fc7", 5) + _act("fc7/tanh", "TanH", "fc7"))

MISC = (_input((1, 6, 9, 11))
        + 'layer { name: "slice" type: "Slice" bottom: "data" top: "a" top: "b" top: "c" '
          'slice_param { axis: 1 slice_point: 1 slice_point: 3 } }\n'
        + 'layer { name: "pow" type: "Power" bottom: "a" top: "pa" power_param { power: 2 scale: 0.5 shift: 1.5 } }\n'
        + 'layer { name: "prod" type: "Eltwise" bottom: "b" bottom: "b" top: "prod" eltwise_param { operation: PROD } }\n'
        + 'layer { name: "max" type: "Eltwise" bottom: "c" bottom: "c" top: "max" eltwise_param { operation: MAX } }\n'
        + 'layer { name: "cat" type: "Concat" bottom: "pa" bottom: "prod" bottom: "max" top: "cat" }\n'
        + 'layer { name: "lrn_within" type: "LRN" bottom: "cat" top: "lrn" '
          'lrn_param { local_size: 3 alpha: 0.3 beta: 0.75 norm_region: WITHIN_CHANNEL } }\n'
        + _pool("pool_floor", "lrn", "pool_floor", 2, 2, extra="round_mode: FLOOR ")
        + _pool("pool_ave", "lrn", "pool_ave", 3, 2, pool="AVE", pad=1)
        + _pool("pool_max", "lrn", "pool_max", 3, 3, pad=1)
        + 'layer { name: "flat" type: "Flatten" bottom: "pool_ave" top: "flat" flatten_param { axis: 2 } }\n'
        + 'layer { name: "reshape" type: "Reshape" bottom: "pool_max" top: "reshape" '
          'reshape_param { shape { dim: 0 dim: -1 dim: 2 } } }\n')

NETS = {"alexnet": ALEXNET, "vgg": VGG, "googlenet": GOOGLENET, "resnet": RESNET, "squeezenet": SQUEEZENET,
        "mobilenet": MOBILENET, "misc": MISC}


def _check(tmp_path, prototxt: str, shape: tuple[int, ...], name: str, **convert) -> float:
    weights = random_weights(prototxt, {"data": shape})
    path = write_net(tmp_path, prototxt, weights, name)
    x = np.random.default_rng(1).uniform(-1, 1, shape).astype(np.float32)
    want = caffe_forward(prototxt, weights, {"data": x})
    graph = openqnn.convert(path, **convert)
    got = openqnn.Session(graph, backend="cpu").run({"data": x})
    assert got, "no outputs"
    worst = 0.0
    for out, value in got.items():
        ref = want[out]
        assert value.shape == ref.shape, out
        np.testing.assert_allclose(value, ref, rtol=1e-3, atol=1e-5 * max(1.0, float(np.abs(ref).max())), err_msg=out)
        worst = max(worst, float(np.max(np.abs(value - ref) / np.maximum(np.abs(ref), 1e-3))))
    print(f"{name}: outputs {sorted(got)}, max rel error {worst:.2e}")
    return worst


_SHAPES = {"alexnet": (1, 3, 67, 67), "vgg": (1, 3, 20, 20), "googlenet": (1, 8, 15, 15), "resnet": (1, 8, 14, 14),
           "squeezenet": (1, 3, 32, 32), "mobilenet": (1, 3, 24, 24), "misc": (1, 6, 9, 11)}


@pytest.mark.parametrize("name", sorted(NETS))
def test_net_matches_caffe(tmp_path, name):
    _check(tmp_path, NETS[name], _SHAPES[name], name)
