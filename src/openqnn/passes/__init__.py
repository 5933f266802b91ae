"""Graph passes and the named pipelines that run them."""

from __future__ import annotations

from openqnn.ir.graph import Graph
from openqnn.passes import cleanup, fusion, masks, patterns  # noqa: F401  (registers the passes)
from openqnn.passes.manager import PASSES, Pass, PassManager, graph_pass

__all__ = ["PASSES", "PIPELINES", "Pass", "PassManager", "graph_pass", "run_pipeline"]

PIPELINES: dict[str, list[str]] = {
    # after an ONNX/framework import, before quantization
    "convert": [
        "fold_static_data_movement",  # transposed/reshaped weights become plain static tensors
        "cancel_transposes",  # layout transposes that meet cancel
        "simplify_reshapes",  # no-op and chained reshapes
        "fold_batchnorm",  # Conv/FC + Batchnorm -> Conv/FC
        "fuse_gelu",  # erf-form GELU -> Gelu
        "fuse_hardswish",  # x * relu6(x + 3) / 6 -> HardSwish
        "fuse_rms_norm",  # x / sqrt(mean(x^2) + eps) * gamma -> RmsNorm
        "fuse_layer_norm",  # RmsNorm(x - mean(x)) + beta -> LayerNorm (exports before opset 17)
        "fold_fc_bias_add",  # MatMul + Add(bias) -> FullyConnected with bias
        "transpose_to_reshape",  # transposes moving only size-1 dims
        "finite_attention_masks",  # -inf / finfo.min reaching a Softmax -> -1e4 (a grid can hold it)
        "remove_dead_nodes",
    ],
}


def run_pipeline(graph: Graph, name: str) -> Graph:
    """Run pipeline ``name`` to a fixed point, then verify the graph."""
    from openqnn.ir.verifier import verify

    graph = PassManager(PIPELINES[name]).run(graph)
    graph.toposort()
    verify(graph)
    return graph
