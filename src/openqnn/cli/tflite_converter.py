"""qnn-tflite-converter: a TFLite model -> <stem>_net.json + <stem>.bin (+ <stem>_encodings.json when quantized).

Converts a `.tflite` model into openqnn's (QNN's) model files: `<stem>.cpp` (graph composition code),
`<stem>_net.json` (the graph), `<stem>.bin` (the weights) and, for a quantized model,
`<stem>_encodings.json` (AIMET 1.0.0). The same in Python: `openqnn.convert("model.tflite")`
(or `openqnn.frontends.tflite.convert_tflite(path_or_bytes, input_dims, out_nodes, name)`).

```
qnn-tflite-converter -i mobilenet_int8.tflite -o mobilenet.cpp
qnn-net-run --model mobilenet_net.json --backend libQnnHtp.so --input_list inputs.txt
```

The converter reads the flatbuffer itself, with the `tflite` package's generated schema code (a small,
pure-Python dependency of openqnn, with `flatbuffers`); TensorFlow and LiteRT are not needed.

## Models

- **float32** and **float16-weight** models: float graphs (float16 weights and their `DEQUANTIZE` ops fold
  into float32 constants). `--input_list` / `--quantization_overrides` quantize them as for ONNX.
- **quantized** models (full integer int8, the 16x8 mode with int16 activations, uint8): TFLite's own
  encodings become openqnn's, so the htp backend runs the model as it is, without calibration:
  - int8 asymmetric is QNN's uint8 with the offset moved by 128: `offset = -(zero_point + 128)`;
  - int16 (16x8 mode) is uint16 moved by 32768: `offset = -32768` (symmetric);
  - per-channel int8 weights are symmetric uint8 with offset -128, their axis following the weight into
    openqnn's layout (`CONV_2D`'s `[cout, kh, kw, cin]` becomes `[kh, kw, cin, cout]`, axis 0 -> 3);
  - int32 biases (and the 16x8 mode's int64 ones, which fit in int32) are signed 32-bit, offset 0,
    scale `s_in * s_w` per channel: htp adds them to the accumulator as they are.
  Constants hold their dequantized values, which quantize back to TFLite's integers exactly. The graph
  keeps TFLite's ops one for one (no float passes run on a quantized model). `QUANTIZE` at a graph input
  is the input's encoding (htp quantizes the float input; feed integers with `--use_native_input_files`
  or `Session.run(..., native_inputs=True)`: TFLite's int8 + 128), inside the graph it is a requantizing
  `Reshape`; `DEQUANTIZE` of an activation is the tensor itself.
- A fused activation (`fused_activation_function`) becomes its own `Relu` / `ReluMinMax` node after the
  op, with the op's output encoding.
- Layout: TFLite is channel-last, as openqnn's IR is; inputs and outputs keep TFLite's shapes.


Custom ops: MediaPipe's `Convolution2DTransposeBias` converts (to `TransposeConv2d` with its bias);
`MaxPoolingWithArgmax2D`, `MaxUnpooling2D` and `TFLite_Detection_PostProcess` are refused in one line
that says what to do (re-export without them, or cut the model with `--out_node`). Any unsupported op
is an error naming the op, its output tensor, its type, the model file and the supported list.

## Against LiteRT (the TFLite oracle)

`tests/frontends/tflite/` holds small Keras models (conv, depthwise, dense + softmax, add/mul/sub,
max/avg pooling, mean, concat + reshape + transpose, resize nearest and bilinear, Keras' nearest
upsampling (tile), crop (strided slice) + maximum/minimum, pad, logistic, tanh, hard-swish, leaky relu,
transpose conv), each written as float32, float16-weight, int8 and 16x8 `.tflite` by
`tests/frontends/tflite/make_fixtures.py` (run once in a separate venv with TensorFlow; the files are
committed). The tests run each in LiteRT's interpreter (`ai-edge-litert`, a dev dependency) and in openqnn:

- float32 and float16-weight models on the cpu backend: within rtol 1e-3 of LiteRT (in practice 1e-7);
- int8 and 16x8 models on htp with `htp_config.arithmetic: "tflite"`, integer in, integer out, against
  LiteRT's reference kernels (`OpResolverType.BUILTIN_REF`): byte-identical for every op above, except:

| op | mode | difference | why |
| --- | --- | --- | --- |
| `SOFTMAX` | 16x8 | 1 code | TFLite's `SoftmaxInt16` interpolates 513-entry exp and 1/(1+x) tables in fixed point; htp's 16-bit softmax computes otherwise |
| `LOGISTIC` | 16x8 | 1 code | TFLite interpolates a 513-entry sigmoid table; htp looks up a 65536-entry table built in float |
| `TANH` | 16x8 | 2 codes | as `LOGISTIC` |
| `RESIZE_BILINEAR` (half-pixel) | int8 | 1 code | TFLite's `ResizeBilinearInteger` computes source coordinates and weights in 10-bit fixed point; htp rounds them otherwise |
| `HARD_SWISH` | 16x8 | (no model) | TFLite's converter has no 16x8 `HARD_SWISH` |

LiteRT's default (optimized) kernels differ from its own reference kernels by a code here and there
(int8 `ADD`/`MUL`, `CONCATENATION`/`MAXIMUM` with requantized inputs, the int8 `LOGISTIC` table);
htp follows the reference kernels. Keras 3's nearest `UpSampling2D` emits `TILE` version 3, which the
reference resolver lacks: that model is compared with LiteRT's default kernels (byte-identical).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from openqnn.cli.common import ToolParser
from openqnn.cli.converter import add_converter_flags, run_converter


def build_parser(prog: str = "qnn-tflite-converter") -> argparse.ArgumentParser:
    p = ToolParser(prog=prog, description="Convert a TFLite model (float, float16-weight or quantized int8 / 16x8) "
                                          "into an openqnn/QNN model (<stem>_net.json with the graph, <stem>.bin "
                                          "with the weights, <stem>_encodings.json with a quantized model's "
                                          "encodings).")
    add_converter_flags(p, source="TFLite (.tflite)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return run_converter("qnn-tflite-converter", build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
