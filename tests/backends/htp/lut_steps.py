"""What the 16-bit lookup-table tests share: one node's htp step run both ways (fast and reference, which must
agree), and an encoding's scale and zero point."""

from __future__ import annotations

from collections.abc import Callable

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


def check_rule(g: Graph, arch: str, x: np.ndarray, codes: Callable[..., np.ndarray | None],
               table_for: Callable[..., np.ndarray | None], max_diff: int) -> None:
    """A 16-bit rule on ``g``'s one node (input ``x0``, output ``out``) for codes ``x``: its step is the lookup table,
    whose codes are ``codes(x, s_in, z_in, s_out, z_out)`` both ways, and :func:`check_table_and_fallbacks` with the
    table ``table_for(s_in, z_in, s_out, z_out)``."""
    (si, zi), (so, zo) = scale_zero(g.tensors["x0"].encoding), scale_zero(g.tensors["out"].encoding)
    kernel, ref = run_step(g, arch, "qnn", x)
    assert kernel == "htp.lut"
    want = codes(x, si, zi, so, zo)
    assert want is not None
    np.testing.assert_array_equal(ref, want)
    check_table_and_fallbacks(g, arch, x, ref, table_for(si, zi, so, zo), max_diff)
