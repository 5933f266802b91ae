"""Real architectures through the PyTorch frontend, against PyTorch itself: rtol 1e-3 in float on cpu.

Each model is built with random weights (nothing is downloaded), converted from the module with
``openqnn.convert(module, {"input": shape})`` and run by ``openqnn.Session`` on a seeded input. Cases marked
heavy (large torchvision/timm models) run with ``OPENQNN_HEAVY_ARCHS=1``, so the default suite stays quick.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch_archs import ARCHS, Arch, healthy

import openqnn

HEAVY = os.environ.get("OPENQNN_HEAVY_ARCHS") == "1"


def _case(arch: Arch) -> object:
    marks = [pytest.mark.skipif(not HEAVY, reason="heavy architecture: runs with OPENQNN_HEAVY_ARCHS=1")] if arch.heavy else []
    return pytest.param(arch, id=arch.id, marks=marks)


@pytest.mark.parametrize("arch", [_case(a) for a in ARCHS])
def test_architecture_matches_pytorch(arch: Arch) -> None:
    torch.manual_seed(0)
    model = healthy(arch.build())
    x = torch.randn(arch.shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x).numpy()
    graph = openqnn.convert(model, {"input": arch.shape})
    weights = {t.name for t in graph.static_tensors()}
    named = {n for n, _ in model.named_parameters()} & weights
    assert named, "no parameter kept its state_dict name"
    out = openqnn.Session(graph, backend="cpu").run({"input": x.numpy()})["output"]
    scale = float(np.abs(ref).max())
    assert scale > 1e-6, "the reference output is all but zero: the check would prove nothing"
    np.testing.assert_allclose(out, ref, rtol=1e-3, atol=1e-4 * scale)
