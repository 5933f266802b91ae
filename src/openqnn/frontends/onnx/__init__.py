"""The ONNX frontend: ONNX models -> IR graphs (``.onnx`` files and ``onnx.ModelProto`` objects)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from openqnn.frontends.base import FrontendOptions, lazy_exports, register
from openqnn.ir.graph import Graph

if TYPE_CHECKING:
    from openqnn.frontends.onnx.frontend import convert_onnx, load_onnx

__all__ = ["OnnxFrontend", "convert_onnx", "load_onnx"]


class OnnxFrontend:
    """``qnn-onnx-converter``'s frontend."""

    name: str = "onnx"
    suffixes: tuple[str, ...] = (".onnx",)
    object_types: tuple[str, ...] = ("onnx.ModelProto",)
    extra: str | None = None

    def load(self, source: object, options: FrontendOptions) -> Graph:
        from openqnn.frontends.onnx.frontend import convert_onnx

        return convert_onnx(source, options.input_dims, options.out_nodes or None, options.name)  # type: ignore[arg-type]


register(OnnxFrontend())


# the converter imports onnx: only when asked for
__getattr__ = lazy_exports(__name__, {"convert_onnx": "frontend", "load_onnx": "frontend"})
