r"""qnn-pytorch-converter: PyTorch model (TorchScript .pt, ExportedProgram .pt2) -> <stem>_net.json + <stem>.bin.

## Usage

```bash
# a TorchScript file (torch.jit.save(torch.jit.trace(model, x), "model.pt")) or an ExportedProgram
# (torch.export.save(torch.export.export(model, (x,)), "model.pt2"))
qnn-pytorch-converter --input_network model.pt --input_dim input 1,3,224,224 --output_path model.cpp
# token ids, quantized with calibration data and overrides that name the module's parameters
qnn-pytorch-converter -i bert.pt2 -d input_ids 1,128 --input_dtype input_ids int64 \
    --input_list inputs.txt --quantization_overrides overrides.json -o bert.cpp
```

In Python, a module converts directly:

```python
graph = openqnn.convert(model.eval(), {"input": (1, 3, 224, 224)})   # or example_inputs=torch.randn(...)
openqnn.save(graph, "model.cpp")
```

## How it converts

The model goes through `torch.export` (a TorchScript file through PyTorch's TorchScript-to-ExportedProgram
converter first) and PyTorch's ONNX exporter, in memory and unoptimized, then through the ONNX frontend and
the same passes, quantization and artifacts as `qnn-onnx-converter`. So:

- parameters and buffers keep their `state_dict` names (`layer1.0.conv1.weight`), and
  `--quantization_overrides` refers to them; BatchNorm folds into the convolution before it, which keeps
  the convolution's names;
- `--input_dim` is required, as in QNN: it names the inputs, in the order of the model's arguments, and
  fixes their shapes (QNN graphs are static); `--input_dtype` gives an input another type (default
  float32); outputs are `output`, or `output_0`, `output_1`, ... for several;
- a model `torch.export` cannot trace fails with one line naming it and the exporter's reason;
  an op openqnn does not convert names the PyTorch layer, its class, the PyTorch op and the supported ops;
- only TorchScript and ExportedProgram files are read: a `torch.save` pickle runs code when opened and is
  refused.
"""

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
