"""Op schemas, one family per module. Importing this package registers every schema."""

from openqnn.ops import conv, elementwise, linear, normalization, pooling, reduce, resize, shape  # noqa: F401
from openqnn.ops.schema import OPS, REQUIRED, Attr, OpSchema, TType, get_schema, op

__all__ = ["OPS", "REQUIRED", "Attr", "OpSchema", "TType", "get_schema", "op"]
