"""Post-training quantization: annotate, calibrate, materialize encodings once.

    graph = openqnn.convert("model.onnx")
    qgraph = openqnn.quantize(graph, calibration_data, QuantizerConfig(act_bitwidth=16))

``calibration_data`` is any iterable of input dicts (name -> array). The result is the same graph
with an :class:`~openqnn.ir.Encoding` on every tensor that a fixed-point backend quantizes; the cpu
backend runs it as a quantization simulation (float kernels, quantize-dequantize at each encoding).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from openqnn.errors import InputDataError, InvalidConfigError
from openqnn.ir.graph import Graph
from openqnn.ir.tensor import Encoding, Tensor
from openqnn.quantization.algorithms import HISTOGRAM_METHODS
from openqnn.quantization.calibration import HistogramObserver, MinMaxObserver
from openqnn.quantization.config import QuantizerConfig
from openqnn.quantization.encodings import math as qmath
from openqnn.quantization.encodings.formats import EncodingsFile, EncodingSpec, resolve
from openqnn.quantization.rules import Role, annotate, untie_static_uses

__all__ = ["QuantizationReport", "calibrate", "quantize", "recorded_config"]

log = logging.getLogger("openqnn.quantization")

Observer = HistogramObserver | MinMaxObserver

# Softmax sees only differences from the row maximum; anything SOFTMAX_SPAN below it contributes
# exp(-25) ~ 1e-11. Attention masks add -10000 or -inf to the scores: a calibrated range down to
# there would leave the real scores a handful of levels. Inputs to Softmax keep [lowest row max - span, max].
SOFTMAX_SPAN = 25.0


@dataclass
class QuantizationReport:
    """What quantize() did, for logs and tests."""

    activations: int = 0
    params: int = 0
    overridden: list[str] = field(default_factory=list)
    unmatched_overrides: list[str] = field(default_factory=list)
    clamped_for_softmax: list[str] = field(default_factory=list)
    clamped_to_sum: list[str] = field(default_factory=list)  # operands narrowed to what reaches their sum
    float_tensors: list[str] = field(default_factory=list)


def _root(roles: dict[str, Role], name: str) -> str:
    seen = set()
    while roles.get(name, Role("")).kind == "shared" and name not in seen:
        seen.add(name)
        name = roles[name].source or name
    return name


def calibrate(graph: Graph, data: Iterable[Mapping[str, np.ndarray]], names: list[str], histogram: bool,
              progress: bool = True, row_max_axes: Mapping[str, int] | None = None,
              row_max_floor: dict[str, float] | None = None) -> dict[str, Observer]:
    """Run ``graph`` in float over ``data`` and observe the tensors ``names``. Returns name -> observer.

    ``row_max_axes`` (tensor -> axis): also record, into ``row_max_floor``, the lowest maximum along
    that axis (the lowest row maximum of a Softmax input) seen over the data."""
    from openqnn.backends.cpu import CpuBackend

    row_max_axes = row_max_axes or {}
    probe = graph.copy()
    extra = [n for n in [*names, *row_max_axes] if n not in graph.inputs]
    probe.outputs = list(dict.fromkeys([*graph.outputs, *extra]))
    plan = CpuBackend().prepare(probe)
    observers: dict[str, Observer] = {n: (HistogramObserver() if histogram else MinMaxObserver()) for n in names}
    count = 0
    iterator: Iterable[Mapping[str, np.ndarray]] = data
    if progress:
        from tqdm import tqdm

        iterator = tqdm(data, desc="calibrating", unit="input", leave=False, disable=None)
    for feeds in iterator:
        outs = plan.run(feeds)
        for n in names:
            arr = feeds[n] if n in graph.inputs else outs[n]
            observers[n].update(np.asarray(arr, dtype=np.float32))
        if row_max_floor is not None:
            for n, axis in row_max_axes.items():
                arr = np.asarray(feeds[n] if n in graph.inputs else outs[n], dtype=np.float32)
                finite = np.isfinite(arr)  # NaN and +-inf: not scores
                row_max = np.where(finite, arr, -np.inf).max(axis=axis)
                row_min = np.where(finite, arr, np.inf).min(axis=axis)
                # a constant row (every score masked: DeBERTa masks the padded queries' rows too) gives a
                # uniform softmax wherever it is clamped to: its maximum sets no floor
                row_max = row_max[np.isfinite(row_max) & (row_max > row_min)]
                if row_max.size:
                    floor = float(row_max.min())
                    row_max_floor[n] = min(row_max_floor.get(n, floor), floor)
        count += 1
    if count == 0:
        raise InputDataError("calibration data is empty: give at least one input")
    return observers


def _fixed_encoding(op: str, bitwidth: int) -> Encoding:
    levels = 1 << bitwidth
    if op == "Tanh":
        return Encoding(bitwidth, (2.0 / levels,), (-(levels // 2),))
    return Encoding(bitwidth, (1.0 / levels,), (0,))


def _encoding(scale: np.ndarray, offset: np.ndarray, bitwidth: int, axis: int | None, symmetric: bool) -> Encoding:
    scale, offset = np.atleast_1d(scale), np.atleast_1d(offset)
    return Encoding(bitwidth, tuple(float(s) for s in scale), tuple(int(o) for o in offset),
                    axis if scale.size > 1 or axis is not None else None, symmetric, False)


def _scale_offset(lo: np.ndarray | float, hi: np.ndarray | float, bitwidth: int, symmetric: bool,
                  steps: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    if symmetric:
        return qmath.symmetric(np.maximum(np.abs(lo), np.abs(hi)), bitwidth, steps)
    return qmath.asymmetric(lo, hi, bitwidth, steps)


def _restrict(enc: Encoding, steps: tuple[int, int] | None) -> Encoding:
    """``enc`` with q clamped to the signed ``steps`` (--restrict_quantization_steps)."""
    if steps is None:
        return enc
    qmin, qmax = qmath.restricted_qrange(enc.bitwidth, steps)
    return replace(enc, qmin=qmin, qmax=qmax)


def _finite_static(t: Tensor) -> np.ndarray:
    """A static tensor's data with non-finite values replaced (in the quantized copy, so every backend
    runs the same values): NaN -> 0, +-inf -> its largest / smallest finite value (0 when none): the
    ends of its encoding. Logs a warning naming the tensor."""
    data = t.data
    assert data is not None
    bad = ~np.isfinite(data)
    if not bad.any():
        return data
    finite = data[~bad]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    log.warning("static tensor '%s' holds %d non-finite value(s) (%s): quantized as NaN -> 0, -inf -> %g, "
                "+inf -> %g (its finite range)", t.name, int(bad.sum()),
                ", ".join(sorted({str(v) for v in np.unique(data[bad])})), min(lo, 0.0), max(hi, 0.0))
    t.data = np.nan_to_num(data, nan=0.0, posinf=max(hi, 0.0), neginf=min(lo, 0.0)).astype(data.dtype)
    return t.data


def _param_encoding(data: np.ndarray, bitwidth: int, method: str, symmetric: bool, axis: int | None,
                    steps: tuple[int, int] | None = None) -> Encoding:
    from openqnn.quantization.algorithms import range_from_array

    lo, hi = range_from_array(method, data, bitwidth, symmetric, axis=axis)
    scale, offset = _scale_offset(lo, hi, bitwidth, symmetric, steps)
    return _restrict(_encoding(scale, offset, bitwidth, axis, symmetric), steps)


def _block_encoding(name: str, data: np.ndarray, bitwidth: int, method: str, symmetric: bool, channel_axis: int,
                    block_axis: int, block_size: int, steps: tuple[int, int] | None = None,
                    block_scale_bitwidth: int | None = None) -> Encoding:
    """One encoding per output channel and per block of ``block_size`` along ``block_axis``; LPBQ when
    ``block_scale_bitwidth``: each channel's block scales rounded up to its largest / 2^bits x integer."""
    from openqnn.quantization.algorithms import range_from_array

    channels, length = data.shape[channel_axis], data.shape[block_axis]
    if length % block_size:
        raise InvalidConfigError(
            f"--weights_block_size {block_size}: weight '{name}' has {length} input channels along axis "
            f"{block_axis} (shape {tuple(data.shape)}), not a multiple of {block_size}; choose a block size that "
            "divides it")
    blocks = length // block_size
    x = np.moveaxis(np.asarray(data, dtype=np.float64), (channel_axis, block_axis), (0, 1))
    rows = x.reshape(channels, blocks, block_size, -1).reshape(channels * blocks, -1)  # one row per block
    lo, hi = range_from_array(method, rows, bitwidth, symmetric, axis=0)
    scale, offset = _scale_offset(lo, hi, bitwidth, symmetric, steps)
    if block_scale_bitwidth is not None:
        if not symmetric:
            raise InvalidConfigError(f"--weights_block_scale_bitwidth {block_scale_bitwidth}: LPBQ weights are "
                                     "symmetric; drop --param_quantizer_schema asymmetric")
        levels = 1 << block_scale_bitwidth
        grid = scale.reshape(channels, blocks)
        channel_scale = grid.max(axis=1) / levels
        ints = np.clip(np.ceil(grid / channel_scale[:, None] - 1e-9), 1, levels)  # up: no block clips
        scale = np.asarray(Encoding.expand_lpbq(channel_scale, ints))
    enc = Encoding(bitwidth, tuple(float(v) for v in scale), tuple(int(v) for v in offset), channel_axis, symmetric,
                   False, block_size, block_axis, block_scale_bitwidth)
    return _restrict(enc, steps)


