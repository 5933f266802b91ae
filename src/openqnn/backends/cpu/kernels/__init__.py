"""cpu kernel builders, one op family per module; importing this package registers them all."""

from openqnn.backends.cpu.kernels import (  # noqa: F401
    conv,
    elementwise,
    linear,
    normalization,
    pooling,
    reduce,
    shape,
    spatial,
    volumetric,
)
from openqnn.backends.cpu.kernels.registry import KERNELS, BuildContext, Step, Unsupported, kernel

__all__ = ["KERNELS", "BuildContext", "Step", "Unsupported", "kernel"]
