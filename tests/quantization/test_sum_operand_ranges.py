"""An Add / Sub operand whose calibrated range dwarfs what can reach its sum (an attention mask's -10000 beside
scores of a few units) is narrowed to that window: the masked places still saturate the sum, the scores keep
their resolution on htp (QNN's coarse Add form is not taken), and ordinary sums keep their ranges."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

import openqnn
from helpers import make_model
from openqnn.quantization.quantizer import QuantizationReport, quantize

F = TensorProto.FLOAT


def _attention(rng: np.random.Generator) -> tuple[openqnn.Graph, list[dict[str, np.ndarray]]]:
    nodes = [helper.make_node("Add", ["scores", "mask"], ["masked"]),
             helper.make_node("Softmax", ["masked"], ["p"], axis=-1)]
    g = openqnn.convert(make_model(nodes, [("scores", F, [1, 4, 8, 8]), ("mask", F, [1, 1, 1, 8])],
                                   [("p", F, [1, 4, 8, 8])], []))
    feeds = []
    for i in range(6):
        mask = np.zeros((1, 1, 1, 8), np.float32)
        mask[..., 8 - (i % 3 + 1):] = -10000.0
        feeds.append({"scores": (3 * rng.standard_normal((1, 4, 8, 8))).astype(np.float32), "mask": mask})
    return g, feeds


def test_a_mask_operand_is_narrowed_to_what_reaches_the_sum() -> None:
    rng = np.random.default_rng(0)
    g, feeds = _attention(rng)
    report = QuantizationReport()
    q = quantize(g, feeds, report=report)
    assert report.clamped_to_sum == ["mask"]
    mask, scores, masked = (q.tensors[n].encoding for n in ("mask", "scores", "masked"))
    assert mask is not None and scores is not None and masked is not None
    lo_m = float(mask.scale[0]) * (0 + float(mask.offset[0]))
    lo_y = float(masked.scale[0]) * (0 + float(masked.offset[0]))
    hi_s = float(scores.scale[0]) * (255 + float(scores.offset[0]))
    assert float(mask.scale[0]) < 1.0  # not 10000 / 255
    assert lo_m + hi_s <= lo_y  # a masked place still saturates the sum, whatever the score
    # and the model still masks: the quantized softmax gives the masked keys (almost) nothing, on htp as on cpu
    for backend in ("cpu", "htp"):
        p = openqnn.Session(q, backend=backend).run(feeds[0])["p"]
        assert float(p[..., -1].max()) < 1e-3, backend
        ref = openqnn.Session(g).run(feeds[0])["p"]
        assert float(np.abs(p - ref).max()) < 0.05, backend


def test_ordinary_sums_keep_their_ranges() -> None:
    nodes = [helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Sub", ["s", "a"], ["d"])]
    g = openqnn.convert(make_model(nodes, [("a", F, [1, 16]), ("b", F, [1, 16])], [("d", F, [1, 16])], []))
    rng = np.random.default_rng(1)
    feeds = [{"a": rng.standard_normal((1, 16)).astype(np.float32),
              "b": (5 * rng.standard_normal((1, 16))).astype(np.float32)} for _ in range(4)]
    report = QuantizationReport()
    quantize(g, feeds, report=report)
    assert report.clamped_to_sum == []