_SUM_OPS = {"ElementWiseAdd": 1, "ElementWiseSubtract": -1}
_WIDE = 16.0  # an operand's range this many times wider than what can reach its sum's range is narrowed


def _operand_windows(graph: Graph, roles: dict[str, Role], ranges: Mapping[str, tuple[float, float]]
                     ) -> dict[str, tuple[float, float]]:
    """Activation ranges narrowed to what can reach a sum's range: where every reader of an activation (through
    data movement that shares its encoding) is an Add or Sub of another activation, its values beyond
    ``[out_lo - b_hi - w, out_hi - b_lo + w]`` (Add; ``w`` the other operand's width, as a margin) saturate the
    sum wherever they occur, so the range keeps only that window where it is more than ``_WIDE`` times wider.
    An attention mask's -10000 beside scores of a few units is the case: its encoding otherwise has steps
    of 40 where the sum's are 0.1, which QNN's HTP Add meets with a coarse form that rounds the scores to
    eighths of their resolution (docs/htp-fidelity.md, Add); narrowed, it stays in the fine form, and the
    masked places still saturate the sum."""
    readers: dict[str, list[tuple[Any, int]]] = {}
    for node in graph.nodes:
        for i, x in enumerate(node.inputs):
            if x:
                readers.setdefault(_root(roles, x), []).append((node, i))
    out: dict[str, tuple[float, float]] = {}
    for name, (lo, hi) in ranges.items():
        uses = readers.get(name, [])
        if not uses or name in graph.outputs:
            continue
        window: tuple[float, float] | None = None
        for node, i in uses:
            if node.op_type not in _SUM_OPS and node.outputs and all(_root(roles, o) == name for o in node.outputs):
                continue  # data movement on the way: its output shares this encoding (its readers are listed too)
            sign = _SUM_OPS.get(node.op_type)
            other = node.inputs[1 - i] if sign is not None and len(node.inputs) == 2 else None
            o_root = _root(roles, other) if other else None
            y_root = _root(roles, node.outputs[0])
            if sign is None or o_root is None or o_root not in ranges or y_root not in ranges or o_root == name:
                window = None
                break
            (b_lo, b_hi), (y_lo, y_hi) = ranges[o_root], ranges[y_root]
            w = b_hi - b_lo
            if sign > 0:  # y = x + b
                need = (y_lo - b_hi - w, y_hi - b_lo + w)
            elif i == 0:  # y = x - b
                need = (y_lo + b_lo - w, y_hi + b_hi + w)
            else:  # y = b - x
                need = (b_lo - y_hi - w, b_hi - y_lo + w)
            window = need if window is None else (min(window[0], need[0]), max(window[1], need[1]))
        else:
            if window is not None:
                n_lo, n_hi = max(lo, min(window[0], 0.0)), min(hi, max(window[1], 0.0))
                if n_hi > n_lo and (hi - lo) > _WIDE * (n_hi - n_lo):
                    out[name] = (n_lo, n_hi)
    return out


