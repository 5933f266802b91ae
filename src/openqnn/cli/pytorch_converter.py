"""qnn-pytorch-converter: PyTorch model (TorchScript .pt, ExportedProgram .pt2) -> <stem>_net.json + <stem>.bin."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from openqnn.cli.common import ToolParser
from openqnn.cli.converter import add_converter_flags, run_converter


def build_parser(prog: str = "qnn-pytorch-converter") -> argparse.ArgumentParser:
    p = ToolParser(prog=prog, description="Convert a PyTorch model (a TorchScript file from torch.jit.save, or an "
                                          "ExportedProgram .pt2 from torch.export.save) into an openqnn/QNN model "
                                          "(<stem>_net.json with the graph, <stem>.bin with the weights); parameters "
                                          "keep their state_dict names.")
    add_converter_flags(p, source="PyTorch (.pt/.pth TorchScript, .pt2 ExportedProgram)", input_dim_required=True,
                        input_dtype=True)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return run_converter("qnn-pytorch-converter", build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
