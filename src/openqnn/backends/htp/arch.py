"""Hexagon NPU architectures the htp backend emulates, and what each supports."""

from __future__ import annotations

from dataclasses import dataclass

from openqnn.errors import InvalidConfigError

__all__ = ["ARCHS", "DEFAULT_ARCH", "SOC_MODELS", "HtpArch", "resolve_arch"]


@dataclass(frozen=True)
class HtpArch:
    """One Hexagon generation: VTCM size and the precisions it runs natively."""

    name: str
    vtcm_mb: int
    fp16: bool  # fp16 execution (QNN: fp16_relaxed_precision) from v69
    weights_16bit: bool  # 16-bit weights from v73
    weights_4bit: bool  # 4-bit (block) weights from v73
    activations_16bit: bool = True


ARCHS: dict[str, HtpArch] = {
    a.name: a
    for a in (
        HtpArch("v68", 4, fp16=False, weights_16bit=False, weights_4bit=False),
        HtpArch("v69", 8, fp16=True, weights_16bit=False, weights_4bit=False),
        HtpArch("v73", 8, fp16=True, weights_16bit=True, weights_4bit=True),
        HtpArch("v75", 8, fp16=True, weights_16bit=True, weights_4bit=True),
        HtpArch("v79", 8, fp16=True, weights_16bit=True, weights_4bit=True),
        HtpArch("v81", 8, fp16=True, weights_16bit=True, weights_4bit=True),
    )
}
DEFAULT_ARCH = "v73"

# Snapdragon SoC model numbers (QNN's soc_model) and their Hexagon generation.
SOC_MODELS: dict[int, tuple[str, str]] = {
    30: ("SM8350", "v68"),
    36: ("SM8450", "v69"),
    42: ("SM8475", "v69"),
    43: ("SM8550", "v73"),
    57: ("SM8650", "v75"),
    69: ("SM8750", "v79"),
}


def resolve_arch(dsp_arch: str | None = None, soc_model: int | None = None, section: str = "htp_config") -> HtpArch:
    """The arch named by ``dsp_arch`` or implied by ``soc_model`` (they must agree), else the default; errors
    name the settings as keys of ``section``."""
    by_soc = None
    if soc_model is not None:
        if soc_model not in SOC_MODELS:
            known = ", ".join(f"{k} ({v[0]})" for k, v in SOC_MODELS.items())
            raise InvalidConfigError(f"{section}.soc_model {soc_model} is unknown; known: {known}")
        by_soc = SOC_MODELS[soc_model][1]
    if dsp_arch is not None:
        if dsp_arch not in ARCHS:
            raise InvalidConfigError(f"{section}.dsp_arch {dsp_arch!r} is unknown; use one of {', '.join(ARCHS)}")
        if by_soc is not None and soc_model is not None and by_soc != dsp_arch:
            raise InvalidConfigError(f"{section}.dsp_arch {dsp_arch} contradicts soc_model {soc_model} "
                                     f"({SOC_MODELS[soc_model][0]} has {by_soc})")
        return ARCHS[dsp_arch]
    return ARCHS[by_soc or DEFAULT_ARCH]
