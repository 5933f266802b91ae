"""Running prepared models."""

from openqnn.runtime.selection import BackendSelector, Selection
from openqnn.runtime.session import Session, TensorInfo

__all__ = ["BackendSelector", "Selection", "Session", "TensorInfo"]