def _softmax_inputs(graph: Graph, roles: dict[str, Role]) -> dict[str, dict[str, int]]:
    """Roots of the encodings that feed a Softmax, through data movement: root -> {the Softmax's
    input: its axis}."""
    out: dict[str, dict[str, int]] = {}
    for node in graph.nodes:
        if node.op_type in ("Softmax", "LogSoftmax"):
            x = node.inputs[0]
            axis = int(node.attrs.get("axis", -1)) % max(graph.tensors[x].rank, 1)
            out.setdefault(_root(roles, x), {})[x] = axis
    return out


def quantize(
    graph: Graph,
    calibration_data: Iterable[Mapping[str, np.ndarray]] | None,
    config: QuantizerConfig | None = None,
    overrides: EncodingsFile | None = None,
    report: QuantizationReport | None = None,
) -> Graph:
    """Return a copy of ``graph`` with encodings (see module docstring)."""
    config = config or QuantizerConfig()
    report = report if report is not None else QuantizationReport()
    if overrides is not None:
        config = _apply_file_bitwidths(config, overrides)
    g = graph.copy()
    copies = untie_static_uses(g)
    block = config.weights_block_size
    # per-block implies per-channel (per-row) for the weights that cannot be blocked
    roles = annotate(g, config.use_per_channel_quantization or block is not None,
                     config.use_per_row_quantization or block is not None)
    act_method, act_sym = config.method("act")
    w_method, w_sym = config.param_method(per_axis=False)
    w_axis_method, _ = config.param_method(per_axis=True)  # 4-bit per-channel/row/block: mse by default
    steps = config.restrict_quantization_steps

    encodings: dict[str, Encoding] = {}
    # parameters: from the weights themselves
    if calibration_data is not None:
        for name, role in roles.items():
            t = g.tensors[name]
            if role.kind in ("param", "const", "bias") and t.data is not None and t.dtype.is_float:
                _finite_static(t)
            if role.kind == "param" and t.data is not None:
                if (block is not None and role.block_axis is not None and role.channel_axis is not None
                        and t.shape[role.block_axis] < block):
                    # fewer input channels than one block (a first convolution on RGB): per-channel
                    log.info("weight '%s' has %d input channel(s), fewer than --weights_block_size %d: per-channel",
                             name, t.shape[role.block_axis], block)
                    encodings[name] = _param_encoding(t.data, config.weights_bitwidth, w_axis_method, w_sym,
                                                      role.channel_axis, steps)
                elif block is not None and role.block_axis is not None and role.channel_axis is not None:
                    encodings[name] = _block_encoding(name, t.data, config.weights_bitwidth, w_axis_method, w_sym,
                                                      role.channel_axis, role.block_axis, block, steps,
                                                      config.weights_block_scale_bitwidth)
                else:
                    encodings[name] = _param_encoding(t.data, config.weights_bitwidth,
                                                      w_method if role.axis is None else w_axis_method, w_sym,
                                                      role.axis, steps)
            elif role.kind == "const" and t.data is not None:
                encodings[name] = _param_encoding(t.data, 8 if config.weights_bitwidth == 4 else config.weights_bitwidth,
                                                  "min-max", False, None)
        # activations: calibrated
        act_names = [n for n, r in roles.items() if r.kind == "act"]
        softmax_in = _softmax_inputs(g, roles)
        row_max_floor: dict[str, float] = {}
        observers = calibrate(g, calibration_data, act_names, act_method in HISTOGRAM_METHODS,
                              row_max_axes={x: a for ins in softmax_in.values() for x, a in ins.items()},
                              row_max_floor=row_max_floor)
        from openqnn.quantization.algorithms import compute_range

        blind = [n for n in act_names if observers[n].is_empty]
        if blind:
            log.warning("%d tensor(s) saw no finite value over the calibration data (all NaN or +-inf): %s; "
                        "they get the smallest range around 0. Check the calibration inputs.", len(blind),
                        ", ".join(f"'{n}'" for n in blind[:5]) + (f" and {len(blind) - 5} more" if len(blind) > 5 else ""))
        ranges: dict[str, tuple[float, float]] = {}
        for name in act_names:
            if observers[name].is_empty:
                lo, hi = 0.0, 0.0
            else:
                lo, hi = compute_range(act_method, observers[name], config.act_bitwidth, act_sym,
                                       config.percentile_calibration_value)
            if name in softmax_in and not observers[name].is_empty:
                # the largest scores decide a softmax: never clip the top, whatever the method
                hi = max(hi, float(observers[name].max))
                # every row keeps [its max - span, its max]: below the lowest row max seen, by span
                floor = min(row_max_floor.get(x, np.inf) for x in softmax_in[name]) - SOFTMAX_SPAN
                if lo < floor < np.inf:
                    lo = min(0.0, floor)
                    report.clamped_for_softmax.append(name)
            ranges[name] = (lo, hi)
        for name, (lo, hi) in (_operand_windows(g, roles, ranges) if config.narrow_sum_operands else {}).items():
            if (lo, hi) != ranges[name]:
                report.clamped_to_sum.append(name)
                ranges[name] = (lo, hi)
        for name in act_names:
            lo, hi = ranges[name]
            if act_sym:
                scale, offset = qmath.symmetric(max(abs(lo), abs(hi)), config.act_bitwidth)
            else:
                scale, offset = qmath.asymmetric(lo, hi, config.act_bitwidth)
            encodings[name] = _encoding(scale, offset, config.act_bitwidth, None, act_sym)
        for name, role in roles.items():
            if role.kind == "fixed":
                encodings[name] = _fixed_encoding(role.op or "", config.act_bitwidth)

    # overrides win over calibration
    if overrides is not None:
        derived = {k: v for k, v in dict(g.metadata.get("static_sources", {})).items() if k in g.tensors}
        _apply_overrides(g, roles, overrides, config, encodings, report, {**derived, **copies})
        if calibration_data is None:
            log.warning("quantization overrides without calibration data: %d overridden tensor(s) are quantized, "
                        "the rest of the model stays float", len(report.overridden))

    # shared encodings follow their roots; biases follow input x weight
    for name, role in roles.items():
        if role.kind == "shared":
            root = _root(roles, name)
            if root in encodings:
                encodings[name] = encodings[root]
    for name, role in roles.items():
        if role.kind == "bias" and name not in encodings:
            enc = _bias_encoding(g, name, role, encodings, config.bias_bitwidth)
            if enc is not None:
                encodings[name] = enc

    for name, enc in encodings.items():
        t = g.tensors[name]
        problem = enc.shape_error(t.shape)
        if problem is None and enc.per_block and not t.is_static:
            problem = "per-block encodings are for static weights, and it is not static"
        if problem is not None:
            raise InvalidConfigError(f"encoding of '{name}': {problem}")
        t.encoding = enc
    report.activations = sum(1 for n, r in roles.items() if n in encodings and r.kind not in ("param", "bias", "const"))
    report.params = sum(1 for n, r in roles.items() if n in encodings and r.kind in ("param", "bias", "const"))
    report.float_tensors = sorted(n for n in roles if n not in encodings)
    g.metadata["quantization"] = {
        "act_bitwidth": config.act_bitwidth, "weights_bitwidth": config.weights_bitwidth,
        "bias_bitwidth": config.bias_bitwidth, "per_channel": config.use_per_channel_quantization,
        "per_row": config.use_per_row_quantization, "act_calibration": act_method,
        "param_calibration": w_axis_method if any(r.kind == "param" and r.axis is not None for r in roles.values())
        else w_method,
        "act_symmetric": act_sym, "param_symmetric": w_sym,
    }
    if block is not None:
        g.metadata["quantization"]["weights_block_size"] = block
        if config.weights_block_scale_bitwidth is not None:
            g.metadata["quantization"]["weights_block_scale_bitwidth"] = config.weights_block_scale_bitwidth
    if steps is not None:
        g.metadata["quantization"]["restrict_quantization_steps"] = [int(v) for v in steps]
    return g


