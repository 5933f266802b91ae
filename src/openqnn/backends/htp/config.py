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
    """The ``htp_config`` section (and what a QNN HTP backend-extension file sets; ``runtime/config.py``).
    What each key does on this emulator (``docs/backend-config.md``):

    - ``device_id``: openqnn emulates one HTP device: 0 only, any other is refused.
    - ``performance_mode``: thread count and scheduling priority (``backends/threads.py``).
    - ``hvx_threads``: the thread count the emulation uses (wins over ``performance_mode``'s).
    - ``precision_mode``: what prepare runs: "mixed" (the default) the model's encodings as they are, 8-
      and 16-bit; "int8" / "int16" the same, but every activation must be 8-bit / 16-bit (prepare refuses
      the model naming a tensor that is not); "fp16" the graph in fp16, encodings dropped (v69 or newer).
    - ``vtcm_mb``: bounds the memory plan: every node htp runs must fit its working set (run-time inputs
      and outputs, and its weights unless ``enable_dma``) in this much VTCM, or prepare fails naming the
      node. Unset: no bound (the emulator's memory is the host's). At most the arch's VTCM.
    - ``enable_dma``: weights stream into VTCM by DMA as a node runs, so they do not count against
      ``vtcm_mb``; without it a node's weights must be resident beside its activations.
    - ``dsp_arch`` / ``soc_model``: the arch (they must agree); ``fp16_relaxed_precision``: a float model
      runs in fp16 (v69 or newer).
    - ``optimization_level`` (QNN's ``O``): openqnn prepares one plan, its most optimized (what O=3 asks for):
      3 only, any other is refused.
    - ``arithmetic``: "qnn" (the default: what QNN's HTP computes for the arch, where established: the
      requantization of convolutions (depthwise ones of stride 1), TransposeConv2d and FullyConnected,
      ``spec/qnn_requant.py``, and of ReduceMean / ReduceSum, ``spec/qnn_reduce.py``, with 8-bit codes on
      v68 and v73; every other op, encoding and arch keeps TFLite's) or "tflite" (TFLite's reference
      arithmetic throughout: the oracle for TFLite models).
    - ``enable_approximate_short_softmax``: retired, refused when set. It opted 8-bit Softmax rows of 3 to 16 elements
      into an approximation of QNN's route; that route (``spec/qnn_softmax.short_codes``, 99.97% of the simulator's
      codes on random rows) is now part of ``arithmetic`` "qnn" (docs/htp-fidelity.md, stop 26)."""

    device_id: int = 0
    performance_mode: str = "default"
    precision_mode: str = "mixed"
    vtcm_mb: int | None = None
    enable_dma: bool = False
    soc_model: int | None = None
    dsp_arch: str | None = None
    fp16_relaxed_precision: bool = False
    hvx_threads: int | None = None
    optimization_level: int = 3
    arithmetic: str = "qnn"
    enable_approximate_short_softmax: bool | None = None  # retired (stop 26): refused when set

    def __post_init__(self) -> None:
        validate_config(self, "htp_config", {"precision_mode": PRECISION_MODES, "dsp_arch": tuple(ARCHS),
                                             "arithmetic": ARITHMETICS})
        if self.device_id != 0:
            raise InvalidConfigError(f"htp_config.device_id = {self.device_id}: openqnn emulates one HTP device, "
                                     "device 0; drop the key or use 0")
        if self.enable_approximate_short_softmax is not None:
            raise InvalidConfigError("htp_config.enable_approximate_short_softmax was retired: with arithmetic 'qnn' "
                                     "8-bit Softmax rows of 3 to 16 elements always take QNN's route now "
                                     "(spec/qnn_softmax.short_codes); drop the key, or use arithmetic 'tflite' for "
                                     "TFLite's arithmetic")
        if self.optimization_level != 3:
            raise InvalidConfigError(f"htp_config.optimization_level (QNN's O) = {self.optimization_level}: openqnn "
                                     "prepares one plan, its most optimized, which is what O=3 asks for; drop the "
                                     "key or use 3")
        arch = resolve_arch(self.dsp_arch, self.soc_model)
        if self.vtcm_mb is not None and self.vtcm_mb > arch.vtcm_mb:
            raise InvalidConfigError(f"htp_config.vtcm_mb = {self.vtcm_mb} is more than the {arch.vtcm_mb} MB of VTCM "
                                     f"of {arch.name}; use 1 to {arch.vtcm_mb}")
        if self.precision_mode == "fp16" and not arch.fp16:
            raise InvalidConfigError(f"htp_config.precision_mode = 'fp16' needs dsp_arch v69 or newer; {arch.name} "
                                     "has no fp16")


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
