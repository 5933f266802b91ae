"""qnn-tensorflow-converter: a TensorFlow model -> <stem>_net.json + <stem>.bin (+ <stem>_encodings.json when quantized).

Converts a TensorFlow **SavedModel** (a directory), a **Keras** model (`.keras`, `.h5`) or a **frozen
GraphDef** (`.pb`, cut at `--out_node`) into openqnn's (QNN's) model files. The same in Python:
`openqnn.convert("saved_model_dir")`, `openqnn.convert(keras_model)` (a `keras.Model` object), or
`openqnn.frontends.tensorflow.convert_tensorflow(source, input_dims, out_nodes, name)`.

```
pip install 'openqnn[tensorflow]'
qnn-tensorflow-converter -i resnet_savedmodel --input_dim images 1,224,224,3 -o resnet.cpp
qnn-tensorflow-converter -i frozen.pb --input_dim x 1,28,28,1 --out_node logits -o mnist.cpp
```

TensorFlow is the optional `tensorflow` extra (`tensorflow-cpu`), never a core dependency; without it the
converter stops in one line that names the extra to install.

## How it converts

Through TensorFlow's own TFLite converter, in memory, then openqnn's TFLite frontend
([tflite.md](tflite.md)):

1. the model's serving function (a SavedModel's `serving_default` signature, a Keras model's call, or a
   frozen GraphDef pruned from its `Placeholder`s to `--out_node`) is traced with every input dim fixed:
   `--input_dim`'s, else the model's own, an unknown one (the batch) 1;
2. `tf.lite.TFLiteConverter` writes a float `.tflite` with TFLite builtin ops only (no TF Select, no
   custom ops, no quantization): a TensorFlow op that TFLite cannot express is an error that names the
   node, its TensorFlow op type, the model file and the TFLite ops openqnn converts;
3. the TFLite frontend translates it; a TFLite op it does not translate is named the same way.

Names: inputs keep the model's names (signature keys, Keras `Input` names, `Placeholder` names), outputs
the signature's output keys (`output_0`, ...), the Keras model's output names, or the GraphDef's
`--out_node` names, not TFLite's mangled ones (`serving_default_x:0`). A frozen GraphDef without
`--out_node` takes the nodes nothing consumes as its outputs. `--input_list` quantizes as for any model.

## Tests

`tests/frontends/tensorflow/` compares each model with TensorFlow's own output (rtol 1e-3, seeded inputs):
a small CNN, an MLP and a Keras transformer-style block (attention + layer norm + MLP), each as a
SavedModel, a `.keras` file and a frozen GraphDef, built by the tests themselves. The committed fixtures
in `tests/frontends/tensorflow/fixtures/` (a tiny SavedModel, `.keras` and frozen `.pb` with
TensorFlow's outputs as `.npy`, from `make_fixtures.py`) keep the expected numbers beside the models, but
converting them still runs TensorFlow's converter: **without TensorFlow installed (as in CI) every test
that converts skips**; what always runs is the missing-framework error, the frontend registration
(suffixes, SavedModel directories) and this page.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from openqnn.cli.common import ToolParser
from openqnn.cli.converter import add_converter_flags, run_converter


def build_parser(prog: str = "qnn-tensorflow-converter") -> argparse.ArgumentParser:
    p = ToolParser(prog=prog, description="Convert a TensorFlow model (SavedModel directory, Keras .keras/.h5, "
                                          "frozen GraphDef .pb) into an openqnn/QNN model (<stem>_net.json with the "
                                          "graph, <stem>.bin with the weights), through TensorFlow's TFLite "
                                          "converter; needs pip install 'openqnn[tensorflow]'.")
    add_converter_flags(p, source="TensorFlow (SavedModel directory, .keras, .h5, frozen .pb)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return run_converter("qnn-tensorflow-converter", build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
