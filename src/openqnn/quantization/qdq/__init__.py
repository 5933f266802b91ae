"""Export an IR graph (quantized or float) as a standard ONNX model that ONNX Runtime runs.

    openqnn.quantization.qdq.export_qdq(openqnn.load("model_net.json"), "model_qdq.onnx")

Every encoding becomes QuantizeLinear / DequantizeLinear, so the exported model computes what the
cpu backend's quantization simulation computes (float ops between quantize-dequantize pairs):

* an encoded activation: ``Q -> DQ`` right after the op producing it (graph inputs: right after the
  input); 8-bit as uint8, 16-bit as uint16 (opset 21), zero_point = -offset. Signed encodings use
  int8 / int16. Other bitwidths use the next wider type and clamp after the DequantizeLinear.
  Per-axis activation encodings (only from overrides) are written as the equivalent arithmetic
  (Div, Round, Clip, Mul): ONNX Runtime folds an output QuantizeLinear into integer kernels that take
  one zero point only.
* an encoded static tensor (weights, biases, constants): integer initializer -> ``DQ``, per-axis
  with ``axis`` when the encoding has one. Symmetric encodings (offset -2^(bw-1)) are stored signed
  with zero_point 0 (int8, int4, int16), 32-bit biases as int32, others unsigned with
  zero_point = -offset. The integers are the ones the simulation rounds to (restricted encodings:
  within their restricted range). Per-block weight encodings use opset 21's blocked
  DequantizeLinear (``axis`` = the block axis, ``block_size``; the scale is shaped like the weight
  with that axis divided by the block size), which ONNX Runtime runs.

The IR is channel-last inside; the exported model runs convolutions, pools and other
channel-first ONNX ops between ``Transpose`` nodes (NHWC -> NCHW -> op -> NHWC), which ONNX Runtime's
optimizer cancels where they meet. Graph inputs and outputs keep the IR graph's (= the source
model's) names, shapes and layout. Ops without an ONNX mapping raise :class:`UnsupportedOpError`.

The package: :mod:`.builder` (the ONNX graph builder: names, initializers, Q/DQ of activations and
static tensors, and the registry of op translations), :mod:`.ops_compute` and :mod:`.ops_shape` (the
IR-op -> ONNX translations of the compute and the data-movement ops), :mod:`.export` (the graph walk
and the writing).
"""

from openqnn.quantization.qdq.builder import HANDLERS
from openqnn.quantization.qdq.export import OPSET, export_qdq, graph_to_onnx

__all__ = ["HANDLERS", "OPSET", "export_qdq", "graph_to_onnx"]
