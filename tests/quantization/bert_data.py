"""The BERT-style encoder of ``benchmarks/zoo.py`` with trained-BERT-like statistics, its token data,
and the measuring tools of ``test_bert_quant.py`` (openqnn vs ONNX Runtime static quantization).

The zoo's own initialization (every weight N(0, 0.05), LayerNorm gamma 1 / beta 0) gives attention
scores with a std of ~0.3: every head attends almost uniformly, and quantizing the scores to nothing
at all barely changes the output. :func:`realistic_bert` rescales the seeded weights towards what a
trained BERT shows (see its docstring), so attention, LayerNorm and GELU ranges matter.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:  # benchmarks/ lives at the repository root
    sys.path.insert(0, _ROOT)

SEQ = 64  # padded sequence length
BATCH = 8  # sequences per run (the converted graph has a fixed batch)
VOCAB = 1000
MIN_LEN = 8
PAD_ID = 0

Feeds = dict[str, np.ndarray]


# ---------------------------------------------------------------------------------------------
# model


def realistic_bert(seed: int = 0, score_std: float = 3.0, gelu_in_std: float = 2.0) -> Any:
    """The zoo's BertEncoder (4 layers, hidden 128, 4 heads), seeded, then rescaled like a trained BERT.

    * LayerNorm gamma ~ N(1, 0.1), beta ~ N(0, 0.1) instead of exactly 1 and 0;
    * per layer, on a fixed probe batch, the query/key projections are scaled so the scaled scores
      q.k/sqrt(d) over real (unmasked) pairs have a std of ``score_std`` (3: a range of about
      +-16, 6: about +-33): heads attend to a few tokens, as a trained BERT's do, not uniformly;
    * likewise fc1 is scaled so the GELU inputs have a std of ``gelu_in_std`` (a range of about
      +-10), its non-linear part exercised.
    """
    import torch
    from benchmarks.zoo import MODELS

    model = MODELS["bert"].build(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    probe = token_batches(seed + 1000, sequences=16, batch=16)[0]
    ids, mask = torch.from_numpy(probe["input_ids"]), torch.from_numpy(probe["attention_mask"])
    n, s = ids.shape
    with torch.no_grad():
        norms = [model.ln, *(ln for layer in model.layers for ln in (layer.ln1, layer.ln2))]
        for ln in norms:
            ln.weight.copy_(1.0 + 0.1 * torch.randn(ln.weight.shape, generator=gen))
            ln.bias.copy_(0.1 * torch.randn(ln.bias.shape, generator=gen))
        x = model.ln(model.tok(ids) + model.pos(torch.arange(s)[None]))
        mask_bias = (1.0 - mask[:, None, None, :].to(x.dtype)) * -10000.0
        real = (mask[:, None, :, None] * mask[:, None, None, :]).bool()
        for layer in model.layers:
            q, k = (lin(x).reshape(n, s, layer.heads, layer.head_dim).transpose(1, 2)
                    for lin in (layer.query, layer.key))
            scores = q @ k.transpose(-1, -2) / layer.head_dim ** 0.5
            gain = (score_std / float(scores.masked_select(real).std())) ** 0.5
            for lin in (layer.query, layer.key):
                lin.weight.mul_(gain)
                lin.bias.mul_(gain)
            h = layer.ln1(x + layer.proj(_attention(layer, x, mask_bias)))
            gain = gelu_in_std / float(layer.fc1(h)[mask.bool()].std())
            layer.fc1.weight.mul_(gain)
            layer.fc1.bias.mul_(gain)
            x = layer(x, mask_bias)
    return model


def _attention(layer: Any, x: Any, mask_bias: Any) -> Any:
    import torch

    b, s, h = x.shape
    q, k, v = (lin(x).reshape(b, s, layer.heads, layer.head_dim).transpose(1, 2)
               for lin in (layer.query, layer.key, layer.value))
    scores = q @ k.transpose(-1, -2) / layer.head_dim ** 0.5 + mask_bias
    return (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(b, s, h)


def export_bert(out_dir: str | os.PathLike[str], model: Any = None) -> Path:
    """``out_dir/bert.onnx`` (opset 17, dynamic batch, sequence length SEQ) of ``model``."""
    from benchmarks.zoo import MODELS, export

    return export(MODELS["bert"], out_dir, SEQ, model=model if model is not None else realistic_bert())


# ---------------------------------------------------------------------------------------------
# data


def token_batches(seed: int, sequences: int = 32, batch: int = BATCH) -> list[Feeds]:
    """``sequences`` random token sequences of random lengths in [MIN_LEN, SEQ], right-padded with
    PAD_ID to SEQ, with their attention masks (1 keep, 0 pad); in batches of ``batch``."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, size=(sequences, SEQ), dtype=np.int64)
    lengths = rng.integers(MIN_LEN, SEQ + 1, size=sequences)
    lengths[0] = SEQ  # one unpadded sequence, so both extremes are covered
    mask = (np.arange(SEQ)[None, :] < lengths[:, None]).astype(np.int64)
    ids[mask == 0] = PAD_ID
    return [{"input_ids": ids[i:i + batch], "attention_mask": mask[i:i + batch]}
            for i in range(0, sequences, batch)]


