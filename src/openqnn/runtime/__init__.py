"""Running prepared models."""

from openqnn.runtime.session import Session, TensorInfo

__all__ = ["Session", "TensorInfo"]