# metadata["quantization"] key -> QuantizerConfig field, for what quantize() records
_RECORDED = {"act_bitwidth": "act_bitwidth", "weights_bitwidth": "weights_bitwidth", "bias_bitwidth": "bias_bitwidth",
             "per_channel": "use_per_channel_quantization", "per_row": "use_per_row_quantization",
             "weights_block_size": "weights_block_size", "weights_block_scale_bitwidth": "weights_block_scale_bitwidth"}


def recorded_config(graph: Graph) -> QuantizerConfig:
    """The settings a quantized graph was quantized with, from what :func:`quantize` records in its metadata
    (defaults for the rest): to quantize it again the same way."""
    meta = dict(graph.metadata.get("quantization", {}))
    kwargs: dict[str, Any] = {field: meta[key] for key, field in _RECORDED.items() if key in meta}
    if "restrict_quantization_steps" in meta:
        kwargs["restrict_quantization_steps"] = tuple(meta["restrict_quantization_steps"])
    return QuantizerConfig(**kwargs)


def _bias_encoding(g: Graph, name: str, role: Role, encodings: dict[str, Encoding], bitwidth: int) -> Encoding | None:
    x_enc = encodings.get(role.source or "")
    w_enc = encodings.get(role.weight or "")
    if x_enc is None or w_enc is None:
        return None
    if bitwidth == 32:
        w_scales: tuple[float, ...] = w_enc.scale
        if w_enc.per_block and w_enc.axis is not None:
            # one bias scale per channel: input scale x the channel's largest block scale
            channels = g.tensors[role.weight or ""].shape[w_enc.axis]
            w_scales = tuple(float(v) for v in np.asarray(w_enc.scale).reshape(channels, -1).max(axis=1))
        scales = tuple(x_enc.scale[0] * s for s in w_scales)
        n = len(scales)
        return Encoding(32, scales, (0,) * n, 0 if n > 1 else None, True, True)
    data = g.tensors[name].data
    assert data is not None
    return _param_encoding(data, bitwidth, "min-max", True, None)


