"""qnn-onnx-converter: ONNX model -> <stem>_net.json + <stem>.bin."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from openqnn.cli.common import ToolParser
from openqnn.cli.converter import add_converter_flags, run_converter


def build_parser(prog: str = "qnn-onnx-converter") -> argparse.ArgumentParser:
    p = ToolParser(prog=prog, description="Convert an ONNX model into an openqnn/QNN model "
                                "(<stem>_net.json with the graph, <stem>.bin with the weights).")
    add_converter_flags(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return run_converter("qnn-onnx-converter", build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
