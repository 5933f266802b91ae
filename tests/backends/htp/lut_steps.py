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


def check_table_and_fallbacks(g: Graph, arch: str, x: np.ndarray, ref: np.ndarray, table: np.ndarray | None,
                              max_diff: int) -> None:
    """A 16-bit rule's prepared ``table`` gives ``ref`` (the step's codes for ``x``); TFLite's arithmetic differs
    from it by at most ``max_diff`` codes somewhere, and v75 (not probed) keeps TFLite's exact rounding."""
    assert table is not None
    np.testing.assert_array_equal(table[x], ref)
    _, exact = run_step(g, arch, "tflite", x)
    assert (exact != ref).any() and np.abs(exact - ref).max() <= max_diff
    _, v75 = run_step(g, "v75", "qnn", x)
    np.testing.assert_array_equal(v75, exact)
