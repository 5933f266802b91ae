"""The Caffe frontend: ``.prototxt`` (+ its ``.caffemodel``) -> an in-memory ONNX model -> the ONNX frontend.

Caffe's schema is built at run time (:mod:`openqnn.frontends.caffe.schema`); Caffe itself is not needed.
A ``.prototxt`` finds its weights beside it (``<stem>.caffemodel``); a :class:`CaffeNet` names them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from openqnn.frontends.base import FrontendOptions, lazy_exports, register
from openqnn.ir.graph import Graph

if TYPE_CHECKING:
    from openqnn.frontends.caffe.reader import CaffeNet, convert_caffe, to_onnx

__all__ = ["CaffeFrontend", "CaffeNet", "convert_caffe", "to_onnx"]


class CaffeFrontend:
    """``qnn-caffe-converter``'s frontend (protobuf and onnx are core dependencies: no extra)."""

    name: str = "caffe"
    suffixes: tuple[str, ...] = (".prototxt",)
    object_types: tuple[str, ...] = ("openqnn.frontends.caffe.reader.CaffeNet",)
    extra: str | None = None

    def load(self, source: object, options: FrontendOptions) -> Graph:
        from openqnn.frontends.caffe.reader import convert_caffe

        return convert_caffe(source, options)  # type: ignore[arg-type]

    def supported_ops(self) -> list[str]:
        from openqnn.frontends.caffe.reader import LAYERS

        return sorted(LAYERS)


register(CaffeFrontend())


# the reader imports onnx and protobuf: only when asked for
__getattr__ = lazy_exports(__name__, {"CaffeNet": "reader", "convert_caffe": "reader", "to_onnx": "reader"})
