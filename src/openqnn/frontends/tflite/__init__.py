"""The TFLite frontend: ``.tflite`` flatbuffers -> IR graphs (float, float16-weight and quantized models).

It reads the flatbuffer with the ``tflite`` schema package (a core dependency; no TensorFlow). A quantized
model keeps TFLite's ops one for one, so the spine runs no float passes on it (``KEEP_SOURCE_OPS``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from openqnn.frontends.base import FrontendOptions, lazy_exports, register
from openqnn.ir.graph import Graph

if TYPE_CHECKING:
    from openqnn.frontends.tflite.frontend import convert_tflite, supported_ops
    from openqnn.frontends.tflite.reader import read_tflite

__all__ = ["TFLiteFrontend", "convert_tflite", "read_tflite", "supported_ops"]


class TFLiteFrontend:
    """``qnn-tflite-converter``'s frontend."""

    name: str = "tflite"
    suffixes: tuple[str, ...] = (".tflite",)
    object_types: tuple[str, ...] = ()
    extra: str | None = None

    def load(self, source: object, options: FrontendOptions) -> Graph:
        from openqnn.frontends.tflite.frontend import convert_tflite

        return convert_tflite(source, options.input_dims or None, list(options.out_nodes) or None,  # type: ignore[arg-type]
                              options.name, run_passes=False)

    def supported_ops(self) -> list[str]:
        from openqnn.frontends.tflite.frontend import supported_ops

        return list(supported_ops())


register(TFLiteFrontend())


# the reader imports the schema package: only when asked for
__getattr__ = lazy_exports(__name__, {"convert_tflite": "frontend", "supported_ops": "frontend",
                                       "read_tflite": "reader"})
