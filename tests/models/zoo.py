"""Models for the end-to-end tests.

The PyTorch definitions (MobileNetV2, ResNet-18/50, the BERT-style encoder, SimpleModel) and their
ONNX export live in ``benchmarks/zoo.py`` so ``python -m benchmarks`` times the very same networks;
this module adds :func:`caffe2_style_model`, an old-opset model built by hand.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["caffe2_style_model"]


def caffe2_style_model(size: int = 16, seed: int = 0) -> onnx.ModelProto:
    """An opset-9 model in the style of the old Caffe2 exports (e.g. the ONNX model zoo's GoogLeNet).

    Initializers are also listed in ``graph.input``; tensor names contain '/'.

        data -> conv1/7x7_s2 (stride 2) -> conv1/bn -> conv1/relu_7x7 -> pool1/norm1 (LRN)
             -> up/2x (Upsample, scales input, nearest)                         \\
        data -> branch/1x1 (Conv 1x1) -----------------------------------------> sum/3 (Sum)
        data -> branch/3x3 (Conv 3x3, pad 1) -> branch/relu_3x3 ---------------/
             -> pool5/7x7_s1 (GlobalAveragePool) -> pool5/flatten -> loss3/classifier (Gemm, transB)
    """
    rng = np.random.default_rng(seed)
    c = 8

    def init(name: str, shape: tuple[int, ...], scale: float = 0.3, positive: bool = False) -> onnx.TensorProto:
        a = rng.uniform(0.5, 1.5, shape) if positive else rng.standard_normal(shape) * scale
        return numpy_helper.from_array(a.astype(np.float32), name)

    inits = [
        init("conv1/7x7_s2_w", (c, 3, 7, 7), 0.1),
        init("conv1/7x7_s2_b", (c,), 0.1),
        init("conv1/bn_s", (c,), positive=True),
        init("conv1/bn_b", (c,), 0.1),
        init("conv1/bn_rm", (c,), 0.1),
        init("conv1/bn_riv", (c,), positive=True),
        numpy_helper.from_array(np.array([1.0, 1.0, 2.0, 2.0], np.float32), "up/2x_scales"),
        init("branch/1x1_w", (c, 3, 1, 1)),
        init("branch/1x1_b", (c,), 0.1),
        init("branch/3x3_w", (c, 3, 3, 3), 0.2),
        init("branch/3x3_b", (c,), 0.1),
        init("loss3/classifier_w", (10, c), 0.5),
        init("loss3/classifier_b", (10,), 0.1),
    ]
    nodes = [
        helper.make_node("Conv", ["data_0", "conv1/7x7_s2_w", "conv1/7x7_s2_b"], ["conv1/7x7_s2_1"],
                         name="conv1/7x7_s2", kernel_shape=[7, 7], strides=[2, 2], pads=[3, 3, 3, 3]),
        helper.make_node("BatchNormalization",
                         ["conv1/7x7_s2_1", "conv1/bn_s", "conv1/bn_b", "conv1/bn_rm", "conv1/bn_riv"],
                         ["conv1/bn_1"], name="conv1/bn", epsilon=1e-5),
        helper.make_node("Relu", ["conv1/bn_1"], ["conv1/relu_7x7_1"], name="conv1/relu_7x7"),
        helper.make_node("LRN", ["conv1/relu_7x7_1"], ["pool1/norm1_1"], name="pool1/norm1",
                         size=5, alpha=1e-4, beta=0.75, bias=1.0),
        helper.make_node("Upsample", ["pool1/norm1_1", "up/2x_scales"], ["up/2x_1"], name="up/2x", mode="nearest"),
        helper.make_node("Conv", ["data_0", "branch/1x1_w", "branch/1x1_b"], ["branch/1x1_1"], name="branch/1x1",
                         kernel_shape=[1, 1]),
        helper.make_node("Conv", ["data_0", "branch/3x3_w", "branch/3x3_b"], ["branch/3x3_1"], name="branch/3x3",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["branch/3x3_1"], ["branch/relu_3x3_1"], name="branch/relu_3x3"),
        helper.make_node("Sum", ["up/2x_1", "branch/1x1_1", "branch/relu_3x3_1"], ["sum/3_1"], name="sum/3"),
        helper.make_node("GlobalAveragePool", ["sum/3_1"], ["pool5/7x7_s1_1"], name="pool5/7x7_s1"),
        helper.make_node("Flatten", ["pool5/7x7_s1_1"], ["pool5/flatten_1"], name="pool5/flatten", axis=1),
        helper.make_node("Gemm", ["pool5/flatten_1", "loss3/classifier_w", "loss3/classifier_b"], ["prob_1"],
                         name="loss3/classifier", transB=1),
    ]
    inputs = [helper.make_tensor_value_info("data_0", TensorProto.FLOAT, [1, 3, size, size])]
    inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in inits]  # old style
    graph = helper.make_graph(nodes, "caffe2_style", inputs,
                              [helper.make_tensor_value_info("prob_1", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])
    model.ir_version = 3  # what opset-9 era exporters wrote
    onnx.checker.check_model(model)
    return model
