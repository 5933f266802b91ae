"""htp integer kernels, one op family per module; importing this package registers them all."""

from openqnn.backends.htp.kernels import (  # noqa: F401
    conv,
    elementwise,
    fallback,
    linear,
    logical,
    lut,
    movement,
    normalization,
    pooling,
    reduce,
    resize,
)
from openqnn.backends.htp.kernels.registry import (
    HTP_KERNELS,
    HtpBuildContext,
    HtpStep,
    QParams,
    Unsupported,
    htp_kernel,
)

__all__ = ["HTP_KERNELS", "HtpBuildContext", "HtpStep", "QParams", "Unsupported", "htp_kernel"]