def _apply_file_bitwidths(config: QuantizerConfig, f: EncodingsFile) -> QuantizerConfig:
    changes: dict[str, Any] = {}
    if f.activation_bitwidth is not None:
        changes["act_bitwidth"] = f.activation_bitwidth
    if f.param_bitwidth is not None:
        changes["weights_bitwidth"] = f.param_bitwidth
    if f.bias_bitwidth is not None:
        changes["bias_bitwidth"] = f.bias_bitwidth
    return replace(config, **changes) if changes else config


def _apply_overrides(g: Graph, roles: dict[str, Role], f: EncodingsFile, config: QuantizerConfig,
                     encodings: dict[str, Encoding], report: QuantizationReport,
                     copies: Mapping[str, str] | None = None) -> None:
    """Overrides win; one naming a static tensor that quantize gave copies (untie_static_uses) applies to
    every copy, as the model had one tensor."""
    unmatched = []
    copies_of: dict[str, list[str]] = {}
    for copy, original in (copies or {}).items():
        copies_of.setdefault(original, []).append(copy)
    for section, default_sym in ((f.activations, False), (f.params, False)):  # min/max decide: asymmetric unless is_symmetric
        for name, spec in section.items():
            if name not in g.tensors:
                unmatched.append(name)
                continue
            for target in (name, *_all_copies(name, copies_of)):
                if target != name and not _same_layout(g, name, target, spec):
                    log.warning("quantization override of '%s' is per-channel and '%s' (made from it by the converter) "
                                "holds its values in another layout; that copy keeps its calibrated encoding",
                                name, target)
                    continue
                encodings[target] = _spec_encoding(g, target, spec, roles.get(target), default_sym)
                report.overridden.append(target)
                role = roles.get(target)
                if role is not None and role.kind == "shared":  # an override pins the tensor itself
                    roles[target] = Role("act")
    if unmatched:
        report.unmatched_overrides = sorted(unmatched)
        log.warning("quantization overrides name %d tensor(s) not in the model: %s", len(unmatched),
                    ", ".join(report.unmatched_overrides))


