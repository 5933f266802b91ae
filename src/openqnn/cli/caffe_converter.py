"""qnn-caffe-converter: a Caffe model (.prototxt + .caffemodel) -> <stem>_net.json + <stem>.bin.

```
qnn-caffe-converter -i deploy.prototxt -b bvlc_alexnet.caffemodel -o alexnet.cpp
qnn-caffe-converter -i mobilenet_ssd.prototxt --out_node mbox_loc --out_node mbox_conf_flatten \
    --out_node mbox_priorbox -o ssd.cpp     # weights: mobilenet_ssd.caffemodel beside the .prototxt
```

The converter reads both files itself, with Caffe's schema built in Python from its field numbers
(BVLC's `caffe.proto`, and SSD's `Permute`, `Normalize` and `PriorBox`); Caffe is not needed. Without
`-b/--caffe_bin` the weights are `<stem>.caffemodel` beside the `.prototxt`. In Python:
`openqnn.convert("deploy.prototxt")` or `openqnn.convert(CaffeNet.of("deploy.prototxt", "weights.caffemodel"))`
(`openqnn.frontends.caffe.CaffeNet`).

## How it converts

Each layer becomes the ONNX ops with its semantics, in memory, and the ONNX frontend builds the graph, so
the graph, passes and quantization are `qnn-onnx-converter`'s. What is Caffe's own:

- the inputs are the net's `input` + `input_shape` / `input_dim`, or its `Input` layers; `--input_dim` changes
  their shapes; layers only the TRAIN phase includes, and loss / accuracy layers, are dropped;
- a blob keeps its Caffe name on its last write: an in-place layer (`top == bottom`, Caffe's ReLU, BatchNorm,
  Scale, Dropout) writes a new tensor named after the layer, and the net's outputs (blobs no layer reads) and
  `--out_node` use the blob names;
- `Pooling` rounds up by default as Caffe does (`round_mode: CEIL`; the last window starts inside the input or
  its left pad), an average divides by the taps inside the input plus its pads;
- `BatchNorm` divides its mean and variance by its third blob (the moving-average factor); `Scale` (with
  `bias_term`) and `Bias` broadcast over the axes after `axis`;
- `Eltwise` SUM weighs its bottoms by `coeff`; PROD and MAX as Caffe;
- `LRN` across channels is `x / (k + alpha / size * sum x^2)^beta`; within a channel
  `x * (1 + alpha * mean(x^2 over size x size))^-beta`;
- `PriorBox` is constant for the input shapes: it is computed at conversion and becomes a static tensor;
- `DetectionOutput` (box decoding and NMS) is refused in one line naming the layer: cut the net before it
  with `--out_node`; with `--out_node` only the layers the named blobs need are converted.

An unsupported layer is an error naming the layer, its type, the model file and the supported layers.

## Against Caffe

Caffe is not installable here, so `tests/frontends/caffe/` re-implements Caffe's forward pass for these layers
in PyTorch (`caffe_oracle.py`) and writes small nets of the classic zoo's shapes (AlexNet with LRN and grouped
convolution, VGG, a GoogLeNet inception block, a ResNet block with BatchNorm + Scale and weighted Eltwise, a
SqueezeNet fire module, MobileNet's depthwise convolutions with PReLU and Deconvolution, an SSD head with
Normalize, Permute, Flatten, PriorBox, Reshape and Softmax) with seeded weights: float32 on the cpu backend
matches within rtol 1e-3 (in practice under 1e-5).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from openqnn.cli.common import ToolParser
from openqnn.cli.converter import add_converter_flags, run_converter


def build_parser(prog: str = "qnn-caffe-converter") -> argparse.ArgumentParser:
    p = ToolParser(prog=prog, description="Convert a Caffe model (a .prototxt net definition and its .caffemodel "
                                          "weights) into an openqnn/QNN model (<stem>_net.json with the graph, "
                                          "<stem>.bin with the weights).")
    add_converter_flags(p, source="Caffe (.prototxt)")
    p.add_argument("-b", "--caffe_bin", help="the .caffemodel with the trained weights (default: <stem>.caffemodel "
                                             "beside the .prototxt)")
    return p


def _source(args: argparse.Namespace) -> object:
    from openqnn.frontends.caffe import CaffeNet

    return CaffeNet.of(args.input_network, args.caffe_bin)


def main(argv: Sequence[str] | None = None) -> int:
    return run_converter("qnn-caffe-converter", build_parser(), argv, _source)


if __name__ == "__main__":
    sys.exit(main())
