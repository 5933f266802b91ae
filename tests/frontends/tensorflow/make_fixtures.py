"""Write the TensorFlow fixtures of tests/frontends/tensorflow (run once, by hand; the files are committed).

    PYTHONPATH=src python-with-tensorflow tests/frontends/tensorflow/make_fixtures.py

The MLP of tf_models.py (seeded) as a SavedModel directory, a ``.keras`` file and a frozen GraphDef, with
its seeded input and TensorFlow's output as ``.npy``. Converting them still needs TensorFlow (openqnn goes
through TensorFlow's TFLite converter): the tests that do skip without it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import tf_models

OUT = Path(__file__).resolve().parent / "fixtures"


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    model = tf_models.build("mlp")
    x = tf_models.sample_input(model)
    np.save(OUT / "mlp_input.npy", x)
    np.save(OUT / "mlp_output.npy", np.asarray(model(x, training=False)))
    for kind in ("savedmodel", "keras", "frozen"):
        print(tf_models.write(model, kind, OUT))


if __name__ == "__main__":
    main()