def _same_layout(g: Graph, name: str, copy: str, spec: EncodingSpec) -> bool:
    """Whether an override of ``name`` fits ``copy`` as it is: a per-tensor one always; a per-channel one
    where the copy holds the same values in the same shape (not a transposed weight)."""
    if max(len(v) for v in (spec.scale or (), spec.min or (), (0,))) <= 1 and not spec.block_size:
        return True
    a, b = g.tensors[name], g.tensors[copy]
    return a.shape == b.shape and a.data is not None and b.data is not None and np.array_equal(a.data, b.data)


def _all_copies(name: str, copies_of: Mapping[str, list[str]]) -> list[str]:
    """Every tensor made from ``name``: its copies, and theirs (a converter copy untied again)."""
    out: list[str] = []
    todo = list(copies_of.get(name, ()))
    while todo:
        t = todo.pop()
        if t not in out and t != name:
            out.append(t)
            todo.extend(copies_of.get(t, ()))
    return out


def _spec_encoding(g: Graph, name: str, spec: EncodingSpec, role: Role | None, default_sym: bool) -> Encoding:
    if spec.dtype == "float":
        raise InvalidConfigError(f"encoding of '{name}': float encodings (dtype float) are not supported yet; "
                                 "remove it to keep the tensor float")
    scale, offset = resolve(spec, default_sym)
    t = g.tensors[name]
    n = scale.size
    if spec.block_size:
        return _spec_block_encoding(t, spec, scale, offset, role)
    axis = spec.axis
    if n > 1:
        if axis is None:
            axis = role.axis if role is not None and role.axis is not None else t.rank - 1
        if axis >= t.rank or t.shape[axis] != n:
            raise InvalidConfigError(
                f"encoding of '{name}': {n} per-channel values, but its axis {axis} has "
                f"{t.shape[axis] if axis < t.rank else 'no'} channels (shape {t.shape})")
    sym = bool(spec.symmetric) if spec.symmetric is not None else bool(np.all(offset == -(1 << (spec.bitwidth - 1))))
    enc = _encoding(scale, offset, spec.bitwidth, axis if n > 1 else None, sym)
    if spec.bitwidth == 32 and not np.any(offset):
        # 32-bit, offset 0: QNN's signed int32 (biases); unsigned q could not hold a negative value
        enc = replace(enc, symmetric=True, is_signed=True)
    return enc


