"""The qnn-htp backend: Qualcomm's own HTP (QNN's ``libQnnHtp``) through ONNX Runtime's QNN execution provider
of the optional ``onnxruntime-qnn`` wheel: QNN's HTP simulator on an x86_64 host, the NPU on a Snapdragon
machine. It runs quantized models as QNN computes them, and writes real QNN context binaries.

Importing this package is light (the config and the registry entry); ONNX Runtime loads on first use of
``QnnHtpBackend``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from openqnn.backends.qnn_htp.config import SPEC, QnnHtpConfig

if TYPE_CHECKING:
    from openqnn.backends.qnn_htp.backend import QnnHtpBackend

__all__ = ["SPEC", "QnnHtpBackend", "QnnHtpConfig"]


def __getattr__(name: str) -> object:
    if name == "QnnHtpBackend":
        from openqnn.backends.qnn_htp.backend import QnnHtpBackend

        return QnnHtpBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
