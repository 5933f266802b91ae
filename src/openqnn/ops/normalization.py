"""Normalizations and softmax: Batchnorm, LayerNorm, RmsNorm, InstanceNorm, GroupNorm, Lrn, L2Norm,
Softmax, LogSoftmax. Channel-last: the channel axis is the last one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from openqnn.ops.schema import Attr, TType, norm_axis, op


def _same(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    return [ins[0]]


op("Batchnorm", ["in", "weight", "bias"])(_same)  # y = x * weight + bias per channel (folded stats)
op("LayerNorm", ["in", "gamma?", "beta?"], attrs=(Attr("axes", "ints"), Attr("epsilon", "float", 1e-5)))(_same)
# x / sqrt(mean(x^2 over axes) + epsilon) * gamma + beta
op("RmsNorm", ["in", "gamma?", "beta?"], attrs=(Attr("axes", "ints"), Attr("epsilon", "float", 1e-6)))(_same)
op("InstanceNorm", ["in", "weight", "bias"], attrs=(Attr("epsilon", "float", 1e-5),))(_same)
op("GroupNorm", ["in", "gamma", "beta"], attrs=(Attr("group", "int"), Attr("epsilon", "float", 1e-5)))(_same)
op(
    "Lrn",
    ["in"],
    attrs=(Attr("alpha", "float", 1e-4), Attr("beta", "float", 0.75), Attr("bias", "float", 1.0),
           Attr("radius", "int", 2, "window is 2*radius+1 channels")),
)(_same)
op("L2Norm", ["in"], attrs=(Attr("axes", "ints", (-1,)), Attr("epsilon", "float", 1e-12)))(_same)
op("LpNorm", ["in"], attrs=(Attr("axis", "int", -1), Attr("p", "int", 2)))(_same)


@op("Softmax", ["in"], attrs=(Attr("axis", "int", -1), Attr("beta", "float", 1.0)))
def _softmax(attrs: dict[str, Any], ins: Sequence[TType]) -> list[TType]:
    """exp(beta*x) / sum(exp(beta*x)) along axis."""
    norm_axis(attrs["axis"], len(ins[0].shape))
    return [ins[0]]


op("LogSoftmax", ["in"], attrs=(Attr("axis", "int", -1), Attr("beta", "float", 1.0)))(_softmax)
