"""The qnn-htp backend's configuration (``qnn_htp_config``) and registry entry."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

from openqnn.backends.htp.arch import ARCHS, resolve_arch
from openqnn.backends.settings import BackendSpec, Capabilities, validate_config
from openqnn.errors import InvalidConfigError

__all__ = ["SECTION", "SPEC", "QnnHtpConfig"]

SECTION = "qnn_htp_config"


@dataclass(frozen=True)
class QnnHtpConfig:
    """What QNN prepares for. ``dsp_arch`` / ``soc_model`` pick the HTP (they must agree; htp's arch table):
    QNN's ``htp_arch`` and ``soc_model``. Neither given: on an x86_64 host (QNN's simulator) the htp backend's
    default arch, on a Snapdragon machine the NPU QNN finds. ``device_id``, ``performance_mode`` and ``vtcm_mb``
    are QNN's ``device_id``, ``htp_performance_mode`` and ``vtcm_mb`` (None: QNN's default)."""

    device_id: int = 0
    performance_mode: str = "default"
    dsp_arch: str | None = None
    soc_model: int | None = None
    vtcm_mb: int | None = None

    def __post_init__(self) -> None:
        validate_config(self, SECTION, {"dsp_arch": tuple(ARCHS)})
        arch = resolve_arch(self.dsp_arch, self.soc_model, SECTION)
        if self.vtcm_mb is not None and self.vtcm_mb > arch.vtcm_mb:
            raise InvalidConfigError(f"{SECTION}.vtcm_mb = {self.vtcm_mb} is more than the {arch.vtcm_mb} MB of VTCM "
                                     f"of {arch.name}; use 1 to {arch.vtcm_mb}")


def _create(config: Any, num_threads: int | None) -> Any:
    from openqnn.backends.qnn_htp.backend import QnnHtpBackend

    return QnnHtpBackend(config)


def _op_types() -> frozenset[str]:
    """The op types that reach QNN: those openqnn's QDQ export writes (QNN may still refuse one when it
    prepares the graph)."""
    from openqnn.quantization.qdq.builder import HANDLERS

    return frozenset(HANDLERS)


def _spec() -> BackendSpec:
    # QNN's HTP: the NPU itself on a Snapdragon device (its simulator on an x86 host), with the HTP's VTCM
    # and efficiency in the guide's selector figures, as openqnn's htp has
    caps = Capabilities(precisions=("int8", "int16"), native_integer_io=True, quantized_only=True, devices=("htp",),
                        qnn_contexts=True, npu=True, max_tensor_bytes=8 * 1024 * 1024, power_efficiency=0.9)
    if importlib.util.find_spec("onnxruntime_qnn") is None:  # looked up, not imported: this module stays light
        from openqnn.backends.qnn_htp.provider import INSTALL_HINT

        return BackendSpec("qnn-htp", "libonnxruntime_providers_qnn.so", QnnHtpConfig, caps,
                           unavailable=f"Qualcomm's QNN is not installed: {INSTALL_HINT}", op_types=_op_types)
    return BackendSpec("qnn-htp", "libonnxruntime_providers_qnn.so", QnnHtpConfig, caps, _create, op_types=_op_types)


SPEC = _spec()
