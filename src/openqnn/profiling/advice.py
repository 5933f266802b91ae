"""Bottlenecks and what to do about them: rules over a profile (and, where given, per-layer accuracy).

The guide's QNNDebugger suggests a depthwise separable convolution for any slow layer named "conv"; these
rules read what the layer is instead:

- **fallback**: a node that runs on the cpu fallback, with the backend's reason; its neighbours' outputs are
  dequantized for it and its outputs quantized again on every run.
- **vtcm**: a node whose working set (inputs, outputs, weights) exceeds the arch's VTCM; on a device it is
  tiled through DDR.
- **depthwise**: a k x k convolution over many channels, which a depthwise k x k plus a pointwise 1 x 1 would
  do in ``1/cout + 1/k²`` of its MACs.
- **float-gemm**: a weight product run in float on a float backend, which htp would run in int8.
- **quantization**: a layer that itself loses more than 6 dB of SQNR against the float model (the accuracy
  debugger's ranking: the error it adds, not the error it inherits).
- **hotspot**: any node taking a fifth of the time that no rule above explains.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from openqnn.profiling.log import ProfileLog
from openqnn.profiling.viewer import NodeStats, node_stats

__all__ = ["Suggestion", "suggestions"]

LOSS_DB = 6.0
DEPTHWISE_MIN_SHARE = 0.05
HOTSPOT_SHARE = 0.2


@dataclass(frozen=True)
class Suggestion:
    node: str
    kind: str
    share: float  # of the profile's node time
    text: str


def _runs_float(backend: str) -> bool:
    """Whether the backend computes in float (it exchanges no quantized integers), so int8 would be new."""
    from openqnn.backends import backend_spec
    from openqnn.errors import InvalidConfigError

    try:
        return not backend_spec(backend).capabilities.native_integer_io
    except InvalidConfigError:  # a log from a backend this build does not know
        return False


def _conv_dims(weight_shape: Sequence[int], cout: int) -> tuple[int, int, int] | None:
    """(kh, kw, cin per group) of a convolution weight in the IR's layout [kh, kw, cin, cout] or a packed
    [cout, cin, kh, kw]."""
    if len(weight_shape) != 4:
        return None
    if weight_shape[-1] == cout:
        return int(weight_shape[0]), int(weight_shape[1]), int(weight_shape[2])
    if weight_shape[0] == cout:
        return int(weight_shape[2]), int(weight_shape[3]), int(weight_shape[1])
    return None


def suggestions(log: ProfileLog, stats: Sequence[NodeStats] | None = None,
                layer_sqnr: Mapping[str, float] | None = None) -> list[Suggestion]:
    """Suggestions for a profile, most costly node first. ``layer_sqnr``: node -> the SQNR in dB it loses against
    the float model (the accuracy debugger's ``sqnr_drop_db``)."""
    stats = list(stats if stats is not None else node_stats(log))
    out: list[Suggestion] = []
    for s in stats:
        info = log.nodes.get(s.node)
        explained = False
        if info is not None and info.reason:
            out.append(Suggestion(s.node, "fallback", s.share,
                                  f"{s.node} ({s.op_type}) runs on the cpu fallback: {info.reason}. It takes "
                                  f"{s.avg_us:.0f} us ({100 * s.share:.1f}%) plus a dequantize/quantize at its "
                                  "edges every run; quantize it (give it encodings) or replace the op with one "
                                  f"{log.backend} runs"))
            explained = True
        if log.vtcm_bytes and info is not None and info.vtcm_bytes > log.vtcm_bytes:
            out.append(Suggestion(s.node, "vtcm", s.share,
                                  f"{s.node} ({s.op_type}) needs {info.vtcm_bytes / 2**20:.1f} MiB resident, more "
                                  f"than the {log.vtcm_bytes / 2**20:.0f} MiB VTCM of {log.arch}: on the device it "
                                  "is tiled through DDR. Split it (fewer output channels per layer), lower the "
                                  "resolution before it, or use a newer arch"))
            explained = True
        if info is not None and s.op_type == "Conv2d" and info.out_shape and s.share >= DEPTHWISE_MIN_SHARE:
            cout = int(info.out_shape[-1])
            dims = _conv_dims(info.weight_shape, cout)
            if dims is not None:
                kh, kw, cin = dims
                if kh * kw > 1 and cin >= 8 and cout >= 8:
                    ratio = 1 / cout + 1 / (kh * kw)
                    out.append(Suggestion(s.node, "depthwise", s.share,
                                          f"{s.node} is a {kh}x{kw} convolution {cin}->{cout} channels taking "
                                          f"{100 * s.share:.1f}% of the time ({info.macs / 1e6:.1f} M MACs): a "
                                          f"depthwise {kh}x{kw} plus a pointwise 1x1 would do it in "
                                          f"{100 * ratio:.0f}% of the MACs ({info.macs * ratio / 1e6:.1f} M)"))
                    explained = True
        if (info is not None and s.op_type in ("FullyConnected", "MatMul", "Conv2d") and info.ran_on == log.backend
                and _runs_float(log.backend) and s.share >= DEPTHWISE_MIN_SHARE and not explained):
            out.append(Suggestion(s.node, "float-gemm", s.share,
                                  f"{s.node} ({s.op_type}) runs in float32 and takes {100 * s.share:.1f}% of the "
                                  "time: quantize the model (--input_list) and run it on htp in int8"))
            explained = True
        sqnr = None if layer_sqnr is None else layer_sqnr.get(s.node)
        if sqnr is not None and sqnr > LOSS_DB:
            out.append(Suggestion(s.node, "quantization", s.share,
                                  f"{s.node} ({s.op_type}) loses {sqnr:.1f} dB of SQNR against the float model "
                                  "by itself: give it 16-bit activations or 8-bit weights "
                                  "(--quantization_overrides) or per-channel weights"))
            explained = True
        if not explained and s.share >= HOTSPOT_SHARE:
            out.append(Suggestion(s.node, "hotspot", s.share,
                                  f"{s.node} ({s.op_type}) takes {100 * s.share:.1f}% of the time "
                                  f"({s.avg_us:.0f} us on average)"))
    if layer_sqnr:
        known = {s.node for s in stats}
        for name, loss in sorted(layer_sqnr.items(), key=lambda kv: -kv[1]):
            if name not in known and loss > LOSS_DB:
                out.append(Suggestion(name, "quantization", 0.0,
                                      f"{name} loses {loss:.1f} dB of SQNR against the float model by itself; "
                                      "give it more bits (--quantization_overrides)"))
    return out
