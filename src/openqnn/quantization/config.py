"""Quantizer configuration: a frozen dataclass mirroring qnn-onnx-converter's quantization flags."""

from __future__ import annotations

from dataclasses import dataclass

from openqnn.errors import InvalidConfigError

__all__ = ["CALIBRATION_METHODS", "LEGACY_QUANTIZERS", "QuantizerConfig"]

# --act_quantizer_calibration / --param_quantizer_calibration
CALIBRATION_METHODS = ("min-max", "sqnr", "entropy", "mse", "percentile")
# --act_quantizer / --param_quantizer (older flags)
LEGACY_QUANTIZERS = ("tf", "enhanced", "adjusted", "symmetric")
SCHEMAS = ("asymmetric", "symmetric")


@dataclass(frozen=True)
class QuantizerConfig:
    """How to quantize. Defaults follow QNN: 8-bit asymmetric activations, 8-bit symmetric weights
    (per-channel when asked), 32-bit bias, min-max ranges.

    ``param_quantizer_calibration`` left as None picks the weight range method by bitwidth:
    ``min-max`` for 8- and 16-bit weights; for 4-bit weights, ``mse`` (each channel's clipping range
    minimizes its quantize-dequantize error, as AIMET's and QNN's mse param calibration do) on
    per-channel, per-row and per-block encodings, and ``min-max`` on per-tensor ones, where one
    range spans channels of different magnitudes and the MSE optimum clips the largest channels.
    A method given explicitly (or the legacy ``param_quantizer``) always wins.

    ``weights_block_size`` gives Conv2d / FullyConnected / MatMul weights per-block encodings (one
    scale per output channel and per block of that many input channels; other weights per-channel),
    LPBQ with ``weights_block_scale_bitwidth``. ``restrict_quantization_steps`` (signed MIN, MAX)
    keeps weight integers in [MIN, MAX], e.g. (-127, 127): 8-bit weights never use -128.

    >>> QuantizerConfig(act_bitwidth=16, use_per_channel_quantization=True)  # doctest: +ELLIPSIS
    QuantizerConfig(act_bitwidth=16, ...)
    """

    act_bitwidth: int = 8
    weights_bitwidth: int = 8
    bias_bitwidth: int = 32
    use_per_channel_quantization: bool = False
    use_per_row_quantization: bool = False
    act_quantizer_calibration: str = "min-max"
    param_quantizer_calibration: str | None = None  # None: by bitwidth, see param_method
    act_quantizer_schema: str = "asymmetric"
    param_quantizer_schema: str = "symmetric"
    act_quantizer: str | None = None  # legacy: overrides act calibration/schema when given
    param_quantizer: str | None = None
    percentile_calibration_value: float = 99.99
    float_fallback: bool = False
    float_bitwidth: int = 32
    restrict_quantization_steps: tuple[int, int] | None = None  # signed [MIN, MAX] of weight integers
    weights_block_size: int | None = None  # per-block weights: blocks of this many input channels
    weights_block_scale_bitwidth: int | None = None  # LPBQ: per-block integer scales of this many bits
    # an Add/Sub operand whose calibrated range dwarfs what can reach its sum (an attention mask) narrowed to that
    # window (quantizer._operand_windows); False: every activation keeps its calibrated range
    narrow_sum_operands: bool = True

    def __post_init__(self) -> None:
        def bad(flag: str, value: object, allowed: object) -> InvalidConfigError:
            return InvalidConfigError(f"--{flag} {value}: not allowed; use one of {allowed}")

        if self.act_bitwidth not in (8, 16):
            raise bad("act_bitwidth", self.act_bitwidth, "8, 16")
        if self.weights_bitwidth not in (4, 8, 16):
            raise bad("weights_bitwidth", self.weights_bitwidth, "4, 8, 16")
        if self.bias_bitwidth not in (8, 32):
            raise bad("bias_bitwidth", self.bias_bitwidth, "8, 32")
        if self.float_bitwidth not in (16, 32):
            raise bad("float_bitwidth", self.float_bitwidth, "16, 32")
        for flag in ("act_quantizer_calibration", "param_quantizer_calibration"):
            if getattr(self, flag) not in CALIBRATION_METHODS and not (
                    flag == "param_quantizer_calibration" and self.param_quantizer_calibration is None):
                raise bad(flag, getattr(self, flag), ", ".join(CALIBRATION_METHODS))
        for flag in ("act_quantizer_schema", "param_quantizer_schema"):
            if getattr(self, flag) not in SCHEMAS:
                raise bad(flag, getattr(self, flag), ", ".join(SCHEMAS))
        for flag in ("act_quantizer", "param_quantizer"):
            if getattr(self, flag) is not None and getattr(self, flag) not in LEGACY_QUANTIZERS:
                raise bad(flag, getattr(self, flag), ", ".join(LEGACY_QUANTIZERS))
        if not 50.0 < self.percentile_calibration_value <= 100.0:
            raise bad("percentile_calibration_value", self.percentile_calibration_value, "a value in (50, 100]")
        if self.weights_block_size is not None and (isinstance(self.weights_block_size, bool)
                                                    or not isinstance(self.weights_block_size, int)
                                                    or self.weights_block_size < 1):
            raise bad("weights_block_size", self.weights_block_size, "a positive number of input channels")
        if self.weights_block_scale_bitwidth is not None:
            if self.weights_block_size is None:
                raise InvalidConfigError(f"--weights_block_scale_bitwidth {self.weights_block_scale_bitwidth}: "
                                         "LPBQ needs per-block weights; give --weights_block_size too")
            if self.weights_block_scale_bitwidth not in range(1, 9):
                raise bad("weights_block_scale_bitwidth", self.weights_block_scale_bitwidth, "1 to 8 bits")
        if self.restrict_quantization_steps is not None:
            self._check_steps(self.restrict_quantization_steps)

    def _check_steps(self, steps: tuple[int, int]) -> None:
        flag = "--restrict_quantization_steps"
        try:
            lo, hi = (int(v) for v in steps)
        except (TypeError, ValueError):
            raise InvalidConfigError(f"{flag} {steps}: give two integers MIN MAX, e.g. -127 127") from None
        text = f"{flag} {lo} {hi}"
        if not lo < 0 < hi:
            raise InvalidConfigError(f"{text}: needs MIN < 0 < MAX (signed weight integers, e.g. -127 127)")
        bw = self.weights_bitwidth
        half = 1 << (bw - 1)
        if lo < -half or hi > half - 1:
            raise InvalidConfigError(f"{text}: outside the {bw}-bit signed weight range [{-half}, {half - 1}] "
                                     "(--weights_bitwidth)")

    def method(self, kind: str) -> tuple[str, bool]:
        """(range method, symmetric) for ``kind`` "act" or "param", legacy flags taking precedence."""
        legacy = self.act_quantizer if kind == "act" else self.param_quantizer
        schema = self.act_quantizer_schema if kind == "act" else self.param_quantizer_schema
        if legacy is not None:
            return ("min-max" if legacy == "symmetric" else legacy), legacy == "symmetric" or schema == "symmetric"
        calib = self.act_quantizer_calibration if kind == "act" else self.param_quantizer_calibration
        return calib or "min-max", schema == "symmetric"

    def param_method(self, per_axis: bool) -> tuple[str, bool]:
        """(range method, symmetric) of one weight encoding: :meth:`method` ("param"), except that with
        ``param_quantizer_calibration`` None, 4-bit weights with per-channel, per-row or per-block
        encodings (``per_axis``) take ``mse``: at 16 levels, min-max wastes levels on each channel's
        extremes, and the MSE-optimal clipping of a channel is what AIMET and QNN calibrate with."""
        method, symmetric = self.method("param")
        if (self.param_quantizer is None and self.param_quantizer_calibration is None
                and self.weights_bitwidth == 4 and per_axis):
            return "mse", symmetric
        return method, symmetric
