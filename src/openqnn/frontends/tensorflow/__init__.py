"""The TensorFlow frontend: SavedModel directories, Keras models (``.keras``/``.h5`` files and ``keras.Model``
objects) and frozen GraphDefs (``.pb``) -> IR graphs, through TensorFlow's own TFLite converter (float,
TFLite builtin ops only) and then the TFLite frontend. TensorFlow is the optional ``tensorflow`` extra:
nothing here imports it until :meth:`TensorFlowFrontend.load` runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from openqnn.frontends.base import FrontendOptions, lazy_exports, register
from openqnn.ir.graph import Graph

if TYPE_CHECKING:
    from openqnn.frontends.tensorflow.converter import convert_tensorflow, to_tflite

__all__ = ["TensorFlowFrontend", "convert_tensorflow", "is_saved_model", "to_tflite"]


def is_saved_model(path: Path) -> bool:
    """Whether the directory ``path`` is a TensorFlow SavedModel (it holds ``saved_model.pb`` or ``.pbtxt``)."""
    return (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file()


class TensorFlowFrontend:
    """``qnn-tensorflow-converter``'s frontend (TensorFlow is the optional ``tensorflow`` extra)."""

    name: str = "tensorflow"
    suffixes: tuple[str, ...] = (".pb", ".keras", ".h5")
    object_types: tuple[str, ...] = ("keras.Model", "tf_keras.Model")
    extra: str | None = "tensorflow"

    def reads_directory(self, path: Path) -> bool:
        return is_saved_model(path)

    def load(self, source: object, options: FrontendOptions) -> Graph:
        from openqnn.frontends.tensorflow.converter import convert_tensorflow

        return convert_tensorflow(source, options.input_dims or None, list(options.out_nodes) or None,
                                  options.name, run_passes=False)

    def supported_ops(self) -> list[str]:
        """The TFLite builtin ops a TensorFlow model's ops must lower to (the TFLite frontend's list)."""
        from openqnn.frontends.tflite.frontend import supported_ops

        return list(supported_ops())


register(TensorFlowFrontend())


# the converter imports TensorFlow when it runs: only when asked for
__getattr__ = lazy_exports(__name__, {"convert_tensorflow": "converter", "to_tflite": "converter"})
