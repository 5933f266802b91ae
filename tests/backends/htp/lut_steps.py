"""What the 16-bit lookup-table tests share: one node's htp step run both ways (fast and reference, which must
agree), and an encoding's scale and zero point."""

from __future__ import annotations

import numpy as np
import torch

from openqnn.backends.htp.arch import ARCHS
from openqnn.backends.htp.kernels import HTP_KERNELS, HtpBuildContext
from openqnn.ir.graph import Graph
from openqnn.ir.tensor import Encoding


def run_step(g: Graph, arch: str, arithmetic: str, x: np.ndarray) -> tuple[str, np.ndarray]:
    """The kernel name of ``g``'s one node's step and its reference output codes for ``x``, after checking that
    the fast path gives the same codes."""
    node = g.nodes[0]
    step = HTP_KERNELS[node.op_type](node, HtpBuildContext(g, ARCHS[arch], arithmetic=arithmetic))
    assert step.plan is not None
    ref = step.reference(x)
    fast = step.fast(torch.from_numpy(x.astype(np.int32)))
    np.testing.assert_array_equal(ref, fast.numpy().astype(np.int64))
    return step.plan.kernel, ref


def scale_zero(enc: Encoding | None) -> tuple[float, int]:
    """A per-tensor encoding's scale and zero point."""
    assert enc is not None
    return enc.scale[0], -enc.offset[0]
