"""The htp backend's configuration (``htp_config``) and registry entry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from openqnn.backends.htp.arch import ARCHS, resolve_arch
from openqnn.backends.settings import BackendSpec, Capabilities, validate_config
from openqnn.errors import InvalidConfigError

__all__ = ["SPEC", "HtpConfig"]

PRECISION_MODES = ("int8", "int16", "fp16", "mixed")
ARITHMETICS = ("tflite", "qnn")


@dataclass(frozen=True)
class HtpConfig:
    """``dsp_arch`` / ``soc_model`` pick the arch (they must agree); ``vtcm_mb`` must fit its VTCM.
    ``arithmetic``: "tflite" (TFLite's reference arithmetic) or "qnn" (what QNN's HTP computes for the arch,
    where established: the requantization of convolutions (depthwise ones of stride 1), TransposeConv2d and
    FullyConnected with 8-bit codes on v68 and v73, ``spec/qnn_requant.py``; everything else keeps
    TFLite's)."""

    device_id: int = 0
    performance_mode: str = "default"
    precision_mode: str = "int8"
    vtcm_mb: int | None = None
    enable_dma: bool = False
    soc_model: int | None = None
    dsp_arch: str | None = None
    fp16_relaxed_precision: bool = False
    arithmetic: str = "tflite"

    def __post_init__(self) -> None:
        validate_config(self, "htp_config", {"precision_mode": PRECISION_MODES, "dsp_arch": tuple(ARCHS),
                                             "arithmetic": ARITHMETICS})
        arch = resolve_arch(self.dsp_arch, self.soc_model)
        if self.vtcm_mb is not None and self.vtcm_mb > arch.vtcm_mb:
            raise InvalidConfigError(f"htp_config.vtcm_mb = {self.vtcm_mb} is more than the {arch.vtcm_mb} MB of VTCM "
                                     f"of {arch.name}; use 1 to {arch.vtcm_mb}")


def _create(config: Any, num_threads: int | None) -> Any:
    from openqnn.backends.htp.backend import HtpBackend

    return HtpBackend(config, num_threads=num_threads)


def _op_types() -> frozenset[str]:
    from openqnn.backends.htp.kernels import HTP_KERNELS

    return frozenset(HTP_KERNELS)


SPEC = BackendSpec("htp", "libQnnHtp.so", HtpConfig,
                   Capabilities(precisions=("int8", "int16"), native_integer_io=True, quantized_only=True,
                                devices=("cpu",), contexts=True, npu=True, max_tensor_bytes=8 * 1024 * 1024,
                                power_efficiency=0.9), _create, op_types=_op_types)