def concat(batches: Sequence[Feeds], name: str) -> np.ndarray:
    return np.concatenate([b[name] for b in batches])


# ---------------------------------------------------------------------------------------------
# metrics


def cosines(out: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per sequence: the cosine similarity of ``out`` and ``ref`` ([N, SEQ, H]) over the kept
    (non-padded) positions, all of them flattened into one vector."""
    res = []
    for o, r, m in zip(out, ref, mask.astype(bool)):
        a, b = o[m].astype(np.float64).ravel(), r[m].astype(np.float64).ravel()
        res.append(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))))
    return np.array(res)


def run_batches(run: Any, batches: Sequence[Feeds], output: str = "hidden") -> np.ndarray:
    """``run(feeds) -> {name: array}`` over ``batches``, ``output`` concatenated."""
    return np.concatenate([np.asarray(run(f)[output]) for f in batches])


def encoding_range(enc: Any) -> tuple[float, float]:
    """The real (lo, hi) an openqnn Encoding (per-tensor) represents."""
    levels = (1 << enc.bitwidth) - 1
    if enc.is_signed:
        lo_q, hi_q = -(1 << (enc.bitwidth - 1)), (1 << (enc.bitwidth - 1)) - 1
    else:
        lo_q, hi_q = 0, levels
    s, o = enc.scale[0], enc.offset[0]
    return (lo_q + o) * s, (hi_q + o) * s


# ---------------------------------------------------------------------------------------------
# ONNX Runtime


class _Reader:
    def __init__(self, batches: Sequence[Feeds]):
        self._batches = list(batches)
        self._it: Iterator[Feeds] = iter(self._batches)

    def get_next(self) -> Feeds | None:
        return next(self._it, None)


def ort_quantize_static(fp32: Path, out: Path, calibration: Sequence[Feeds], **kwargs) -> Path:
    """ORT's static quantization with its defaults unless ``kwargs`` say otherwise: QDQ format, MinMax
    calibration, per-tensor, QInt8 weights, and 8-bit asymmetric activations (QInt8 with a zero point in
    onnxruntime 1.31; QUInt8 in older releases: the same grid, shifted)."""
    import logging

    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    class Reader(_Reader, CalibrationDataReader):
        pass

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # "Please consider pre-processing before quantization"
    try:
        quantize_static(str(fp32), str(out), Reader(calibration), **kwargs)
    finally:
        root.setLevel(level)
    return out


def ort_runner(path: Path) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return lambda feeds: dict(zip(names, sess.run(None, dict(feeds))))


def ort_ranges(qdq: Path, names: Sequence[str]) -> dict[str, tuple[float, float, float, int]]:
    """For each tensor of ``names`` that ORT quantized: (lo, hi, scale, zero point) of its
    QuantizeLinear."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(qdq))
    consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    out = {}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] in names:
            scale = float(consts[node.input[1]])
            zp_arr = consts[node.input[2]]
            zp = int(zp_arr)
            info = np.iinfo(zp_arr.dtype)
            out[node.input[0]] = ((info.min - zp) * scale, (info.max - zp) * scale, scale, zp)
    return out


def fp32_attention_stats(model: Any, batches: Sequence[Feeds]) -> tuple[float, float, float]:
    """(std of the scaled scores, mean max attention probability, mean entropy / log(kept keys)) of
    the first layer over the kept queries: how peaky attention is in float."""
    import torch

    layer = model.layers[0]
    ids = torch.from_numpy(concat(batches, "input_ids"))
    mask = torch.from_numpy(concat(batches, "attention_mask"))
    n, s = ids.shape
    with torch.no_grad():
        x = model.ln(model.tok(ids) + model.pos(torch.arange(s)[None]))
        q, k = (lin(x).reshape(n, s, layer.heads, layer.head_dim).transpose(1, 2) for lin in (layer.query, layer.key))
        scores = q @ k.transpose(-1, -2) / layer.head_dim ** 0.5
        keep = mask[:, None, None, :].bool()
        probs = torch.softmax(scores.masked_fill(~keep, -1e4), dim=-1)
        ent = -(probs * torch.log(probs.clamp_min(1e-12))).sum(-1)
        kept = mask.sum(-1).to(torch.float64)[:, None, None]
        rows = mask.bool()[:, None, :].expand(-1, layer.heads, -1)  # kept queries
        real = scores.masked_select(keep & mask[:, None, :, None].bool())
        return (float(real.std()), float(probs.max(-1).values[rows].mean()),
                float((ent / torch.log(kept))[rows].mean()))


def summarize(values: Mapping[str, np.ndarray]) -> str:
    width = max(len(k) for k in values)
    return "\n".join(f"  {k:<{width}}  min {v.min():.4f}  mean {v.mean():.4f}" for k, v in values.items())
