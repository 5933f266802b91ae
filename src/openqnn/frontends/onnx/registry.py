"""The registry of ONNX op translations: ONNX op type -> function(ctx, node)."""

from __future__ import annotations

from collections.abc import Callable

from openqnn.frontends.onnx.context import ConversionContext

Translation = Callable[[ConversionContext], None]

TRANSLATIONS: dict[str, Translation] = {}


def onnx_op(*op_types: str) -> Callable[[Translation], Translation]:
    """Register the decorated function as the translation of the given ONNX op types."""

    def register(fn: Translation) -> Translation:
        for t in op_types:
            if t in TRANSLATIONS:
                raise RuntimeError(f"ONNX op {t} has two translations")
            TRANSLATIONS[t] = fn
        return fn

    return register