def _spec_block_encoding(t: Tensor, spec: EncodingSpec, scale: np.ndarray, offset: np.ndarray,
                         role: Role | None) -> Encoding:
    """A PER_BLOCK / LPBQ override: [channels, blocks] values on a Conv2d / FullyConnected / MatMul weight,
    channels along its output axis, blocks along its input (reduction) axis."""
    kind = "LPBQ" if spec.is_lpbq else "PER_BLOCK"
    bs = int(spec.block_size or 0)
    where = f"{kind} encoding of '{t.name}' (block_size {bs})"
    if role is None or role.kind != "param" or role.channel_axis is None or role.block_axis is None:
        raise InvalidConfigError(f"{where}: only weights of Conv2d, FullyConnected and MatMul take per-block "
                                 "encodings; it is not one")
    channels, length = t.shape[role.channel_axis], t.shape[role.block_axis]
    if length % bs:
        raise InvalidConfigError(f"{where}: the block size does not divide its {length} input channels "
                                 f"(shape {t.shape})")
    blocks = length // bs
    if scale.size != channels * blocks:
        raise InvalidConfigError(f"{where}: {scale.size} per-block values, but {channels} channels x {blocks} blocks "
                                 f"make {channels * blocks} (shape {t.shape})")
    bitwidth = spec.compressed_bitwidth if spec.is_lpbq and spec.compressed_bitwidth else spec.bitwidth
    sym = bool(spec.symmetric) if spec.symmetric is not None else bool(np.all(offset == -(1 << (bitwidth - 1))))
    enc = Encoding(bitwidth, tuple(float(v) for v in scale), tuple(int(v) for v in offset), role.channel_axis,
                   sym or spec.is_lpbq, False, bs, role.block_axis,
                   spec.bitwidth - bitwidth if spec.is_lpbq else None)
    if enc.block_scale_bitwidth is not None and enc.shape_error(t.shape) is not None:
        # block integers that do not reach 2^bits in some channel: plain per-block scales, same values
        enc = replace(enc, block_scale_bitwidth=None)
    return enc
