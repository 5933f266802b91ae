"""qnn-tflite-converter: TFLite model -> <stem>_net.json + <stem>.bin (+ <stem>_encodings.json when quantized).

The flags and the pipeline are qnn-onnx-converter's (``openqnn.convert`` picks the TFLite frontend by the
``.tflite`` suffix). A quantized TFLite model keeps TFLite's encodings; ``--input_list`` /
``--quantization_overrides`` quantize a float one as for ONNX.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

from openqnn.cli.common import ToolParser, run_tool
from openqnn.cli.onnx_converter import add_converter_flags, convert_main


def build_parser(prog: str = "qnn-tflite-converter") -> argparse.ArgumentParser:
    p = ToolParser(prog=prog, description="Convert a TFLite model (float, float16-weight or quantized int8 / 16x8) "
                                          "into an openqnn/QNN model (<stem>_net.json with the graph, <stem>.bin "
                                          "with the weights, <stem>_encodings.json with a quantized model's "
                                          "encodings).")
    add_converter_flags(p, "TFLite (.tflite)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = " ".join(["qnn-tflite-converter", *map(shlex.quote, argv)])
    return run_tool(lambda a: convert_main(a, command), build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
